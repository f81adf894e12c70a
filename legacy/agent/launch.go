package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/sirupsen/logrus"
)

// defaultPath is what Mesos gives a command that brings no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// apiError carries the HTTP status a failure maps to.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func unavailable(format string, args ...any) error {
	return &apiError{code: http.StatusServiceUnavailable, msg: fmt.Sprintf(format, args...)}
}

type volumeKind int

const (
	volSecret volumeKind = iota
	volSandboxPath
	volHostPath
	volEmptyDir
)

type volumePlan struct {
	kind   volumeKind
	target string // sandbox-relative, cleaned
	source string // sandbox-relative (SANDBOX_PATH) or absolute (HOST_PATH)
	data   []byte
	mode   os.FileMode
}

// launchSpec is everything decided from the request before touching disk.
type launchSpec struct {
	program  string // resolved against the container's PATH at start
	argv     []string
	env      []string
	workRel  string // sandbox-relative working directory ("" = sandbox)
	volumes  []volumePlan
	image    string
	imageKey string
	cpus     *float64
	mem      *uint64
}

// validateContainerID follows Mesos' common ID validation: the id names a
// directory, so it must not be able to leave DIR/sandboxes.
func validateContainerID(id mesos.ContainerID) error {
	if id.Parent != nil {
		return badRequest("nested containers are not supported by this agent (container %q has a parent)", id.Value)
	}
	v := id.Value
	if v == "" {
		return badRequest("'container_id.value' must not be empty")
	}
	if v == "." || v == ".." {
		return badRequest("'container_id.value' %q is not a valid id", v)
	}
	if len(v) > 255 {
		return badRequest("'container_id.value' is longer than 255 characters")
	}
	if strings.ContainsAny(v, "/\\\x00") || strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return badRequest("'container_id.value' %q contains a path separator, whitespace or control character", v)
	}
	return nil
}

// sandboxRel maps a container path into the sandbox. This agent has no mount
// namespace, so the sandbox stands in for the container's root: an absolute
// "/etc/config" becomes "<sandbox>/etc/config".
func sandboxRel(p, what string) (string, error) {
	if p == "" {
		return "", badRequest("%s must not be empty", what)
	}
	rel := filepath.Clean("/" + p)[1:]
	// Clean("/"+p) cannot climb above "/", so compare against the lexical
	// form to catch escape attempts instead of silently clamping them.
	lex := filepath.Clean(strings.TrimPrefix(p, "/"))
	if lex == ".." || strings.HasPrefix(lex, "../") {
		return "", badRequest("%s %q escapes the sandbox", what, p)
	}
	return rel, nil
}

func imageRef(ci *mesos.ContainerInfo) string {
	if ci == nil {
		return ""
	}
	fromMesos := func() string {
		if ci.Mesos == nil || ci.Mesos.Image == nil {
			return ""
		}
		if d := ci.Mesos.Image.Docker; d != nil {
			return d.Name
		}
		if ap := ci.Mesos.Image.Appc; ap != nil {
			return ap.Name
		}
		return ""
	}
	if ci.Type != nil {
		switch *ci.Type {
		case mesos.ContainerInfo_DOCKER:
			if ci.Docker != nil {
				return ci.Docker.Image
			}
			return ""
		case mesos.ContainerInfo_MESOS:
			return fromMesos()
		}
	}
	if ci.Docker != nil && ci.Docker.Image != "" {
		return ci.Docker.Image
	}
	return fromMesos()
}

