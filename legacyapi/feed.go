package legacyapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// The change feed: how a world tells the gateway what changes, so that
// ObserveJobs streams follow both worlds without polling either. A feed
// begins with a snapshot of every active job and task, marked off by a
// SnapshotEnd, then carries each change as it happens, as JSON lines over
// one long HTTP response (FeedPath). It is private to this project: Titus
// has no REST form of ObserveJobs.

// FeedPath is where NewHandler serves an Observer's feed.
const FeedPath = "/api/v3/events"

// FeedHeartbeat is how often an idle feed writes an empty line, and
// FeedIdle how long a reader waits for any line before it takes the
// connection for dead.
const (
	FeedHeartbeat = 10 * time.Second
	FeedIdle      = 3 * FeedHeartbeat
)

// maxFeedLine bounds one line: a job, whose descriptor is at most
// MaxBodyBytes, with its status history.
const maxFeedLine = 4 * MaxBodyBytes

// Change is one line of a feed: a job or task as it is now, one that has
// left the world, or the end of the snapshot. An empty Change is a
// heartbeat.
type Change struct {
	Job         *Job  `json:"job,omitempty"`
	Task        *Task `json:"task,omitempty"`
	Gone        *Gone `json:"gone,omitempty"`
	SnapshotEnd bool  `json:"snapshotEnd,omitempty"`
}

// Gone is a job or task that left its world (pruned, deleted): it will not
// change again.
type Gone struct {
	Kind  string `json:"kind"` // "job" or "task"
	ID    string `json:"id"`
	JobID string `json:"jobId,omitempty"` // a task's job
}

// Observer is a world whose changes can be followed.
type Observer interface {
	// Observe calls send with every active (not Finished) job and task,
	// then a SnapshotEnd, then every change as it happens, each job or
	// task as it is at the time of the call. It returns nil when ctx ends;
	// an error when the feed cannot go on (leadership lost, a reader too
	// far behind, send failed), after which the reader connects again for
	// a fresh snapshot. send is never called concurrently.
	Observe(ctx context.Context, send func(Change) error) error
}

// serveFeed streams o's feed as JSON lines, flushed as they are written,
// with a heartbeat line when nothing else was written for FeedHeartbeat.
func serveFeed(o Observer, log logrus.FieldLogger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flusher, ok := w.(http.Flusher)
		if !ok {
			WriteError(w, http.StatusInternalServerError, errors.New("this connection cannot stream"))
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		flusher.Flush()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		var mu sync.Mutex // the heartbeat and send write the same body
		enc := json.NewEncoder(w)
		write := func(c Change) error {
			mu.Lock()
			defer mu.Unlock()
			if err := enc.Encode(c); err != nil {
				return fmt.Errorf("writing the feed: %w", err)
			}
			flusher.Flush()
			return nil
		}
		go func() {
			t := time.NewTicker(FeedHeartbeat)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if write(Change{}) != nil {
						cancel()
						return
					}
				}
			}
		}()
		if err := o.Observe(ctx, write); err != nil && ctx.Err() == nil {
			log.WithError(err).Info("change feed ended; the reader reconnects for a snapshot")
		}
	})
}

// Observe follows the feed of the server base names at the time of the
// call (the leader, for a client that follows one), as Observer describes:
// it ends with an error when the connection does, or stays silent for
// FeedIdle, so the caller can connect again.
func (c *Client) Observe(ctx context.Context, send func(Change) error) error {
	base, err := c.base()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+FeedPath, nil)
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return fmt.Errorf("change feed at %s: %w: %v", base, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("change feed at %s: %s: %w", base, resp.Status, ErrUnavailable)
	}
	idle := time.AfterFunc(FeedIdle, cancel)
	defer idle.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxFeedLine)
	for sc.Scan() {
		idle.Reset(FeedIdle)
		var ch Change
		if err := json.Unmarshal(sc.Bytes(), &ch); err != nil {
			return fmt.Errorf("change feed at %s: a line does not decode: %w", base, err)
		}
		if ch == (Change{}) {
			continue // heartbeat
		}
		if err := send(ch); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("change feed at %s (silent for %v, or cut): %w: %v", base, FeedIdle, ErrUnavailable, err)
	}
	return fmt.Errorf("change feed at %s ended: %w", base, ErrUnavailable)
}
