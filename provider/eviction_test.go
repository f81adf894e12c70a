package provider

import (
	"strings"
	"testing"
)

func TestParseThresholds(t *testing.T) {
	for _, c := range []struct {
		in, want string // want: String() of the result
	}{
		{"", ""},
		{DefaultEvictionHard, DefaultEvictionHard},
		{"nodefs.inodesFree<5%,memory.available<100Mi", "memory.available<100Mi,nodefs.inodesFree<5%"},
		{" memory.available < 1Gi , nodefs.available<12.5%,", "memory.available<1Gi,nodefs.available<12.5%"},
		{"memory.available<500M", "memory.available<500M"},
		{"nodefs.inodesFree<1000", "nodefs.inodesFree<1k"},
		{"nodefs.available<0.5%", "nodefs.available<0.5%"},
		// As the kubelet reads them, 0% and 100% set no threshold.
		{"memory.available<0%,nodefs.available<100%", ""},
	} {
		got, err := ParseThresholds(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if s := got.String(); s != c.want {
			t.Errorf("%q: got %q, want %q", c.in, s, c.want)
		}
	}
	th, _ := ParseThresholds("memory.available<100Mi,nodefs.available<10%")
	if m, ok := th.For(SignalMemoryAvailable); !ok || m.Quantity == nil || m.Quantity.Value() != 100<<20 {
		t.Errorf("memory.available: %+v %v", m, ok)
	}
	if n, ok := th.For(SignalNodeFsAvailable); !ok || n.Quantity != nil || n.Percent != 10 {
		t.Errorf("nodefs.available: %+v %v", n, ok)
	}
	if _, ok := th.For(SignalNodeFsInodesFree); ok || th.Empty() {
		t.Errorf("nodefs.inodesFree set, or Empty: %v", th.Empty())
	}
	if none, _ := ParseThresholds(""); !none.Empty() {
		t.Errorf("empty flag has thresholds: %s", none.String())
	}
}

func TestParseThresholdsRefuses(t *testing.T) {
	for in, want := range map[string]string{
		"memory.available>100Mi":                       "want signal<value",
		"memory.available":                             "want signal<value",
		"memory.available<=100Mi":                      "neither a quantity",
		"memory.available<lots":                        "neither a quantity",
		"memory.available<":                            "neither a quantity",
		"memory.available<-1Mi":                        "must be positive",
		"memory.available<0":                           "must be positive",
		"memory.available<101%":                        "not a percentage",
		"memory.available<-5%":                         "not a percentage",
		"memory.available<NaN%":                        "not a percentage",
		"memory.available<x%":                          "not a percentage",
		"memory.availble<100Mi":                        `unknown eviction signal "memory.availble" (supported: memory.available, nodefs.available, nodefs.inodesFree)`,
		"<100Mi":                                       "unknown eviction signal",
		"pid.available<10%":                            "pid.available is not supported: a Mesos agent reports no process figures",
		"imagefs.available<15%":                        "not supported",
		"allocatableMemory.available<1Gi":              "not supported",
		"memory.available<1Gi,memory.available<2Gi":    "memory.available given twice",
		"memory.available<0%,memory.available<100Mi":   "given twice",
		"nodefs.available<10%,nodefs.inodesFree<5%,x<": "unknown eviction signal",
	} {
		_, err := ParseThresholds(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", in, err, want)
		}
	}
}

// TestEvictionHardFlag: as the kubelet's flag (pflag calls Set once per
// occurrence), the default holds until the flag is given, the first one
// replaces it, a repeated one adds to it, and a bad value is an error that
// leaves the value as it was.
func TestEvictionHardFlag(t *testing.T) {
	parse := func(values ...string) (Thresholds, error) {
		th := DefaultThresholds()
		for _, v := range values {
			if err := th.Set(v); err != nil {
				return th, err
			}
		}
		return th, nil
	}
	if th, err := parse(); err != nil || th.String() != DefaultEvictionHard {
		t.Errorf("no flag: %q %v", th.String(), err)
	}
	if th, err := parse("memory.available<1Gi"); err != nil || th.String() != "memory.available<1Gi" {
		t.Errorf("one flag: %q %v", th.String(), err)
	}
	if th, err := parse("memory.available<1Gi", "nodefs.available<20%"); err != nil ||
		th.String() != "memory.available<1Gi,nodefs.available<20%" {
		t.Errorf("two flags: %q %v", th.String(), err)
	}
	if _, err := parse("memory.available<1Gi", "memory.available<2Gi"); err == nil {
		t.Error("a signal in two flags: no error")
	}
	if th, err := parse(""); err != nil || !th.Empty() {
		t.Errorf("empty flag: %q %v", th.String(), err)
	}
	if th, err := parse("memory.available<1Gi,bogus<1"); err == nil || th.String() != DefaultEvictionHard {
		t.Errorf("bad flag: %q %v", th.String(), err)
	}
	if th, err := parse("memory.available<1Gi", "bogus<1"); err == nil || th.String() != "memory.available<1Gi" {
		t.Errorf("bad second flag: %q %v", th.String(), err)
	}
}