func (a *Agent) prepare(lc *agent.Call_LaunchContainer, log logrus.FieldLogger) (*launchSpec, error) {
	cmd := lc.Command
	if cmd == nil {
		cmd = &mesos.CommandInfo{}
	}
	spec := &launchSpec{image: imageRef(lc.Container)}

	var img ImageConfig
	var found bool
	if spec.image != "" {
		img, spec.imageKey, found = a.catalog.Lookup(spec.image)
	}

	value := cmd.GetValue()
	switch {
	case value != "" && cmd.GetShell():
		// shell defaults to true in mesos.proto: `sh -c <value>`, arguments ignored.
		spec.program = "/bin/sh"
		spec.argv = []string{"sh", "-c", value}
	case value != "":
		// As in Mesos, value is the program and arguments are the whole argv
		// (arguments[0] is argv[0]).
		spec.program = value
		spec.argv = cmd.Arguments
		if len(spec.argv) == 0 {
			spec.argv = []string{value}
		}
	default:
		// No value: Docker semantics, the image's entrypoint followed by the
		// given arguments or else the image's cmd.
		if spec.image != "" && !found {
			return nil, badRequest("image %q not found in catalog (pull failed)", spec.image)
		}
		if spec.image == "" && len(cmd.Arguments) == 0 {
			return nil, badRequest("no command to run: CommandInfo.value and arguments are empty and no image is given")
		}
		argv := append([]string{}, img.Entrypoint...)
		if len(cmd.Arguments) > 0 {
			argv = append(argv, cmd.Arguments...)
		} else {
			argv = append(argv, img.Command...)
		}
		if len(argv) == 0 || argv[0] == "" {
			return nil, badRequest("image %q has neither entrypoint nor command and none was given", spec.image)
		}
		spec.program = argv[0]
		spec.argv = argv
	}
	if spec.image != "" && !found {
		log.WithField("image", spec.image).Warn("image not in catalog; running the given command on the host")
	}

	env, err := buildEnv(img.Env, cmd.Environment)
	if err != nil {
		return nil, err
	}
	spec.env = env

	if u := cmd.GetUser(); u != "" && u != a.selfUser && u != a.selfUID {
		// Switching users needs CAP_SETUID and host accounts for every
		// container user; this agent runs unprivileged, as the user it was
		// started as.
		log.WithFields(logrus.Fields{"user": u, "agent_user": a.selfUser}).
			Warn("CommandInfo.user ignored: the reference agent cannot switch users")
	}
	if len(cmd.URIs) > 0 {
		log.WithField("uris", len(cmd.URIs)).Warn("CommandInfo.uris ignored: the reference agent has no fetcher")
	}

	if img.WorkingDir != "" {
		if spec.workRel, err = sandboxRel(img.WorkingDir, "image workingDir"); err != nil {
			return nil, err
		}
	}

	if lc.Container != nil {
		for i, v := range lc.Container.Volumes {
			p, err := planVolume(v)
			if err != nil {
				return nil, badRequest("volume %d: %v", i, err)
			}
			spec.volumes = append(spec.volumes, p)
		}
	}

	for _, r := range lc.Resources {
		if r.Scalar == nil {
			continue
		}
		switch r.Name {
		case "cpus":
			v := r.Scalar.Value
			if spec.cpus != nil {
				v += *spec.cpus
			}
			spec.cpus = &v
		case "mem":
			v := uint64(r.Scalar.Value * 1024 * 1024)
			if spec.mem != nil {
				v += *spec.mem
			}
			spec.mem = &v
		}
	}
	return spec, nil
}

