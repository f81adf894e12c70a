//go:build tools

// Package controlplane pins the Kubernetes and etcd commands the end-to-end
// tests run; it is a separate module so their dependency graph never touches
// the bridge's own go.mod.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
