package statemachine

import (
	"fmt"
	"io"
	"strings"
)

// label is an edge's text: the event, then the actions it triggers.
func label(t Transition) string {
	l := string(t.On)
	if len(t.Actions) > 0 {
		parts := make([]string, len(t.Actions))
		for i, a := range t.Actions {
			parts[i] = string(a)
		}
		l += " / " + strings.Join(parts, ", ")
	}
	return l
}

// Dot writes the table as a Graphviz digraph. Self-loops without actions are
// left out: they are the table's explicit no-ops and would only clutter it.
func Dot(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph vktitus {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n")
	for _, s := range States() {
		shape := ""
		if InfoOf(s).Terminal {
			shape = ", peripheries=2"
		}
		fmt.Fprintf(&b, "  %q [label=%q%s];\n", s, fmt.Sprintf("%s\\n%s / %s", s, InfoOf(s).Mesos, InfoOf(s).Titus), shape)
	}
	for _, t := range table {
		if t.From == t.To && len(t.Actions) == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %q -> %q [label=%q];\n", t.From, t.To, label(t))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Mermaid writes the table as a Mermaid stateDiagram, for Markdown docs.
func Mermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	fmt.Fprintf(&b, "  [*] --> %s\n", Accepted)
	for _, t := range table {
		if t.From == t.To && len(t.Actions) == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %s --> %s: %s\n", t.From, t.To, label(t))
	}
	for _, s := range States() {
		if InfoOf(s).Terminal {
			fmt.Fprintf(&b, "  %s --> [*]\n", s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// StateTable writes, as a Markdown table, what every state shows to
// Kubernetes, Mesos and Titus.
func StateTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| state | pod phase | container state | Mesos TaskState | Titus task state |\n|---|---|---|---|---|\n")
	for _, s := range States() {
		i := InfoOf(s)
		phase, view := string(i.Phase), string(i.View)
		switch i.View {
		case ViewLast:
			phase, view = "last known", "last known"
		case ViewWaiting:
			view += ": " + i.WaitingReason
		case ViewTerminated:
			reason := i.TerminatedReason
			if reason == "" {
				reason = "Completed or Error"
			}
			view += ": " + reason
		}
		titus := i.Titus
		if i.TitusReason != "" {
			titus += " / " + i.TitusReason
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", s, phase, view, i.Mesos, titus)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// PodTableMarkdown writes the pod table as Markdown, one row per transition
// (explicit no-ops left out, as in the diagram).
func PodTableMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| pod state | event | next | asks its containers |\n|---|---|---|---|\n")
	for _, t := range podTable {
		if t.From == t.To && len(t.Actions) == 0 {
			continue
		}
		acts := make([]string, len(t.Actions))
		for i, a := range t.Actions {
			acts[i] = string(a)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.From, t.On, t.To, strings.Join(acts, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
