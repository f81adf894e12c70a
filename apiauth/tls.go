package apiauth

import (
	"crypto/tls"
	"fmt"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
)

// ServerTLS is the job API's TLS, built as the kubelet API's is: the
// serving certificate and key, the kubelet's cipher suites, TLS 1.2 or
// later, and with clientCAFile a request for a client certificate that is
// verified against it when one is presented but not demanded, so that
// bearer-token and (when allowed) anonymous clients still get through to
// the Guard. The files are read once: a bad one is a startup error.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("apiauth: serving certificate and key are both required")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("apiauth: serving certificate %s, key %s: %w", certFile, keyFile, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, CipherSuites: nodeutil.DefaultServerCiphers()}
	if clientCAFile != "" {
		if err := nodeutil.WithCAFromPath(clientCAFile)(c); err != nil {
			return nil, fmt.Errorf("apiauth: client CA %s: %w", clientCAFile, err)
		}
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c, nil
}
