package vknode

import (
	"time"

	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/vk-titus/vk-titus/internal/cachetrim"
)

// Shared holds the cluster-wide informers every node of the process reads
// (Secrets, ConfigMaps, Services: what pods reference). nodeutil gives each
// node its own, so a process serving N agents would list, watch and keep N
// copies of every Secret in the cluster. Create one per process, Start it
// once, and pass it in every node's Config.
type Shared struct {
	factory    informers.SharedInformerFactory
	secrets    corev1informers.SecretInformer
	configMaps corev1informers.ConfigMapInformer
	services   corev1informers.ServiceInformer
}

// NewShared builds the shared informers; resync is their full-resync period
// (explicit: never client-go's default).
func NewShared(client kubernetes.Interface, resync time.Duration) *Shared {
	f := informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTransform(cachetrim.StripManagedFields))
	s := &Shared{factory: f, secrets: f.Core().V1().Secrets(), configMaps: f.Core().V1().ConfigMaps(), services: f.Core().V1().Services()}
	// A factory starts only the informers asked for before Start.
	s.secrets.Informer()
	s.configMaps.Informer()
	s.services.Informer()
	return s
}

// Start starts the informers; they stop when stop closes. Call once.
func (s *Shared) Start(stop <-chan struct{}) { s.factory.Start(stop) }

// Shutdown waits for the informers' goroutines after stop closed.
func (s *Shared) Shutdown() { s.factory.Shutdown() }

func (s *Shared) synced() []cache.InformerSynced {
	return []cache.InformerSynced{s.secrets.Informer().HasSynced, s.configMaps.Informer().HasSynced, s.services.Informer().HasSynced}
}
