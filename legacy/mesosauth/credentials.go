package mesosauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxFileSize bounds a credential file: a few thousand principals fit; a
// bigger file is a mistake (a wrong path), not credentials.
const maxFileSize = 1 << 20

// ErrBadCredentials: a credential file is unreadable or malformed. The
// error never quotes the file's content.
var ErrBadCredentials = errors.New("bad credentials file")

// Credential is one principal and its secret, as Mesos' Credential
// message. String and GoString print the principal only.
type Credential struct {
	Principal string `json:"principal"`
	Secret    string `json:"secret"`
}

// String names the principal and never the secret, so a Credential that
// ends up in a log line leaks nothing.
func (c Credential) String() string {
	return fmt.Sprintf("principal %q (secret redacted)", c.Principal)
}

// GoString is String, for %#v.
func (c Credential) GoString() string { return c.String() }

func (c Credential) validate() error {
	switch {
	case c.Principal == "":
		return errors.New("empty principal")
	case c.Secret == "":
		return fmt.Errorf("principal %q: empty secret", c.Principal)
	case strings.ContainsAny(c.Principal, ":\r\n"):
		// HTTP Basic joins principal and secret with ':'.
		return fmt.Errorf("principal %q: ':' and line breaks are not allowed", c.Principal)
	}
	return nil
}

// Credentials are what a server accepts (--http_credentials).
type Credentials []Credential

// readFile reads a credential file; like Mesos' path flags it takes a
// plain path or a file:// URL.
func readFile(path string) ([]byte, error) {
	path = strings.TrimPrefix(path, "file://")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBadCredentials, path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBadCredentials, path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%w %s: larger than %d bytes", ErrBadCredentials, path, maxFileSize)
	}
	return b, nil
}

// jsonErr words a decoding error without the offending value: a
// json.SyntaxError carries only an offset, an UnmarshalTypeError the field.
func jsonErr(path string, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%w %s: not JSON (syntax error at byte %d)", ErrBadCredentials, path, se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("%w %s: field %q must be a %s", ErrBadCredentials, path, te.Field, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("%w %s: %s", ErrBadCredentials, path, strings.TrimPrefix(err.Error(), "json: "))
	}
	return fmt.Errorf("%w %s: not valid JSON", ErrBadCredentials, path)
}

func decodeStrict(b []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// LoadCredentials reads a --http_credentials file:
// {"credentials": [{"principal": "...", "secret": "..."}, ...]}. It fails on
// an empty list, an empty principal or secret and a repeated principal.
func LoadCredentials(path string) (Credentials, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Credentials Credentials `json:"credentials"`
	}
	if err := decodeStrict(b, &f); err != nil {
		return nil, jsonErr(path, err)
	}
	if len(f.Credentials) == 0 {
		return nil, fmt.Errorf(`%w %s: no credentials (expecting {"credentials": [{"principal": ..., "secret": ...}]})`, ErrBadCredentials, path)
	}
	seen := make(map[string]bool, len(f.Credentials))
	for i, c := range f.Credentials {
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("%w %s: credentials[%d]: %w", ErrBadCredentials, path, i, err)
		}
		if seen[c.Principal] {
			return nil, fmt.Errorf("%w %s: principal %q appears twice", ErrBadCredentials, path, c.Principal)
		}
		seen[c.Principal] = true
	}
	return f.Credentials, nil
}

// LoadCredential reads one credential, as Mesos' --credential does: a JSON
// {"principal": "...", "secret": "..."}, or a single line "principal
// secret".
func LoadCredential(path string) (*Credential, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var c Credential
	if text := strings.TrimSpace(string(b)); strings.HasPrefix(text, "{") {
		if err := decodeStrict(b, &c); err != nil {
			return nil, jsonErr(path, err)
		}
	} else {
		fields := strings.Fields(text)
		if len(fields) != 2 || strings.Contains(text, "\n") {
			return nil, fmt.Errorf(`%w %s: expecting {"principal": ..., "secret": ...} or one line "principal secret"`, ErrBadCredentials, path)
		}
		c = Credential{Principal: fields[0], Secret: fields[1]}
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBadCredentials, path, err)
	}
	return &c, nil
}
