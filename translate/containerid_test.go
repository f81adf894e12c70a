package translate

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestContainerID(t *testing.T) {
	tests := []struct {
		uid       types.UID
		name, id  string
		parses    bool
		parseName string
	}{
		{testUID, "web", "vkt-" + testUID + "-web", true, "web"},
		{testUID, "a-b-c", "vkt-" + testUID + "-a-b-c", true, "a-b-c"},
		{"3F2B6C1E-9A47-4D1B-8C5E-0F6A7B8C9D01", "x", "vkt-3F2B6C1E-9A47-4D1B-8C5E-0F6A7B8C9D01-x", true, "x"},
		// Never produced by a valid pod, but still a valid Mesos id, and reversible.
		{testUID, "odd.name/x_y", "vkt-" + testUID + "-odd_2ename_2fx_5fy", true, "odd.name/x_y"},
		// Not a UUID: a valid id that does not parse.
		{"uid-1", "web", "vkt-uid-1-web", false, ""},
	}
	for _, tc := range tests {
		id := ContainerID(tc.uid, tc.name)
		if id != tc.id {
			t.Errorf("ContainerID(%q, %q) = %q, want %q", tc.uid, tc.name, id, tc.id)
		}
		if strings.ContainsAny(id, "./\\") {
			t.Errorf("%q holds characters Mesos refuses", id)
		}
		uid, name, ok := ParseContainerID(id)
		if ok != tc.parses || (ok && (uid != tc.uid || name != tc.parseName)) {
			t.Errorf("ParseContainerID(%q) = %q %q %v", id, uid, name, ok)
		}
	}
}

func TestParseContainerIDRejects(t *testing.T) {
	for _, id := range []string{
		"",
		"vkt-",
		"web",
		"vkt-" + testUID,
		"vkt-" + testUID + "-",
		"vkt-" + testUID + "x" + "web",
		"vkx-" + testUID + "-web",
		"vkt-" + testUID + "-we.b",
		"vkt-" + testUID + "-we_b",   // unterminated escape
		"vkt-" + testUID + "-we_zzb", // not hex
		"vkt-" + testUID + "-we_61b", // escapes a character that is never escaped
		"vkt-3f2b6c1e-9a47-4d1b-8c5e-0f6a7b8c9d0g-web",
	} {
		if uid, name, ok := ParseContainerID(id); ok {
			t.Errorf("ParseContainerID(%q) = %q %q, want failure", id, uid, name)
		}
	}
}

func TestExpandVars(t *testing.T) {
	env := map[string]string{"A": "1", "B": "two", "E": ""}
	for in, want := range map[string]string{
		"":                 "",
		"plain":            "plain",
		"$(A)":             "1",
		"x$(A)y$(B)z":      "x1ytwoz",
		"$(E)|":            "|",
		"$(NOPE)":          "$(NOPE)",
		"$$(A)":            "$(A)",
		"$$$(A)":           "$1",
		"$":                "$",
		"a$":               "a$",
		"$A":               "$A",
		"$(":               "$(",
		"$(A":              "$(A",
		"$()":              "$()",
		"$(A)$(unclosed":   "1$(unclosed",
		"price: $$5 $(B)$": "price: $5 two$",
	} {
		if got := expandVars(in, env); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}
