package translate

import (
	"fmt"
	"path"
	"sort"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Volume mapping, pod volume → Mesos volume, per mount of a container:
//
//   - emptyDir: a directory in the container's own sandbox, SANDBOX_PATH
//     SELF "volumes/<name>". Every pod container is a top-level Mesos
//     container with its own sandbox, so unlike Kubernetes the directory is
//     NOT shared between the containers of a pod; medium and sizeLimit are
//     ignored.
//   - hostPath: HOST_PATH; the hostPath type check (DirectoryOrCreate, ...)
//     is left to the agent.
//   - configMap, secret, downwardAPI and projected: read-only files, one
//     Mesos SECRET volume per file, each a REFERENCE (see the package doc)
//     resolved at launch. Mesos volumes carry no permission bits, so
//     defaultMode and items[].mode are not represented; files keep the
//     agent's default mode. Files are written once at launch: later changes
//     to the object (or to labels and annotations) are not propagated.
//   - downwardAPI items with resourceFieldRef are skipped: the file is not
//     created (no error), as the agent gives no view of effective limits.
//   - projected serviceAccountToken sources are skipped: no token can be
//     minted here, so the kube-api-access-* volume yields ca.crt and
//     namespace but no token. clusterTrustBundle and podCertificate sources
//     are refused.
//   - anything else (persistentVolumeClaim, csi, nfs, ...) is refused with
//     ErrInvalidSpec, as are volumeDevices and subPathExpr. subPath is
//     honoured: it narrows the mount to a directory or file of the volume.

const (
	refConfigMap = "configmap"
	refSecret    = "secret"
	refDownward  = "downward"
	refOptional  = "?optional"

	sandboxVolumesDir = "volumes"
)

// fileRef is one file (or, with rel and key empty, every key of an object)
// that a config map, secret or downward API volume projects.
type fileRef struct {
	rel  string // path below the volume root; "" for all keys of the object
	name string // reference name
	key  string // object key; "" for all keys, or for downward references
}

// checkPodVolumes refuses the pod when any volume is of a type the agent
// cannot provide, whether or not a container mounts it: Kubernetes would set
// it up (attach, mount) regardless, so running without it would not be the
// same pod.
func checkPodVolumes(pod *corev1.Pod) (map[string]*corev1.Volume, error) {
	vols := make(map[string]*corev1.Volume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if _, err := volumeFiles(pod, v); err != nil {
			return nil, err
		}
		vols[v.Name] = v
	}
	return vols, nil
}

// containerVolumes derives the Mesos volumes of c, with secret references
// still unresolved: this is what the annotation records.
func containerVolumes(pod *corev1.Pod, c *corev1.Container, vols map[string]*corev1.Volume) ([]mesos.Volume, error) {
	if len(c.VolumeDevices) > 0 {
		return nil, invalidf("container %q: volumeDevices (raw block devices) are not supported", c.Name)
	}
	var out []mesos.Volume
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		if v == nil {
			return nil, invalidf("container %q mounts volume %q, which the pod does not define", c.Name, m.Name)
		}
		if m.SubPathExpr != "" {
			return nil, invalidf("container %q, volume %q: subPathExpr is not supported", c.Name, m.Name)
		}
		sub := m.SubPath
		if sub != "" && (path.IsAbs(sub) || escapesDir(sub)) {
			return nil, invalidf("container %q, volume %q: subPath %q must be relative and stay inside the volume", c.Name, m.Name, sub)
		}
		if !path.IsAbs(m.MountPath) {
			return nil, invalidf("container %q, volume %q: mountPath %q is not absolute", c.Name, m.Name, m.MountPath)
		}
		mode := mesos.RW
		if m.ReadOnly {
			mode = mesos.RO
		}
		switch {
		case v.EmptyDir != nil:
			out = append(out, mesos.Volume{
				Mode:          mode.Enum(),
				ContainerPath: m.MountPath,
				Source: &mesos.Volume_Source{
					Type: mesos.Volume_Source_SANDBOX_PATH,
					SandboxPath: &mesos.Volume_Source_SandboxPath{
						Type: mesos.Volume_Source_SandboxPath_SELF,
						Path: joinSub(path.Join(sandboxVolumesDir, v.Name), sub),
					},
				},
			})
		case v.HostPath != nil:
			out = append(out, mesos.Volume{
				Mode:          mode.Enum(),
				ContainerPath: m.MountPath,
				Source: &mesos.Volume_Source{
					Type:     mesos.Volume_Source_HOST_PATH,
					HostPath: &mesos.Volume_Source_HostPath{Path: joinSub(v.HostPath.Path, sub)},
				},
			})
		default:
			files, err := volumeFiles(pod, v)
			if err != nil {
				return nil, err
			}
			for _, f := range files {
				cp, key, ok := placeFile(f, m.MountPath, sub)
				if !ok {
					continue
				}
				out = append(out, secretRefVolume(cp, f.name, key))
			}
		}
	}
	return out, nil
}

