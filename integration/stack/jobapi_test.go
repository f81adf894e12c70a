package stack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate and its key (PEM): enough to
// stand for the stack's CA and its client certificate.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e", Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestLoadJobAPITLS(t *testing.T) {
	crt, key := selfSigned(t)
	writeEnv(t, "LEGACY_API=https://127.0.0.1:27001", "LEGACY_API_GRPC=127.0.0.1:27104",
		"JOB_API_CA="+crt, "JOB_API_CERT="+crt, "JOB_API_KEY="+key)
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.JobAPI != "https://127.0.0.1:27001" || e.JobAPIGRPC != "127.0.0.1:27104" {
		t.Fatalf("JobAPI %q, JobAPIGRPC %q", e.JobAPI, e.JobAPIGRPC)
	}
	if c := e.JobAPITLS(false); c == nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatalf("JobAPITLS(false) = %+v, want the CA and the client certificate", c)
	}
	if c := e.JobAPITLS(true); c == nil || c.RootCAs == nil || len(c.Certificates) != 0 {
		t.Fatalf("JobAPITLS(true) = %+v, want the CA and no client certificate", c)
	}
	// An anonymous copy leaves the others their certificate.
	if c := e.JobAPITLS(false); len(c.Certificates) != 1 {
		t.Fatal("JobAPITLS(true) changed the shared configuration")
	}
	if p := e.JobAPICredentials(false).Info().SecurityProtocol; p != "tls" {
		t.Fatalf("JobAPICredentials: %q, want tls", p)
	}
}

func TestLoadJobAPIPlainOrIncomplete(t *testing.T) {
	writeEnv(t, "LEGACY_API=http://127.0.0.1:27001")
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.JobAPITLS(false) != nil || e.JobAPIClient(time.Second, false).Transport == nil {
		t.Fatal("a plain job API got a TLS configuration, or its client no transport")
	}
	if p := e.JobAPICredentials(false).Info().SecurityProtocol; p != "insecure" {
		t.Fatalf("JobAPICredentials of a plain job API: %q, want insecure", p)
	}

	writeEnv(t, "LEGACY_API=https://127.0.0.1:27001")
	if _, err := Load(); err == nil {
		t.Fatal("Load accepted an https job API without JOB_API_CA, JOB_API_CERT, JOB_API_KEY")
	}
	crt, _ := selfSigned(t)
	writeEnv(t, "LEGACY_API=https://127.0.0.1:27001", "JOB_API_CA="+crt, "JOB_API_CERT="+crt, "JOB_API_KEY="+crt)
	if _, err := Load(); err == nil {
		t.Fatal("Load accepted a JOB_API_KEY that holds no key")
	}
}
