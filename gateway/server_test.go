package gateway

import "testing"

// The job APIs' TLS flags are checked before anything is served: a
// half-given pair, or a client CA without TLS, is an error, not a plain
// server that ignores them.
func TestAuthConfigServerTLS(t *testing.T) {
	for name, c := range map[string]struct {
		cfg     AuthConfig
		wantErr bool
	}{
		"plain":             {AuthConfig{}, false},
		"cert without key":  {AuthConfig{TLSCertFile: "c.crt"}, true},
		"key without cert":  {AuthConfig{TLSKeyFile: "c.key"}, true},
		"client CA, no TLS": {AuthConfig{ClientCAFile: "ca.crt"}, true},
		"missing files":     {AuthConfig{TLSCertFile: "/nonexistent/c.crt", TLSKeyFile: "/nonexistent/c.key"}, true},
	} {
		got, err := c.cfg.serverTLS()
		if (err != nil) != c.wantErr {
			t.Errorf("%s: err = %v, want error %v", name, err, c.wantErr)
		}
		if err == nil && got != nil {
			t.Errorf("%s: a TLS configuration without certificate files", name)
		}
	}
}