func joinSub(base, sub string) string {
	if sub == "" {
		return base
	}
	return path.Join(base, sub)
}

// placeFile puts a projected file under a mount, honouring subPath: with a
// subPath only the file (or the files under the directory) it names are
// mounted, at mountPath itself.
func placeFile(f fileRef, mountPath, sub string) (containerPath, key string, ok bool) {
	if f.rel == "" { // every key of the object, one file each
		switch {
		case sub == "":
			return mountPath, "", true
		case strings.Contains(sub, "/"): // keys never hold '/'
			return "", "", false
		default:
			return mountPath, sub, true
		}
	}
	switch {
	case sub == "":
		return path.Join(mountPath, f.rel), f.key, true
	case f.rel == path.Clean(sub):
		return mountPath, f.key, true
	case strings.HasPrefix(f.rel, path.Clean(sub)+"/"):
		return path.Join(mountPath, f.rel[len(path.Clean(sub))+1:]), f.key, true
	}
	return "", "", false
}

func secretRefVolume(containerPath, name, key string) mesos.Volume {
	ref := &mesos.Secret_Reference{Name: name}
	if key != "" {
		ref.Key = &key
	}
	return mesos.Volume{
		Mode:          mesos.RO.Enum(),
		ContainerPath: containerPath,
		Source: &mesos.Volume_Source{
			Type:   mesos.Volume_Source_SECRET,
			Secret: &mesos.Secret{Type: mesos.Secret_REFERENCE, Reference: ref},
		},
	}
}

// volumeFiles lists the files a file-projecting volume yields, and refuses
// the volume types the agent cannot provide. emptyDir and hostPath yield no
// files and no error.
func volumeFiles(pod *corev1.Pod, v *corev1.Volume) ([]fileRef, error) {
	ns := pod.Namespace
	switch {
	case v.EmptyDir != nil, v.HostPath != nil:
		return nil, nil
	case v.ConfigMap != nil:
		return objectFiles(objectRef(refConfigMap, ns, v.ConfigMap.Name, v.ConfigMap.Optional), v.ConfigMap.Items, v.Name)
	case v.Secret != nil:
		return objectFiles(objectRef(refSecret, ns, v.Secret.SecretName, v.Secret.Optional), v.Secret.Items, v.Name)
	case v.DownwardAPI != nil:
		return downwardFiles(v.DownwardAPI.Items, v.Name)
	case v.Projected != nil:
		var out []fileRef
		for i, s := range v.Projected.Sources {
			var (
				fs  []fileRef
				err error
			)
			switch {
			case s.ConfigMap != nil:
				fs, err = objectFiles(objectRef(refConfigMap, ns, s.ConfigMap.Name, s.ConfigMap.Optional), s.ConfigMap.Items, v.Name)
			case s.Secret != nil:
				fs, err = objectFiles(objectRef(refSecret, ns, s.Secret.Name, s.Secret.Optional), s.Secret.Items, v.Name)
			case s.DownwardAPI != nil:
				fs, err = downwardFiles(s.DownwardAPI.Items, v.Name)
			case s.ServiceAccountToken != nil:
				// No token can be minted on this side; see the mapping notes.
			case s.ClusterTrustBundle != nil:
				err = invalidf("volume %q: projected source %d (clusterTrustBundle) is not supported", v.Name, i)
			case s.PodCertificate != nil:
				err = invalidf("volume %q: projected source %d (podCertificate) is not supported", v.Name, i)
			default:
				err = invalidf("volume %q: projected source %d is of an unsupported type", v.Name, i)
			}
			if err != nil {
				return nil, err
			}
			out = append(out, fs...)
		}
		return out, nil
	}
	return nil, invalidf("volume %q is of unsupported type %s", v.Name, volumeType(v))
}

func objectRef(kind, ns, name string, optional *bool) string {
	ref := kind + ":" + ns + "/" + name
	if optional != nil && *optional {
		ref += refOptional
	}
	return ref
}

