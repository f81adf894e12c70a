package migration

import (
	"fmt"
	"time"
	"unicode"
)

// Scope is what an entry names: one application, or a whole capacity
// group (every application whose jobs run in it, unless the application
// has an entry of its own).
type Scope string

const (
	ScopeApplication   Scope = "application"
	ScopeCapacityGroup Scope = "capacityGroup"
)

// scopes in the order List and Resolve consult them.
var scopes = []Scope{ScopeApplication, ScopeCapacityGroup}

// Entry is the stage set for one application or capacity group: the data
// of its znode. By and DeclaredBy are those of the change that set it.
type Entry struct {
	Scope      Scope     `json:"scope"`
	Name       string    `json:"name"`
	Stage      string    `json:"stage"`
	Updated    time.Time `json:"updated"`
	By         string    `json:"by"`
	DeclaredBy string    `json:"declaredBy,omitempty"`
}

// Change is one history record: who moved what from which stage to which.
//
// By is the author as authenticated (see the package doc, "Who is
// recorded"); DeclaredBy and Reason are what the caller said about itself
// and why, which nothing verifies. Records written before authentication
// existed carry only By, as the caller typed it.
type Change struct {
	At         time.Time `json:"at"`
	By         string    `json:"by"`
	DeclaredBy string    `json:"declaredBy,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Scope      Scope     `json:"scope"`
	Name       string    `json:"name"`
	Old        string    `json:"old"` // "" when there was no entry
	New        string    `json:"new"` // "" when the entry was removed
}

// Decision is what Resolve found: the stage, and the entry it came from
// (Scope "" when no entry matched and the default applied).
type Decision struct {
	Stage Stage  `json:"stage"`
	Scope Scope  `json:"scope"`
	Name  string `json:"name"`
}

// maxName bounds names (bytes): ZooKeeper paths are not meant to be essays.
const maxName = 200

// ParseScope reads a scope as tools write it.
func ParseScope(s string) (Scope, error) {
	sc := Scope(s)
	return sc, validScope(sc)
}

func validScope(s Scope) error {
	if s != ScopeApplication && s != ScopeCapacityGroup {
		return fmt.Errorf("%w: scope %q: want %s or %s", ErrInvalid, s, ScopeApplication, ScopeCapacityGroup)
	}
	return nil
}

// validName accepts what can be one znode name. Whitespace is refused too:
// a name pasted with a trailing space would make an entry nothing matches.
func validName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(name) > maxName:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, maxName)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %s %q", ErrInvalid, what, name)
	}
	for _, r := range name {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s %q: contains %q", ErrInvalid, what, name, r)
		}
	}
	return nil
}

func validKey(scope Scope, name string) error {
	if err := validScope(scope); err != nil {
		return err
	}
	return validName("name", name)
}

// validDeclared accepts a declared author: optional (the authenticated
// one is always recorded), printable, and short, as it is shown in tables.
func validDeclared(by string) error {
	if len(by) > maxName {
		return fmt.Errorf("%w: declared author (by) is longer than %d bytes", ErrInvalid, maxName)
	}
	for _, r := range by {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: declared author (by) %q: contains %q", ErrInvalid, by, r)
		}
	}
	return nil
}
