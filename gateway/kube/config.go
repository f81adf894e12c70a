package kube

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults of Config.
const (
	DefaultNamespace          = "vk-titus-jobs"
	DefaultProvider           = "titus"                       // vk-titus run --provider
	DefaultTaintKey           = "virtual-kubelet.io/provider" // vk-titus run --taint
	DefaultFinishedTaskMemory = 10000
	DefaultCacheWait          = 5 * time.Second
)

// Config tells the backend where jobs live and how pods reach the virtual
// nodes. Zero fields take the defaults above.
type Config struct {
	// Namespace holds every job's objects; Start creates it if missing.
	Namespace string
	// Provider and TaintKey name the virtual nodes' taint, which every pod
	// tolerates: the values vk-titus run registers its nodes with.
	Provider string
	TaintKey string
	// FinishedTaskMemory is how many tasks of deleted pods are remembered,
	// so the API still answers for them after the pod is gone.
	FinishedTaskMemory int
	// CacheWait bounds how long a write waits for the informer cache to
	// show it before returning anyway.
	CacheWait time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Provider == "" {
		c.Provider = DefaultProvider
	}
	if c.TaintKey == "" {
		c.TaintKey = DefaultTaintKey
	}
	if c.FinishedTaskMemory == 0 {
		c.FinishedTaskMemory = DefaultFinishedTaskMemory
	}
	if c.CacheWait == 0 {
		c.CacheWait = DefaultCacheWait
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return c, fmt.Errorf("namespace %q: %s", c.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsQualifiedName(c.TaintKey); len(errs) > 0 {
		return c, fmt.Errorf("taint key %q: %s", c.TaintKey, strings.Join(errs, "; "))
	}
	if errs := validation.IsValidLabelValue(c.Provider); len(errs) > 0 {
		return c, fmt.Errorf("provider %q: %s", c.Provider, strings.Join(errs, "; "))
	}
	if c.FinishedTaskMemory < 0 || c.CacheWait < 0 {
		return c, fmt.Errorf("finished task memory (%d) and cache wait (%s) must not be negative", c.FinishedTaskMemory, c.CacheWait)
	}
	return c, nil
}
