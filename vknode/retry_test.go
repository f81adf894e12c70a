package vknode

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 30 * time.Second}
	var got []time.Duration
	for range 7 {
		got = append(got, b.Next())
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after Reset %v, want 1s", d)
	}
}

// A registration that fails N times is retried with growing delays and
// never given up; once up, a later failure starts the back-off over.
func TestRetryLoopBacksOffAndNeverGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var slept []time.Duration
	var failures []error
	r := retryLoop{
		backoff: Backoff{Min: time.Second, Max: 4 * time.Second},
		sleep: func(ctx context.Context, d time.Duration) bool {
			slept = append(slept, d)
			return ctx.Err() == nil
		},
		failed: func(err error, _ time.Duration) { failures = append(failures, err) },
	}
	const n = 5
	attempts := 0
	errAPI := errors.New("apiserver away")
	r.run(ctx, func(ctx context.Context, up func()) error {
		attempts++
		switch {
		case attempts <= n: // registration fails
			return errAPI
		case attempts == n+1: // registers, later fails
			up()
			return errAPI
		case attempts == n+2: // fails to register again
			return errAPI
		default: // registered for good, until the node ends
			up()
			cancel()
			<-ctx.Done()
			return nil
		}
	})
	want := []time.Duration{1, 2, 4, 4, 4, 1, 2}
	for i := range want {
		want[i] *= time.Second
	}
	if !reflect.DeepEqual(slept, want) {
		t.Fatalf("delays %v, want %v", slept, want)
	}
	if attempts != n+3 || len(failures) != n+2 {
		t.Fatalf("%d attempts, %d failures reported; want %d, %d", attempts, len(failures), n+3, n+2)
	}
	for _, err := range failures {
		if !errors.Is(err, errAPI) {
			t.Fatalf("failure %v", err)
		}
	}
}

// The loop ends when ctx ends during a back-off.
func TestRetryLoopStopsWithCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := retryLoop{backoff: Backoff{Min: time.Hour, Max: time.Hour}, sleep: Sleep}
	done := make(chan struct{})
	go func() {
		r.run(ctx, func(context.Context, func()) error { return errors.New("fail") })
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("retry loop did not stop with ctx")
	}
}
