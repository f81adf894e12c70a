package migration

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Stage is how far one application (or capacity group) has moved to
// Kubernetes: the share of its new jobs that the gateway sends there.
// "legacy" and "kube" are the ends of the road (0 and 100); "NN%" is a
// canary in between.
//
// The zero Stage is "0%": it sends nothing to Kubernetes, like legacy.
type Stage struct {
	// Percent of new jobs that go to Kubernetes, 0..100.
	Percent int
	// named keeps "legacy"/"kube" apart from "0%"/"100%" so that String
	// gives back what the operator wrote: the history must read as typed.
	named bool
}

// The two ends of a migration.
var (
	Legacy = Stage{Percent: 0, named: true}
	Kube   = Stage{Percent: 100, named: true}
)

// ParseStage reads "legacy", "kube" or "NN%" (0% to 100%). It is strict
// (no spaces, no leading zeros, lower case) so that every accepted text is
// exactly what String gives back.
func ParseStage(s string) (Stage, error) {
	switch s {
	case "legacy":
		return Legacy, nil
	case "kube":
		return Kube, nil
	}
	digits, ok := strings.CutSuffix(s, "%")
	if ok && digits != "" && (digits == "0" || digits[0] != '0') && strings.Trim(digits, "0123456789") == "" {
		if n, err := strconv.Atoi(digits); err == nil && n <= 100 {
			return Stage{Percent: n}, nil
		}
	}
	return Stage{}, fmt.Errorf("%w: stage %q: want legacy, kube or a share of new jobs from 0%% to 100%% (e.g. 25%%)", ErrInvalid, s)
}

// String is the stage as ParseStage reads it.
func (s Stage) String() string {
	if s.named {
		if s.Percent >= 100 {
			return "kube"
		}
		return "legacy"
	}
	return strconv.Itoa(s.Percent) + "%"
}

// Kube decides where one new job runs: true for Kubernetes. The same
// jobKey always gets the same answer at a given stage, and a job that goes
// to Kubernetes at some share still does at every higher share, so raising
// the share only ever adds jobs to Kubernetes.
func (s Stage) Kube(jobKey string) bool {
	h := fnv.New32a()
	h.Write([]byte(jobKey))
	return int(h.Sum32()%100) < s.Percent
}

// MarshalText lets a Stage appear in JSON as its text.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a Stage from JSON text with ParseStage.
func (s *Stage) UnmarshalText(b []byte) error {
	st, err := ParseStage(string(b))
	if err != nil {
		return err
	}
	*s = st
	return nil
}