func objectFiles(ref string, items []corev1.KeyToPath, volName string) ([]fileRef, error) {
	if len(items) == 0 {
		return []fileRef{{name: ref}}, nil
	}
	out := make([]fileRef, 0, len(items))
	for _, it := range items {
		if err := checkRelPath(it.Path); err != nil {
			return nil, invalidf("volume %q, key %q: %v", volName, it.Key, err)
		}
		if it.Key == "" {
			return nil, invalidf("volume %q: item with path %q has no key", volName, it.Path)
		}
		out = append(out, fileRef{rel: path.Clean(it.Path), name: ref, key: it.Key})
	}
	return out, nil
}

func downwardFiles(items []corev1.DownwardAPIVolumeFile, volName string) ([]fileRef, error) {
	out := make([]fileRef, 0, len(items))
	for _, it := range items {
		if err := checkRelPath(it.Path); err != nil {
			return nil, invalidf("volume %q: %v", volName, err)
		}
		if it.FieldRef == nil {
			continue // resourceFieldRef: not supported, skipped (see above)
		}
		if !knownFieldPath(it.FieldRef.FieldPath) {
			return nil, invalidf("volume %q, path %q: unsupported fieldPath %q", volName, it.Path, it.FieldRef.FieldPath)
		}
		out = append(out, fileRef{rel: path.Clean(it.Path), name: refDownward + ":" + it.FieldRef.FieldPath})
	}
	return out, nil
}

func checkRelPath(p string) error {
	if p == "" || path.IsAbs(p) || escapesDir(p) || path.Clean(p) == "." {
		return fmt.Errorf("path %q must be relative and stay inside the volume", p)
	}
	return nil
}

func volumeType(v *corev1.Volume) string {
	vs := v.VolumeSource
	switch {
	case vs.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case vs.CSI != nil:
		return "csi"
	case vs.Ephemeral != nil:
		return "ephemeral"
	case vs.NFS != nil:
		return "nfs"
	case vs.Image != nil:
		return "image"
	case vs.ISCSI != nil:
		return "iscsi"
	case vs.FC != nil:
		return "fc"
	case vs.RBD != nil:
		return "rbd"
	case vs.CephFS != nil:
		return "cephfs"
	case vs.Glusterfs != nil:
		return "glusterfs"
	case vs.GitRepo != nil:
		return "gitRepo"
	case vs.FlexVolume != nil:
		return "flexVolume"
	case vs.AWSElasticBlockStore != nil:
		return "awsElasticBlockStore"
	case vs.GCEPersistentDisk != nil:
		return "gcePersistentDisk"
	case vs.AzureDisk != nil:
		return "azureDisk"
	case vs.AzureFile != nil:
		return "azureFile"
	}
	return "unknown"
}

// objectData is a config map's or secret's data as fetched once per
// PodLaunches call; found is false for an object that does not exist.
type objectData struct {
	data     map[string][]byte
	found    bool
	notFound error // the resolver's NotFound error when !found
}

// resolver resolves this package's secret references for one pod, fetching
// every object at most once.
type resolver struct {
	pod   *corev1.Pod
	r     Resolver
	cache map[string]objectData
}

// resolveVolumes returns a copy of ci whose references this package owns are
// replaced by secret VALUEs (an all-keys reference becomes one volume per
// key, in key order). Only the volume list is new; the rest of the copy
// shares ci's pointers, which nobody mutates.
func (rs *resolver) resolveVolumes(ci *mesos.ContainerInfo) (*mesos.ContainerInfo, error) {
	out := *ci
	out.Volumes = make([]mesos.Volume, 0, len(ci.Volumes))
	for _, v := range ci.Volumes {
		ref := ownReference(v)
		if ref == nil {
			out.Volumes = append(out.Volumes, v)
			continue
		}
		vs, err := rs.resolve(v, ref)
		if err != nil {
			return nil, fmt.Errorf("volume at %q: %w", v.ContainerPath, err)
		}
		out.Volumes = append(out.Volumes, vs...)
	}
	return &out, nil
}

// splitReference cuts a secret reference name into its kind and the rest,
// and reports whether the kind is one this package resolves.
func splitReference(name string) (kind, rest string, ours bool) {
	kind, rest, ok := strings.Cut(name, ":")
	return kind, rest, ok && (kind == refConfigMap || kind == refSecret || kind == refDownward)
}

// parseObjectReference reads the "<namespace>/<name>[?optional]" of a
// configmap: or secret: reference.
func parseObjectReference(rest string) (ns, name string, optional bool, err error) {
	rest, optional = strings.CutSuffix(rest, refOptional)
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || ns == "" || name == "" {
		return "", "", false, fmt.Errorf("malformed reference %q: want <namespace>/<name>", rest)
	}
	return ns, name, optional, nil
}