// buildEnv layers the command's environment over the image's. Secrets must
// arrive as values: this agent has no secret store.
func buildEnv(imageEnv map[string]string, cmdEnv *mesos.Environment) ([]string, error) {
	vars := map[string]string{}
	for k, v := range imageEnv {
		vars[k] = v
	}
	if cmdEnv != nil {
		for _, v := range cmdEnv.Variables {
			if v.Name == "" {
				return nil, badRequest("environment variable with an empty name")
			}
			if v.Type != nil && *v.Type == mesos.Environment_Variable_SECRET {
				data, err := secretValue(v.Secret)
				if err != nil {
					return nil, badRequest("environment variable %q: %v", v.Name, err)
				}
				vars[v.Name] = string(data)
				continue
			}
			vars[v.Name] = v.GetValue()
		}
	}
	if _, ok := vars["PATH"]; !ok {
		vars["PATH"] = defaultPath
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+2)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

func secretValue(s *mesos.Secret) ([]byte, error) {
	if s == nil {
		return nil, errors.New("secret is missing")
	}
	switch s.Type {
	case mesos.Secret_REFERENCE:
		return nil, errors.New("secret references must be resolved by the caller")
	case mesos.Secret_VALUE:
		if s.Value == nil {
			return nil, errors.New("secret of type VALUE has no value")
		}
		return s.Value.Data, nil
	default:
		return nil, fmt.Errorf("secret type %s is not supported", s.Type)
	}
}

func planVolume(v mesos.Volume) (volumePlan, error) {
	target, err := sandboxRel(v.ContainerPath, "container_path")
	if err != nil {
		return volumePlan{}, errors.New(err.Error())
	}
	if target == "" {
		return volumePlan{}, fmt.Errorf("container_path %q is the sandbox itself", v.ContainerPath)
	}
	p := volumePlan{target: target, mode: 0o644}
	if v.GetMode() == mesos.RO {
		p.mode = 0o444
	}
	src := v.Source
	if src == nil || src.Type == mesos.Volume_Source_UNKNOWN {
		switch {
		case v.Image != nil:
			return p, errors.New("image volumes are not supported by this agent")
		case v.GetHostPath() != "":
			p.kind, p.source = volHostPath, v.GetHostPath()
		default:
			p.kind = volEmptyDir
			return p, nil
		}
	} else {
		switch src.Type {
		case mesos.Volume_Source_SECRET:
			data, err := secretValue(src.Secret)
			if err != nil {
				return p, err
			}
			p.kind, p.data = volSecret, data
			return p, nil
		case mesos.Volume_Source_SANDBOX_PATH:
			sp := src.SandboxPath
			if sp == nil {
				return p, errors.New("sandbox_path is missing")
			}
			if sp.Type == mesos.Volume_Source_SandboxPath_PARENT {
				return p, errors.New("SANDBOX_PATH of type PARENT needs a parent container; nested containers are not supported")
			}
			rel, err := sandboxRel(sp.Path, "sandbox_path.path")
			if err != nil {
				return p, errors.New(err.Error())
			}
			p.kind, p.source = volSandboxPath, rel
			return p, nil
		case mesos.Volume_Source_HOST_PATH:
			if src.HostPath == nil {
				return p, errors.New("host_path is missing")
			}
			p.kind, p.source = volHostPath, src.HostPath.Path
		default:
			return p, fmt.Errorf("volume source type %s is not supported by this agent", src.Type)
		}
	}
	if !filepath.IsAbs(p.source) {
		return p, fmt.Errorf("host path %q must be absolute", p.source)
	}
	p.source = filepath.Clean(p.source)
	return p, nil
}

// launch runs LAUNCH_CONTAINER. It returns the HTTP status to answer with.
func (a *Agent) launch(lc *agent.Call_LaunchContainer, log logrus.FieldLogger) (int, error) {
	id := lc.ContainerID.Value
	log = log.WithField("container", id)

	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return 0, unavailable("agent is shutting down")
	}
	if _, ok := a.containers[id]; ok {
		a.mu.Unlock()
		// Idempotent: an id stays taken until REMOVE_CONTAINER, even after
		// the container ended, so a retried LAUNCH never runs the command twice.
		log.Debug("LAUNCH_CONTAINER for an existing container")
		return launchExistsStatus, nil
	}
	c := &container{
		id:      id,
		sandbox: filepath.Join(a.sandboxRoot, id),
		state:   stateLaunching,
		done:    make(chan struct{}),
	}
	a.containers[id] = c
	a.mu.Unlock()

	spec, err := a.prepare(lc, log)
	if err == nil {
		c.cpusLimit, c.memLimit = spec.cpus, spec.mem
		err = a.start(c, spec, log)
	}
	if err != nil {
		a.abortLaunch(c, err)
		log.WithError(err).Warn("launch refused")
		return 0, err
	}
	return launchNewStatus, nil
}

// abortLaunch forgets a container whose launch never produced a process, so
// the same id can be launched again; pending WAITs still get an answer.
func (a *Agent) abortLaunch(c *container, err error) {
	a.mu.Lock()
	reason := mesos.REASON_CONTAINER_LAUNCH_FAILED
	c.term = &termination{state: mesos.TASK_FAILED, reason: &reason, message: "Failed to launch container: " + err.Error()}
	c.state = stateTerminated
	close(c.done)
	delete(a.containers, c.id)
	trash := a.trashSandboxLocked(c)
	a.mu.Unlock()
	if trash != "" {
		_ = os.RemoveAll(trash)
	}
}

var trashSeq atomic.Uint64

// trashSandboxLocked moves a sandbox out of the way under a.mu (a rename is
// quick) so a new container with the same id can be launched while the old
// tree is still being deleted. Call with a.mu held.
func (a *Agent) trashSandboxLocked(c *container) string {
	dst := filepath.Join(a.trashRoot, fmt.Sprintf("%s.%d", c.id, trashSeq.Add(1)))
	if err := os.Rename(c.sandbox, dst); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.WithError(err).WithField("container", c.id).Warn("could not move sandbox to trash")
		}
		return ""
	}
	return dst
}

