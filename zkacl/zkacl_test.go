package zkacl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-zookeeper/zk"
)

const secret = "s3cr:et@"

func TestParse(t *testing.T) {
	c, err := Parse("vk:" + secret)
	if err != nil || c.User != "vk" || c.Password != secret {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
	for _, bad := range []string{"", "vk", ":pw", "vk:", "vk:pw\nx"} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "zk-credentials")
	if err := os.WriteFile(p, []byte("vk:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := ReadFile(p); err != nil || c.User != "vk" || c.Password != secret {
		t.Fatalf("ReadFile = %+v, %v", c, err)
	}
	if err := os.WriteFile(p, []byte("only-a-password"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p); !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "only-a-password") {
		t.Errorf("ReadFile of a malformed file = %v, want ErrInvalid without the content", err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadFile of a missing file: no error")
	}
}

func TestSplitURL(t *testing.T) {
	for _, tc := range []struct{ in, bare, user, pw string }{
		{"zk://a:2181,b:2181/vk-titus/migration", "zk://a:2181,b:2181/vk-titus/migration", "", ""},
		{"zk://vk:" + secret + "@a:2181,b:2181/vk-titus/migration", "zk://a:2181,b:2181/vk-titus/migration", "vk", secret},
		{"zk://vk:pw@a:2181/p@th", "zk://a:2181/p@th", "vk", "pw"},
	} {
		bare, c, err := SplitURL(tc.in)
		if err != nil || bare != tc.bare || c.User != tc.user || c.Password != tc.pw {
			t.Errorf("SplitURL(%q) = %q, %+v, %v", tc.in, bare, c, err)
		}
	}
	for _, bad := range []string{"http://vk:" + secret + "@a/p", "zk://vk@a:2181/p", "zk://:" + secret + "@a/p"} {
		_, _, err := SplitURL(bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("SplitURL(%q) = %v, want ErrInvalid", bad, err)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("SplitURL(%q): the error shows the password: %v", bad, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"zk://vk:" + secret + "@a:2181/p": "zk://vk:[redacted]@a:2181/p",
		"zk://vk:" + secret + "@a:2181":   "zk://vk:[redacted]@a:2181",
		"zk://a:2181/p":                   "zk://a:2181/p",
		"http://h/p":                      "http://h/p",
		"http://u:" + secret + "@h/p":     "http://u:[redacted]@h/p",
		"not a url":                       "not a url",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// However Credentials end up in a log line, the password does not.
func TestNeverPrinted(t *testing.T) {
	c := Credentials{User: "vk", Password: secret}
	js, err := json.Marshal(struct{ C Credentials }{c})
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{string(js), c.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		outs = append(outs, fmt.Sprintf(verb, c), fmt.Sprintf(verb, &c), fmt.Sprintf(verb, []Credentials{c}))
	}
	for _, o := range outs {
		if strings.Contains(o, secret) || !strings.Contains(o, "vk") {
			t.Errorf("printed as %q", o)
		}
	}
}

func TestACL(t *testing.T) {
	if got := (Credentials{}).ACL(); len(got) != 1 || got[0] != zk.WorldACL(zk.PermAll)[0] {
		t.Errorf("ACL without credentials = %+v, want the world's, all permissions", got)
	}
	c := Credentials{User: "vk", Password: secret}
	want := []zk.ACL{zk.WorldACL(zk.PermRead)[0], zk.DigestACL(zk.PermAll, "vk", secret)[0]}
	got := c.ACL()
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("ACL = %+v, want %+v", got, want)
	}
	if string(c.Auth()) != "vk:"+secret {
		t.Errorf("Auth = %q", c.Auth())
	}
}
