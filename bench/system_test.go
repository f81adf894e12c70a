package bench

import (
	"math"
	"strings"
	"testing"
)

func TestHistogramQuantile(t *testing.T) {
	parse := func(text string) Metrics {
		m, err := parseMetrics(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := parse(`h_bucket{le="0.001"} 1
h_bucket{le="0.01"} 1
h_bucket{le="+Inf"} 1
`)
	after := parse(`h_bucket{le="0.001"} 51
h_bucket{le="0.01"} 100
h_bucket{le="+Inf"} 101
`)
	if v, n := HistogramQuantile(before, after, "h", 0.5); v != 0.001 || n != 100 {
		t.Fatalf("p50 %v of %v", v, n)
	}
	if v, _ := HistogramQuantile(before, after, "h", 0.99); v != 0.01 {
		t.Fatalf("p99 %v", v)
	}
	if v, n := HistogramQuantile(after, after, "h", 0.5); !math.IsNaN(v) || n != 0 {
		t.Fatalf("no observations: %v %v", v, n)
	}
}
