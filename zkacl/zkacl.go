package zkacl

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-zookeeper/zk"
)

// ErrInvalid marks malformed credentials or URLs.
var ErrInvalid = errors.New("invalid zookeeper credentials")

// Scheme is the ZooKeeper authentication scheme of Credentials.
const Scheme = "digest"

const redacted = "[redacted]"

// Credentials are one ZooKeeper digest user. The zero value means none.
type Credentials struct {
	User     string
	Password string
}

// Parse reads "user:password". The user may not contain ':' (ZooKeeper
// splits at the first one); the password may.
func Parse(s string) (Credentials, error) {
	user, pw, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return Credentials{}, fmt.Errorf("%w: want user:password", ErrInvalid)
	case user == "" || pw == "":
		return Credentials{}, fmt.Errorf("%w: user and password must both be set", ErrInvalid)
	case strings.ContainsAny(s, "\r\n\x00"):
		return Credentials{}, fmt.Errorf("%w: user %q: control characters", ErrInvalid, user)
	}
	return Credentials{User: user, Password: pw}, nil
}

// ReadFile reads "user:password" from a file (surrounding white space,
// such as the trailing newline of a mounted Secret, is ignored). The error
// names the file, never its content.
func ReadFile(path string) (Credentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("zookeeper credentials: %w", err)
	}
	c, err := Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return Credentials{}, fmt.Errorf("zookeeper credentials file %s: %w", path, err)
	}
	return c, nil
}

// SplitURL takes the credentials out of zk://[user:password@]servers/path
// and returns the URL without them. Only the server list (up to the first
// '/') is searched, up to its last '@': a password holding '/' must come
// from a file or a flag instead. A URL without credentials comes back as
// is with zero Credentials.
func SplitURL(raw string) (string, Credentials, error) {
	rest, ok := strings.CutPrefix(raw, "zk://")
	if !ok {
		return "", Credentials{}, fmt.Errorf("%w: %s: expecting zk://[user:password@]host:port[,host:port]/path", ErrInvalid, Redact(raw))
	}
	hosts, p, _ := strings.Cut(rest, "/")
	at := strings.LastIndexByte(hosts, '@')
	if at < 0 {
		return raw, Credentials{}, nil
	}
	c, err := Parse(hosts[:at])
	if err != nil {
		return "", Credentials{}, fmt.Errorf("%s: %w", Redact(raw), err)
	}
	return "zk://" + hosts[at+1:] + "/" + p, c, nil
}

// Redact hides the password of a URL with credentials (zk://, or any
// scheme://user:password@host) for logs and errors:
// zk://user:[redacted]@host:port/path. Other strings come back as they are.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	hosts, p, hasPath := strings.Cut(rest, "/")
	at := strings.LastIndexByte(hosts, '@')
	if at < 0 {
		return raw
	}
	user, _, _ := strings.Cut(hosts[:at], ":")
	out := scheme + "://" + user + ":" + redacted + "@" + hosts[at+1:]
	if hasPath {
		out += "/" + p
	}
	return out
}

// IsZero tells whether there are no credentials.
func (c Credentials) IsZero() bool { return c.User == "" && c.Password == "" }

// ACL is the ACL of every znode created with these credentials: read for
// the world, everything for the owner; without credentials, everything for
// the world (ZooKeeper's open default).
func (c Credentials) ACL() []zk.ACL {
	if c.IsZero() {
		return zk.WorldACL(zk.PermAll)
	}
	return append(zk.WorldACL(zk.PermRead), zk.DigestACL(zk.PermAll, c.User, c.Password)...)
}

// Auth is what Conn.AddAuth(Scheme, ...) wants.
func (c Credentials) Auth() []byte { return []byte(c.User + ":" + c.Password) }

// String prints the user only: Credentials may end up in a log field.
func (c Credentials) String() string {
	if c.IsZero() {
		return ""
	}
	return c.User + ":" + redacted
}

// MarshalText keeps JSON (and logrus's JSON formatter) from printing the
// password: Credentials marshal as String.
func (c Credentials) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// GoString keeps %#v from printing the password too.
func (c Credentials) GoString() string { return fmt.Sprintf("zkacl.Credentials{User: %q}", c.User) }

// Format covers every other verb (%v, %+v, %s, %q): the password is never
// printed.
func (c Credentials) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, c.GoString())
	case verb == 'q':
		fmt.Fprintf(f, "%q", c.String())
	default:
		fmt.Fprint(f, c.String())
	}
}
