// Package cachetrim holds the informer transform every cache of the project
// uses: managedFields are never read here, and they are often the larger
// part of an object.
package cachetrim

import "k8s.io/apimachinery/pkg/api/meta"

// StripManagedFields drops managedFields from an object an informer is about
// to cache. The informer owns the freshly decoded object, so changing it in
// place is allowed; tombstones and other non-objects pass through.
func StripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}
