package main

import "testing"

func TestFleetReusesPortsAndSkipsMetrics(t *testing.T) {
	f := &fleet{o: &opts{listenPort: 10250, metricsAddr: "127.0.0.1:10252"}, ports: map[int]bool{}}
	var got []int
	for range 3 {
		got = append(got, f.takePort())
	}
	if got[0] != 10250 || got[1] != 10251 || got[2] != 10253 {
		t.Fatalf("ports %v: want 10250 10251 10253 (10252 is the metrics port)", got)
	}
	f.releasePort(10250)
	if p := f.takePort(); p != 10250 {
		t.Fatalf("after a node left, the next one got %d, want its freed 10250", p)
	}
}
