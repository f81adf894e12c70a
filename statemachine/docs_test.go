package statemachine

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

const docPath = "../docs/statemachine.md"

// The diagram in the docs is the table's own output; regenerate it with
// VKT_UPDATE_DOCS=1 go test ./statemachine/ -run TestDocsDiagram.
func TestDocsDiagram(t *testing.T) {
	var mm bytes.Buffer
	if err := Mermaid(&mm); err != nil {
		t.Fatal(err)
	}
	block := "```mermaid\n" + mm.String() + "```\n"
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(doc), "```mermaid\n")
	end := strings.Index(string(doc[max(start, 0):]), "```\n\n")
	if start < 0 || end < 0 {
		t.Fatalf("%s has no mermaid block", docPath)
	}
	current := string(doc[start : start+end+4])
	if current == block {
		return
	}
	if os.Getenv("VKT_UPDATE_DOCS") != "" {
		updated := string(doc[:start]) + block + string(doc[start+end+4:])
		if err := os.WriteFile(docPath, []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s is stale: run VKT_UPDATE_DOCS=1 go test ./statemachine/ -run TestDocsDiagram", docPath)
}

func TestDocsStateTable(t *testing.T) { checkDocTable(t, "| state | pod phase", StateTable) }

func TestDocsPodTable(t *testing.T) { checkDocTable(t, "| pod state | event", PodTableMarkdown) }

// checkDocTable checks that the doc holds the table write produces, in the
// paragraph starting with head; VKT_UPDATE_DOCS=1 rewrites it.
func checkDocTable(t *testing.T, head string, write func(io.Writer) error) {
	t.Helper()
	var tbl bytes.Buffer
	if err := write(&tbl); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), tbl.String()) {
		return
	}
	start := strings.Index(string(doc), head)
	end := strings.Index(string(doc[max(start, 0):]), "\n\n")
	if os.Getenv("VKT_UPDATE_DOCS") != "" && start >= 0 && end >= 0 {
		updated := string(doc[:start]) + tbl.String() + string(doc[start+end+1:])
		if err := os.WriteFile(docPath, []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: a table differs from the code's (VKT_UPDATE_DOCS=1 rewrites it); it should read:\n%s", docPath, tbl.String())
}