// ownReference returns the secret reference of v when its name is one this
// package resolves. The policy has refused every other reference before
// resolution.
func ownReference(v mesos.Volume) *mesos.Secret_Reference {
	s := v.Source
	if s == nil || s.Type != mesos.Volume_Source_SECRET || s.Secret == nil || s.Secret.Type != mesos.Secret_REFERENCE || s.Secret.Reference == nil {
		return nil
	}
	if _, _, ours := splitReference(s.Secret.Reference.Name); !ours {
		return nil
	}
	return s.Secret.Reference
}

func (rs *resolver) resolve(v mesos.Volume, ref *mesos.Secret_Reference) ([]mesos.Volume, error) {
	kind, rest, _ := splitReference(ref.Name)
	if kind == refDownward {
		val, err := downwardValue(rs.pod, rest)
		if err != nil {
			return nil, err
		}
		return []mesos.Volume{valueVolume(v, v.ContainerPath, []byte(val))}, nil
	}
	ns, name, optional, err := parseObjectReference(rest)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	if ns != rs.pod.Namespace {
		// The policy refuses this first; checked again where the secret is
		// read, because a slip here would hand out another namespace's data.
		return nil, invalidf("reference %q points outside the pod's namespace %q", ref.Name, rs.pod.Namespace)
	}
	obj, err := rs.fetch(kind, ns, name)
	if err != nil {
		return nil, err
	}
	if !obj.found {
		if optional {
			return nil, nil
		}
		return nil, fmt.Errorf("%s %s/%s: %w", kind, ns, name, obj.notFound)
	}
	if ref.Key != nil {
		d, ok := obj.data[*ref.Key]
		if !ok {
			if optional {
				return nil, nil
			}
			return nil, fmt.Errorf("%s %s/%s has no key %q", kind, ns, name, *ref.Key)
		}
		return []mesos.Volume{valueVolume(v, v.ContainerPath, d)}, nil
	}
	keys := make([]string, 0, len(obj.data))
	for k := range obj.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]mesos.Volume, 0, len(keys))
	for _, k := range keys {
		if k == "" || k == "." || k == ".." || strings.Contains(k, "/") {
			return nil, fmt.Errorf("%s %s/%s: key %q cannot be a file name", kind, ns, name, k)
		}
		out = append(out, valueVolume(v, path.Join(v.ContainerPath, k), obj.data[k]))
	}
	return out, nil
}

func (rs *resolver) fetch(kind, ns, name string) (objectData, error) {
	ck := kind + ":" + ns + "/" + name
	if obj, ok := rs.cache[ck]; ok {
		return obj, nil
	}
	if rs.r == nil {
		return objectData{}, fmt.Errorf("%s %s/%s: no resolver to read it", kind, ns, name)
	}
	var (
		data map[string][]byte
		err  error
	)
	if kind == refConfigMap {
		data, err = rs.r.ConfigMap(ns, name)
	} else {
		data, err = rs.r.Secret(ns, name)
	}
	obj := objectData{data: data, found: true}
	if err != nil {
		if !apierrors.IsNotFound(err) {
			return objectData{}, fmt.Errorf("read %s %s/%s: %w", kind, ns, name, err)
		}
		obj = objectData{notFound: err}
	}
	if rs.cache == nil {
		rs.cache = make(map[string]objectData)
	}
	rs.cache[ck] = obj
	return obj, nil
}

// valueVolume copies v with its source replaced by a secret VALUE. The data
// is copied so the Launch never aliases an informer's cache.
func valueVolume(v mesos.Volume, containerPath string, data []byte) mesos.Volume {
	d := make([]byte, len(data)) // never nil: Mesos requires the field
	copy(d, data)
	v.ContainerPath = containerPath
	v.Source = &mesos.Volume_Source{
		Type:   mesos.Volume_Source_SECRET,
		Secret: &mesos.Secret{Type: mesos.Secret_VALUE, Value: &mesos.Secret_Value{Data: d}},
	}
	return v
}

// knownFieldPath reports whether downwardValue can answer fieldPath.
func knownFieldPath(fp string) bool {
	_, err := downwardValue(&corev1.Pod{}, fp)
	return err == nil
}

// downwardValue renders a downward API field as the kubelet writes it into a
// file; labels and annotations as sorted key="value" lines (Go quoting).
func downwardValue(pod *corev1.Pod, fieldPath string) (string, error) {
	switch fieldPath {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(fieldPath, prefix+"['"); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok && key != "" {
				return m[key], nil
			}
		}
	}
	return "", invalidf("unsupported downward API fieldPath %q", fieldPath)
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}
