//go:build tools

// Package metricsserver pins metrics-server, which the local stack runs so
// that `kubectl top` works against the virtual nodes; it is a module of its
// own because metrics-server pins its own Kubernetes libraries, which differ
// from the control plane's (tools/controlplane) and the bridge's.
package metricsserver

import (
	_ "sigs.k8s.io/metrics-server/cmd/metrics-server"
)
