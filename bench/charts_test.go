package bench

import (
	"reflect"
	"testing"
	"time"
)

func TestThin(t *testing.T) {
	var pts []Point
	for i := range 1000 {
		pts = append(pts, Point{float64(i), float64(i)})
	}
	got := thin(pts, 200)
	if len(got) != 200 || got[0] != pts[0] || got[199] != pts[999] {
		t.Fatalf("thin to 200: %d points from %v to %v", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i].X <= got[i-1].X {
			t.Fatalf("point %d (%v) not after point %d (%v)", i, got[i], i-1, got[i-1])
		}
	}
	if short := pts[:5]; len(thin(short, 200)) != 5 {
		t.Error("a series shorter than the bound was thinned")
	}
}

func TestRunningTimeline(t *testing.T) {
	t0 := time.Unix(100, 0)
	pods := []PodTimes{
		{Running: t0.Add(2 * time.Second)},
		{}, // never Running
		{Running: t0.Add(500 * time.Millisecond)},
	}
	want := []Point{{0, 0}, {0.5, 1}, {2, 2}}
	if got := runningTimeline(pods, t0); !reflect.DeepEqual(got, want) {
		t.Errorf("runningTimeline = %v, want %v", got, want)
	}
}

func TestCDF(t *testing.T) {
	want := []Point{{1, 0.25}, {2, 0.5}, {3, 0.75}, {9, 1}}
	if got := cdf([]float64{9, 1, 3, 2}); !reflect.DeepEqual(got, want) {
		t.Errorf("cdf = %v, want %v", got, want)
	}
	if got := cdf(nil); len(got) != 0 {
		t.Errorf("cdf(nil) = %v, want no point", got)
	}
}

func TestPlotMergesSeriesByID(t *testing.T) {
	r := NewReport(Options{})
	r.Plot(Chart{ID: "a", Title: "A", Series: []Series{{Name: "baseline r1"}}})
	r.Plot(Chart{ID: "b", Title: "B", Series: []Series{{Name: "baseline r1"}}})
	r.Plot(Chart{ID: "a", Title: "ignored", Series: []Series{{Name: "vk-titus r1"}}})
	if len(r.Charts) != 2 || r.Charts[0].Title != "A" || len(r.Charts[0].Series) != 2 || r.Charts[0].Series[1].Name != "vk-titus r1" {
		t.Errorf("charts after three plots: %+v", r.Charts)
	}
}
