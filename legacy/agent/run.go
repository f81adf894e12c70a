package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/discovery"
)

// Run serves the agents of cfg (Config.Agents: one, or Count of them),
// each on its own listener and registered with cfg.Master when one is
// set, until ctx is done or a server fails; then it stops registering,
// closes the agents (see Close: without recovery their containers are
// killed) and shuts the servers down.
//
// The agents of one process share what is per process or per machine
// rather than per agent: one reaper (waitid sees every child), one
// /dev/null, one supervisor (Config.Recover), one ZooKeeper session to
// follow the leading master and one pool of connections to it. What
// stays per agent is what serving needs: a listener, its server's accept
// loop, a registration loop, and the supervisor stream.
func Run(ctx context.Context, cfg Config) error {
	cfgs, err := cfg.Agents()
	if err != nil {
		return err
	}
	// Listen first: a port in use fails the start before anything runs.
	lns := make([]net.Listener, 0, len(cfgs))
	closeListeners := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for i := range cfgs {
		c := &cfgs[i]
		if c.Listen == "" {
			c.Listen = DefaultListen
		}
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			closeListeners()
			return err
		}
		lns = append(lns, ln)
		if c.Port == 0 {
			c.Port = int32(ln.Addr().(*net.TCPAddr).Port)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	var link *masterLink
	if cfg.Master != "" {
		if link, err = newMasterLink(cfg, len(cfgs), log); err != nil {
			closeListeners()
			return err
		}
		defer link.close()
	}

	// One at a time: the first agent starts the supervisor the others join.
	agents := make([]*Agent, 0, len(cfgs))
	closeAgents := func() {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Go(func() { a.Close() }) // completes pending WAITs, so Shutdown does not hang on them
		}
		wg.Wait()
	}
	for i, c := range cfgs {
		a, err := New(c)
		if err != nil {
			closeAgents()
			closeListeners()
			if len(cfgs) > 1 {
				err = fmt.Errorf("agent %d of %d: %w", i, len(cfgs), err)
			}
			return err
		}
		agents = append(agents, a)
	}

	regCtx, stopReg := context.WithCancel(ctx)
	var regs sync.WaitGroup
	servers := make([]*http.Server, len(agents))
	errc := make(chan error, len(agents))
	for i, a := range agents {
		handler := a.Handler()
		if link != nil {
			reg := a.newRegistrar(link)
			handler = reg.Wrap(handler)
			regs.Go(func() {
				if err := reg.Run(regCtx); err != nil {
					a.log.WithError(err).Error("registration stopped")
				}
			})
		}
		servers[i] = &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			// No write timeout: WAIT_CONTAINER is a long poll.
		}
		go func() { errc <- servers[i].Serve(lns[i]) }()
		a.log.WithFields(logrus.Fields{"listen": lns[i].Addr().String(), "master": cfg.Master}).Info("serving /api/v1")
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		if cfg.Recover == RecoverNone {
			log.WithField("agents", len(agents)).Info("shutting down: killing containers")
		} else {
			log.WithField("agents", len(agents)).Info("shutting down: containers keep running under the supervisor")
		}
	}
	stopReg()
	regs.Wait()
	closeAgents()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var shut sync.WaitGroup
	for _, srv := range servers {
		shut.Go(func() {
			if serr := srv.Shutdown(sctx); serr != nil {
				srv.Close()
			}
		})
	}
	shut.Wait()
	return err
}

// masterLink is what the registrars of one process share: the leading
// master, followed in ZooKeeper through one Detector (one session for every
// agent, not one each), and one HTTP client whose pool keeps a connection
// per agent.
type masterLink struct {
	master string
	det    *discovery.Detector // nil for a fixed http(s) master
	httpc  *http.Client
}

func newMasterLink(cfg Config, agents int, log logrus.FieldLogger) (*masterLink, error) {
	m := strings.TrimRight(cfg.Master, "/")
	if err := checkMasterURL(m); err != nil {
		return nil, err
	}
	l := &masterLink{master: m, httpc: registrationClient(cfg, agents)}
	if strings.HasPrefix(m, "zk://") {
		d, err := discovery.NewDetector(m, log.WithField("master", m))
		if err != nil {
			return nil, fmt.Errorf("agent: --master: %w", err)
		}
		l.det = d
	}
	return l, nil
}

func (l *masterLink) close() {
	if l.det != nil {
		l.det.Close()
	}
	l.httpc.CloseIdleConnections()
}
