package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// maxChartPoints bounds the points of one charted series: a drawing 660
// units wide needs no more, and the report stays small whatever the pod
// count.
const maxChartPoints = 200

// seriesOf is one side's line for one round: baseline blue, vk-titus
// orange, every round after the first dashed.
func seriesOf(im impl, round int, pts []Point) Series {
	s := Series{Name: fmt.Sprintf("%s r%d", im.name, round), Color: "#d95f02", Points: thin(pts, maxChartPoints)}
	if im.name == "baseline" {
		s.Color = "#1b5e9e"
	}
	if round > 1 {
		s.Dash = fmt.Sprintf("%d 3", 2+2*round)
	}
	return s
}

// thin keeps at most n of pts (n ≥ 2), evenly spaced by index, the first
// and the last always.
func thin(pts []Point, n int) []Point {
	if len(pts) <= n {
		return pts
	}
	out := make([]Point, n)
	for i := range out {
		out[i] = pts[i*(len(pts)-1)/(n-1)]
	}
	return out
}

// runningTimeline is how many of pods were Running at each moment since t0
// (seconds), one step per pod; pods never seen Running are left out.
func runningTimeline(pods []PodTimes, t0 time.Time) []Point {
	var at []float64
	for _, p := range pods {
		if !p.Running.IsZero() {
			at = append(at, p.Running.Sub(t0).Seconds())
		}
	}
	slices.Sort(at)
	pts := make([]Point, 0, len(at)+1)
	pts = append(pts, Point{0, 0})
	for i, t := range at {
		pts = append(pts, Point{max(0, t), float64(i + 1)})
	}
	return pts
}

// cdf is the empirical distribution of vs: (v, fraction of vs ≤ v).
func cdf(vs []float64) []Point {
	s := slices.Clone(vs)
	slices.Sort(s)
	pts := make([]Point, len(s))
	for i, v := range s {
		pts[i] = Point{v, float64(i+1) / float64(len(s))}
	}
	return pts
}

// rssSampler reads a process's RSS (MB) against a count (pods Running) in
// the background, every second at first. Its memory is bounded: when it
// holds 2×maxChartPoints samples it drops every other one and samples half
// as often from then on.
type rssSampler struct {
	stop func()
	done chan struct{}

	mu  sync.Mutex
	pts []Point
}

// sampleRSS starts sampling pid until Stop.
func sampleRSS(pid int, count func() int) *rssSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &rssSampler{stop: cancel, done: make(chan struct{})}
	go s.run(ctx, pid, count)
	return s
}

func (s *rssSampler) run(ctx context.Context, pid int, count func() int) {
	defer close(s.done)
	every := time.Second
	for {
		if p, err := ReadProc(pid); err == nil {
			s.mu.Lock()
			s.pts = append(s.pts, Point{float64(count()), float64(p.RSSKB) / 1024})
			if len(s.pts) >= 2*maxChartPoints {
				for i := range maxChartPoints {
					s.pts[i] = s.pts[2*i]
				}
				s.pts = s.pts[:maxChartPoints]
				every *= 2
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// Stop ends the sampling (if it still runs) and returns the samples in the
// order taken.
func (s *rssSampler) Stop() []Point {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pts
}