func (a *Agent) start(c *container, spec *launchSpec, log logrus.FieldLogger) error {
	// The id is registered as launching, so nobody else touches this path;
	// whatever is there belongs to an agent run that is gone.
	if err := os.RemoveAll(c.sandbox); err != nil {
		return unavailable("cannot clear stale sandbox: %v", err)
	}
	if err := os.MkdirAll(c.sandbox, 0o755); err != nil {
		return unavailable("cannot create sandbox: %v", err)
	}
	for _, n := range []string{"stdout", "stderr"} {
		f, err := os.OpenFile(filepath.Join(c.sandbox, n), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return unavailable("cannot create %s: %v", n, err)
		}
		f.Close()
	}
	for _, v := range spec.volumes {
		if err := a.materialise(c.sandbox, v); err != nil {
			return err
		}
	}
	cwd := c.sandbox
	if spec.workRel != "" {
		if err := checkNoEscape(c.sandbox, spec.workRel, true); err != nil {
			return err
		}
		cwd = filepath.Join(c.sandbox, spec.workRel)
		if err := os.MkdirAll(cwd, 0o755); err != nil {
			return unavailable("cannot create working directory: %v", err)
		}
	}
	env := append(spec.env, "MESOS_SANDBOX="+c.sandbox, "MESOS_CONTAINER_ID="+c.id)
	pathEnv := defaultPath
	for _, kv := range spec.env {
		if strings.HasPrefix(kv, "PATH=") {
			pathEnv = kv[len("PATH="):]
		}
	}
	prog, lookErr := lookPath(spec.program, pathEnv, cwd)

	a.spawnSl <- struct{}{}
	defer func() { <-a.spawnSl }()

	var files [2]*os.File
	for i, n := range []string{"stdout", "stderr"} {
		f, err := os.OpenFile(filepath.Join(c.sandbox, n), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			if files[0] != nil {
				files[0].Close()
			}
			return unavailable("cannot open %s: %v", n, err)
		}
		files[i] = f
	}
	defer files[0].Close()
	defer files[1].Close()

	var pid int
	var err error
	if lookErr != nil {
		err = lookErr
	} else if a.sup != nil {
		pid, err = a.launchSupervised(c, prog, spec.argv, env, cwd)
		var ae *apiError
		if errors.As(err, &ae) {
			return err // the supervisor is unreachable: 503, nothing started
		}
		if err == nil {
			a.registerSupervised(c, pid, log)
		}
	} else {
		a.reaper.forkMu.RLock()
		pid, err = spawn(prog, spec.argv, env, cwd, []uintptr{a.devNull.Fd(), files[0].Fd(), files[1].Fd()})
		if err == nil {
			a.register(c, pid, log)
			a.llog.launch(c.id, pid)
		}
		a.reaper.forkMu.RUnlock()
	}
	if err == nil {
		a.wake()
		log.WithFields(logrus.Fields{"pid": pid, "argv": spec.argv, "image": spec.image, "catalog": spec.imageKey}).
			Info("container started")
		return nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == syscall.EAGAIN || errno == syscall.ENOMEM || errno == syscall.EMFILE || errno == syscall.ENFILE) {
		return unavailable("cannot start process: %v", err)
	}
	// The program could not be executed. A Mesos agent reports this as a
	// container that started and failed, so do the same: the launch
	// succeeds and WAIT tells why, with a shell-style exit status.
	code := 126
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotFound) {
		code = 127
	}
	msg := fmt.Sprintf("Failed to execute %q: %v", spec.program, err)
	fmt.Fprintln(files[1], msg)
	a.failStarted(c, code, msg)
	log.WithError(err).Warn("container failed to execute")
	return nil
}

func (a *Agent) register(c *container, pid int, log logrus.FieldLogger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c.pid = pid
	c.state = stateRunning
	c.startedAt = time.Now()
	a.byPid[pid] = c
	a.reaper.own(pid, a)
	if c.pendingSignal != 0 {
		c.killSignal = c.pendingSignal
		_ = killGroup(pid, c.pendingSignal)
		log.WithFields(logrus.Fields{"pid": pid, "signal": c.pendingSignal}).Info("delivered KILL received during launch")
	}
	if a.closed {
		c.shutdownKill = true
		_ = killGroup(pid, syscall.SIGKILL)
	}
}

func (a *Agent) failStarted(c *container, code int, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	status := int32(code << 8) // wait(2) encoding of exit(code)
	reason := mesos.REASON_CONTAINER_LAUNCH_FAILED
	c.state = stateTerminated
	c.startedAt = time.Now()
	c.term = &termination{status: &status, state: mesos.TASK_FAILED, reason: &reason, message: msg}
	if c.killSignal != 0 || c.pendingSignal != 0 {
		c.term.state = mesos.TASK_KILLED
	}
	close(c.done)
}

var errNotFound = errors.New("executable file not found in $PATH")

