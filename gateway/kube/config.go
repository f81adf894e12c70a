package kube

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// Defaults of Config.
const (
	DefaultNamespace          = "vk-titus-jobs"
	DefaultProvider           = "titus"                       // vk-titus run --provider
	DefaultTaintKey           = "virtual-kubelet.io/provider" // vk-titus run --taint
	DefaultFinishedTaskMemory = 10000
	DefaultCacheWait          = 5 * time.Second
	DefaultChangeLog          = 1 << 16
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
	// Limits are what CreateJob holds a descriptor to (the gateway's, so
	// that this world accepts what the gateway accepted); zero: Titus's.
	Limits legacyapi.Limits
	// ChangeLog is how many changes Observe keeps for its readers; one
	// further behind starts over with a snapshot.
	ChangeLog int
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
	if c.Limits == (legacyapi.Limits{}) {
		c.Limits = legacyapi.TitusLimits()
	}
	if c.ChangeLog == 0 {
		c.ChangeLog = DefaultChangeLog
	}
	if err := c.Limits.Check(); err != nil {
		return c, fmt.Errorf("limits: %w", err)
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
	if c.FinishedTaskMemory < 0 || c.CacheWait < 0 || c.ChangeLog < 0 {
		return c, fmt.Errorf("finished task memory (%d), cache wait (%s) and change log (%d) must not be negative", c.FinishedTaskMemory, c.CacheWait, c.ChangeLog)
	}
	return c, nil
}
