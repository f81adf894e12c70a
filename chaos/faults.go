package chaos

import (
	"fmt"
	"math/rand"
	"strings"
	"time"
)

// Fault is one crash in the schedule: at At after the start, SIGKILL
// Target (scripts/stack.sh kill), wait Down, start it again.
type Fault struct {
	At     time.Duration
	Kind   string // vk-titus, agent, master, kube-apiserver, zookeeper
	Target string // the stack component: vk-titus, agent-N, master-N, ...
	Down   time.Duration
}

func (f Fault) String() string {
	return fmt.Sprintf("+%-7s kill %-15s down %s", f.At.Round(time.Second), f.Target, f.Down.Round(time.Second))
}

// Schedule is the fault schedule for a seed: deterministic (the same seed,
// duration, agents and masters give the same schedule), one fault at a
// time, none in the last minute of the run.
func Schedule(seed int64, d time.Duration, agents, masters int) []Fault {
	r := rand.New(rand.NewSource(seed))
	type kind struct {
		name           string
		weight         int
		minDown, spanD time.Duration
	}
	kinds := []kind{
		{"vk-titus", 4, 1 * time.Second, 15 * time.Second},
		{"agent", 3, 1 * time.Second, 25 * time.Second},
		{"master", 2, 1 * time.Second, 20 * time.Second},
		{"kube-apiserver", 2, 5 * time.Second, 40 * time.Second},
		{"zookeeper", 1, 5 * time.Second, 25 * time.Second},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	var out []Fault
	at := 20*time.Second + time.Duration(r.Int63n(int64(20*time.Second)))
	for at < d-time.Minute {
		n := r.Intn(total)
		var k kind
		for _, k = range kinds {
			if n < k.weight {
				break
			}
			n -= k.weight
		}
		f := Fault{At: at, Kind: k.name, Target: k.name, Down: k.minDown + time.Duration(r.Int63n(int64(k.spanD)))}
		switch k.name {
		case "agent":
			if agents == 0 {
				continue
			}
			f.Target = fmt.Sprintf("agent-%d", r.Intn(agents))
		case "master":
			if masters == 0 {
				continue
			}
			f.Target = fmt.Sprintf("master-%d", r.Intn(masters))
		}
		out = append(out, f)
		// The next fault once this one is over, after a pause.
		at += f.Down + 10*time.Second + time.Duration(r.Int63n(int64(40*time.Second)))
	}
	return out
}

// FormatSchedule prints a schedule one fault a line.
func FormatSchedule(fs []Fault) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.String() + "\n")
	}
	return b.String()
}