// lookPath resolves a program as execvp would with the container's PATH
// (not the agent's) and working directory.
func lookPath(file, pathEnv, cwd string) (string, error) {
	if strings.Contains(file, "/") {
		if !filepath.IsAbs(file) {
			file = filepath.Join(cwd, file)
		}
		return file, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errNotFound
}

// checkNoEscape makes sure writing at sandbox/rel cannot land outside the
// sandbox through a symlink an earlier volume created (e.g. a HOST_PATH
// volume at "etc" and a secret at "etc/config/key").
func checkNoEscape(sandbox, rel string, includeLast bool) error {
	parts := strings.Split(rel, "/")
	if !includeLast {
		parts = parts[:len(parts)-1]
	}
	cur := sandbox
	for _, part := range parts {
		if part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		st, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // the rest is created fresh, as directories
		}
		if err != nil {
			return unavailable("stat %s: %v", cur, err)
		}
		if st.Mode()&os.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(cur)
			if err != nil || !within(sandbox, real) {
				return badRequest("path %q goes through %q, which leads outside the sandbox", rel, strings.TrimPrefix(cur, sandbox+"/"))
			}
			continue
		}
		if !st.IsDir() {
			return badRequest("path %q: %q is not a directory", rel, strings.TrimPrefix(cur, sandbox+"/"))
		}
	}
	return nil
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

func (a *Agent) materialise(sandbox string, v volumePlan) error {
	if err := checkNoEscape(sandbox, v.target, false); err != nil {
		return err
	}
	target := filepath.Join(sandbox, v.target)
	if _, err := os.Lstat(target); err == nil {
		return badRequest("volume container_path %q already exists in the sandbox", v.target)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return unavailable("volume %q: %v", v.target, err)
	}
	switch v.kind {
	case volSecret:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, v.mode)
		if err != nil {
			return unavailable("secret volume %q: %v", v.target, err)
		}
		_, err = f.Write(v.data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(target, v.mode) // not subject to umask
		}
		if err != nil {
			return unavailable("secret volume %q: %v", v.target, err)
		}
	case volSandboxPath:
		if v.source == v.target {
			return os.MkdirAll(target, 0o755)
		}
		if err := checkNoEscape(sandbox, v.source, true); err != nil {
			return err
		}
		src := filepath.Join(sandbox, v.source)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return unavailable("volume %q: %v", v.target, err)
		}
		// Relative, so the link stays inside the sandbox wherever it lives.
		link, err := filepath.Rel(filepath.Dir(target), src)
		if err != nil {
			return unavailable("volume %q: %v", v.target, err)
		}
		if err := os.Symlink(link, target); err != nil {
			return unavailable("volume %q: %v", v.target, err)
		}
	case volHostPath:
		if _, err := os.Stat(v.source); err != nil {
			return badRequest("host path %q of volume %q: %v", v.source, v.target, err)
		}
		if err := os.Symlink(v.source, target); err != nil {
			return unavailable("volume %q: %v", v.target, err)
		}
	case volEmptyDir:
		if err := os.Mkdir(target, 0o755); err != nil {
			return unavailable("volume %q: %v", v.target, err)
		}
	}
	return nil
}

// resolveReadPath resolves a READ_FILE path. Accepted: "/sandboxes/<id>/<file>"
// (the agent's virtual path) and any absolute path inside the work dir.
func (a *Agent) resolveReadPath(p string) (string, error) {
	if p == "" {
		return "", badRequest("'read_file.path' must not be empty")
	}
	var full string
	clean := filepath.Clean(p)
	switch {
	case filepath.IsAbs(clean) && (within(a.workDir, clean) || within(a.cfg.WorkDir, clean)):
		full = clean
		if within(a.cfg.WorkDir, clean) && !within(a.workDir, clean) {
			full = filepath.Join(a.workDir, strings.TrimPrefix(clean, a.cfg.WorkDir))
		}
	case strings.HasPrefix(clean, "/sandboxes/"):
		full = filepath.Join(a.workDir, clean)
	default:
		return "", badRequest("path %q is neither /sandboxes/<container-id>/... nor inside the agent work dir", p)
	}
	real, err := filepath.EvalSymlinks(full)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &apiError{code: http.StatusNotFound, msg: fmt.Sprintf("file %q does not exist", p)}
	}
	if err != nil {
		return "", badRequest("path %q: %v", p, err)
	}
	if !within(a.workDir, real) {
		return "", badRequest("path %q leads outside the agent work dir", p)
	}
	return real, nil
}
