package ownership

import (
	"errors"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeAPI is the Leases of one namespace as an API server keeps them, shared
// by several clientsets (one per replica, so that one replica's writes can
// be cut): resourceVersions, conditional updates and deletes (409 on a
// stale one), AlreadyExists, and watches that see every change in order.
// client-go's own fake tracker has neither resourceVersions nor conflicts.
type fakeAPI struct {
	mu      sync.Mutex
	rv      int
	leases  map[string]*coordinationv1.Lease
	writes  map[string]int // successful creates, updates and deletes by Lease name
	watches []*fakeWatch
}

var leasesResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

// apiClient is one replica's clientset on a fakeAPI.
type apiClient struct {
	*fake.Clientset
	cut     atomic.Bool  // its writes fail, as if the API server were unreachable
	emitted atomic.Int64 // objects its lists and watches delivered
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{leases: map[string]*coordinationv1.Lease{}, writes: map[string]int{}}
}

func (a *fakeAPI) client() *apiClient {
	c := &apiClient{Clientset: fake.NewSimpleClientset()}
	c.PrependReactor("*", "leases", func(act k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := a.react(c, act)
		return true, obj, err
	})
	c.PrependWatchReactor("leases", func(act k8stesting.Action) (bool, watch.Interface, error) {
		sel := labels.Everything()
		if w, ok := act.(k8stesting.WatchAction); ok && w.GetWatchRestrictions().Labels != nil {
			sel = w.GetWatchRestrictions().Labels
		}
		w := &fakeWatch{ch: make(chan watch.Event, 10000), sel: sel, client: c}
		a.mu.Lock()
		a.watches = append(a.watches, w)
		a.mu.Unlock()
		return true, w, nil
	})
	return c
}

var errUnreachable = errors.New("fake API server: unreachable")

func (a *fakeAPI) react(c *apiClient, act k8stesting.Action) (runtime.Object, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// By verb: the action interfaces overlap (an update is a CreateAction).
	switch act.GetVerb() {
	case "get":
		act := act.(k8stesting.GetAction)
		l := a.leases[act.GetName()]
		if l == nil {
			return nil, apierrors.NewNotFound(leasesResource, act.GetName())
		}
		return l.DeepCopy(), nil
	case "list":
		sel := act.(k8stesting.ListAction).GetListRestrictions().Labels
		list := &coordinationv1.LeaseList{}
		for _, l := range a.leases {
			if sel == nil || sel.Matches(labels.Set(l.Labels)) {
				list.Items = append(list.Items, *l.DeepCopy())
			}
		}
		list.ResourceVersion = strconv.Itoa(a.rv)
		c.emitted.Add(int64(len(list.Items)))
		return list, nil
	case "create":
		if c.cut.Load() {
			return nil, errUnreachable
		}
		l := act.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		if a.leases[l.Name] != nil {
			return nil, apierrors.NewAlreadyExists(leasesResource, l.Name)
		}
		return a.store(l, watch.Added), nil
	case "update":
		if c.cut.Load() {
			return nil, errUnreachable
		}
		l := act.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		cur := a.leases[l.Name]
		if cur == nil {
			return nil, apierrors.NewNotFound(leasesResource, l.Name)
		}
		if cur.ResourceVersion != l.ResourceVersion {
			return nil, apierrors.NewConflict(leasesResource, l.Name, errors.New("the object has been modified"))
		}
		return a.store(l, watch.Modified), nil
	case "delete":
		if c.cut.Load() {
			return nil, errUnreachable
		}
		act := act.(k8stesting.DeleteAction)
		cur := a.leases[act.GetName()]
		if cur == nil {
			return nil, apierrors.NewNotFound(leasesResource, act.GetName())
		}
		if p := act.GetDeleteOptions().Preconditions; p != nil && p.ResourceVersion != nil && *p.ResourceVersion != cur.ResourceVersion {
			return nil, apierrors.NewConflict(leasesResource, cur.Name, errors.New("precondition failed"))
		}
		delete(a.leases, cur.Name)
		a.writes[cur.Name]++
		a.broadcast(watch.Deleted, cur)
		return nil, nil
	}
	return nil, errors.New("fake API server: unsupported call")
}

// store keeps l with a new resourceVersion and tells the watches; a.mu held.
func (a *fakeAPI) store(l *coordinationv1.Lease, ev watch.EventType) *coordinationv1.Lease {
	a.rv++
	l.ResourceVersion = strconv.Itoa(a.rv)
	a.leases[l.Name] = l
	a.writes[l.Name]++
	a.broadcast(ev, l)
	return l.DeepCopy()
}

func (a *fakeAPI) broadcast(ev watch.EventType, l *coordinationv1.Lease) {
	for _, w := range a.watches {
		w.send(ev, l)
	}
}

func (a *fakeAPI) get(name string) *coordinationv1.Lease {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leases[name].DeepCopy()
}

// writeCounts returns the successful writes so far by Lease name.
func (a *fakeAPI) writeCounts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.writes)
}

// fakeWatch buffers what it is sent; a full buffer is a test failure
// (overflowed), never a blocked API server.
type fakeWatch struct {
	ch     chan watch.Event
	sel    labels.Selector
	client *apiClient

	mu         sync.Mutex
	stopped    bool
	overflowed bool
}

func (w *fakeWatch) send(ev watch.EventType, l *coordinationv1.Lease) {
	if !w.sel.Matches(labels.Set(l.Labels)) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	select {
	case w.ch <- watch.Event{Type: ev, Object: l.DeepCopy()}:
		w.client.emitted.Add(1)
	default:
		w.overflowed = true
	}
}

func (w *fakeWatch) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.stopped = true
		close(w.ch)
	}
}

func (w *fakeWatch) ResultChan() <-chan watch.Event { return w.ch }
