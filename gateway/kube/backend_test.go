package kube

import (
	"context"
	"io"
	"testing"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestStartEnsuresTheNamespace(t *testing.T) {
	_, client := newTestBackend(t)
	if _, err := client.CoreV1().Namespaces().Get(context.Background(), testNS, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace not created: %v", err)
	}
}

// A gateway that may not read namespaces starts on the one it was given.
func TestStartWithoutNamespaceRights(t *testing.T) {
	client := fake.NewSimpleClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}})
	client.PrependReactor("*", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, testNS, nil)
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	b, err := New(client, Config{Namespace: testNS}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
}
