package apiauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pki is a test CA with a serving certificate and client certificates,
// written as PEM files as operators would give them.
type pki struct {
	dir              string
	ca               *x509.Certificate
	caKey            *ecdsa.PrivateKey
	caFile           string
	certFile         string
	keyFile          string
	pool             *x509.CertPool
	serial           int64
	notBefore, after time.Time
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), pool: x509.NewCertPool(), notBefore: time.Now().Add(-time.Hour), after: time.Now().Add(24 * time.Hour)}
	p.ca, p.caKey = p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	p.pool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", p.ca.Raw)
	srv, key := p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "gateway"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, p.ca, p.caKey)
	p.certFile = p.write(t, "tls.crt", "CERTIFICATE", srv.Raw)
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p.keyFile = p.write(t, "tls.key", "EC PRIVATE KEY", der)
	return p
}

// client issues a client certificate for user in groups, signed by this
// CA (or, with rogue, by a CA nobody trusts).
func (p *pki) client(t *testing.T, user string, groups []string, rogue bool) tls.Certificate {
	t.Helper()
	parent, parentKey := p.ca, p.caKey
	if rogue {
		parent, parentKey = p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "rogue-ca"}, IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	}
	c, key := p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, parent, parentKey)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key}
}

// issue signs tmpl with parent (self-signed when parent is nil).
func (p *pki) issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	tmpl.NotBefore, tmpl.NotAfter = p.notBefore, p.after
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// clientTLS is a client's TLS config trusting the test CA, presenting
// certs (none for token and anonymous callers). The certificate is sent
// whatever CAs the server names, so that a rogue one reaches the server.
func (p *pki) clientTLS(certs ...tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if len(certs) > 0 {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	return c
}
