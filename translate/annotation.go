package translate

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	corev1 "k8s.io/api/core/v1"
)

// AnnotationContainerInfo holds the pod's legacy container spec: a Mesos
// ContainerInfo, gogo-protobuf encoded, then base64 (standard alphabet).
const AnnotationContainerInfo = "vk-titus.io/container-info"

// MaxAnnotationBytes bounds the encoded annotation (base64 text) — 256 KiB:
// kube annotations total ≤256KiB anyway, so anything larger cannot have come
// from a valid pod and is refused before any decoding work is done.
const MaxAnnotationBytes = 256 << 10

// ErrInvalidSpec marks a pod or annotation that can never be run as given:
// the caller fails the pod rather than retrying. Errors that may heal on
// their own (a config map not created yet) deliberately do not wrap it.
var ErrInvalidSpec = errors.New("invalid legacy container spec")

// invalidf builds an error that wraps ErrInvalidSpec and says what is wrong.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// EncodeContainerInfo validates ci by the same rules as DecodeContainerInfo,
// so that the bridge never writes an annotation it would refuse to read
// back, then marshals it with gogo protobuf and base64 (StdEncoding).
func EncodeContainerInfo(ci *mesos.ContainerInfo) (string, error) {
	if ci == nil {
		return "", invalidf("container info is nil")
	}
	if err := validateContainerInfo(ci); err != nil {
		return "", err
	}
	b, err := ci.Marshal()
	if err != nil {
		return "", invalidf("marshal container info: %v", err)
	}
	if n := base64.StdEncoding.EncodedLen(len(b)); n > MaxAnnotationBytes {
		return "", invalidf("encoded container info is %d bytes, over the %d-byte limit", n, MaxAnnotationBytes)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodeContainerInfo reverses EncodeContainerInfo. The text comes from
// users, so it is treated as hostile: its size is checked before anything
// else, the protobuf wire format is checked against the schema before the
// generated decoder (which predates gogo's overflow fixes) sees it, and the
// decoded message is validated. Fields unknown to mesos-go v0.0.11 are
// dropped by the decoder. All errors wrap ErrInvalidSpec.
func DecodeContainerInfo(s string) (*mesos.ContainerInfo, error) {
	if len(s) > MaxAnnotationBytes {
		return nil, invalidf("annotation %s is %d bytes, over the %d-byte limit", AnnotationContainerInfo, len(s), MaxAnnotationBytes)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, invalidf("annotation %s is empty", AnnotationContainerInfo)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, invalidf("annotation %s is not base64: %v", AnnotationContainerInfo, err)
	}
	ci, err := unmarshalContainerInfo(b)
	if err != nil {
		return nil, invalidf("annotation %s: %v", AnnotationContainerInfo, err)
	}
	if err := validateContainerInfo(ci); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationContainerInfo, err)
	}
	return ci, nil
}

// ContainerInfoFromAnnotation decodes the pod's annotation. The boolean
// reports whether the annotation is present at all; a present but invalid
// annotation is an error wrapping ErrInvalidSpec.
func ContainerInfoFromAnnotation(pod *corev1.Pod) (*mesos.ContainerInfo, bool, error) {
	if pod == nil {
		return nil, false, nil
	}
	s, ok := pod.Annotations[AnnotationContainerInfo]
	if !ok {
		return nil, false, nil
	}
	ci, err := DecodeContainerInfo(s)
	if err != nil {
		return nil, true, err
	}
	return ci, true, nil
}

// unmarshalContainerInfo runs the generated decoder only on input that has
// passed checkWire, and still turns a panic into an error: a crash here
// would take down the whole bridge for one bad pod.
func unmarshalContainerInfo(b []byte) (ci *mesos.ContainerInfo, err error) {
	if err := checkWire(b); err != nil {
		return nil, fmt.Errorf("malformed protobuf: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			ci, err = nil, fmt.Errorf("malformed protobuf: decoder panicked: %v", r)
		}
	}()
	ci = new(mesos.ContainerInfo)
	if err := ci.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("malformed protobuf: %w", err)
	}
	return ci, nil
}

// validateContainerInfo enforces what the Mesos master would refuse anyway
// (required fields, a "protobuf union" that matches the type, known enum
// values) so the pod fails here, with a clear message, instead of on the
// agent. The generated decoder already enforces proto2 required fields.
func validateContainerInfo(ci *mesos.ContainerInfo) error {
	if ci.Type == nil {
		return invalidf("container type is not set")
	}
	switch *ci.Type {
	case mesos.ContainerInfo_DOCKER:
		if ci.Docker == nil {
			return invalidf("DOCKER container has no docker info")
		}
		if strings.TrimSpace(ci.Docker.Image) == "" {
			return invalidf("DOCKER container has an empty image name")
		}
		if ci.Mesos != nil {
			return invalidf("DOCKER container also carries mesos info")
		}
		if n := ci.Docker.Network; n != nil {
			if _, ok := mesos.ContainerInfo_DockerInfo_Network_name[int32(*n)]; !ok {
				return invalidf("unknown docker network %d", int32(*n))
			}
		}
	case mesos.ContainerInfo_MESOS:
		if ci.Docker != nil {
			return invalidf("MESOS container also carries docker info")
		}
		if ci.Mesos != nil && ci.Mesos.Image != nil {
			if err := validateImage(ci.Mesos.Image); err != nil {
				return invalidf("container image: %v", err)
			}
		}
	default:
		return invalidf("unknown container type %d", int32(*ci.Type))
	}
	for i := range ci.Volumes {
		if err := validateVolume(&ci.Volumes[i]); err != nil {
			return invalidf("volume %d (%q): %v", i, ci.Volumes[i].ContainerPath, err)
		}
	}
	return nil
}

func validateImage(im *mesos.Image) error {
	if im.Type == nil {
		return errors.New("image type is not set")
	}
	switch *im.Type {
	case mesos.Image_DOCKER:
		if im.Docker == nil || strings.TrimSpace(im.Docker.Name) == "" {
			return errors.New("DOCKER image has no name")
		}
		if im.Appc != nil {
			return errors.New("DOCKER image also carries appc info")
		}
		if c := im.Docker.Config; c != nil {
			if err := validateSecret(c); err != nil {
				return fmt.Errorf("docker config: %w", err)
			}
		}
	case mesos.Image_APPC:
		if im.Appc == nil || strings.TrimSpace(im.Appc.Name) == "" {
			return errors.New("APPC image has no name")
		}
		if im.Docker != nil {
			return errors.New("APPC image also carries docker info")
		}
	default:
		return fmt.Errorf("unknown image type %d", int32(*im.Type))
	}
	return nil
}

func validateVolume(v *mesos.Volume) error {
	if v.Mode == nil {
		return errors.New("mode is not set")
	}
	if _, ok := mesos.Volume_Mode_name[int32(*v.Mode)]; !ok {
		return fmt.Errorf("unknown mode %d", int32(*v.Mode))
	}
	if v.ContainerPath == "" {
		return errors.New("container path is empty")
	}
	if v.Image != nil {
		if err := validateImage(v.Image); err != nil {
			return err
		}
	}
	src := v.Source
	if src == nil {
		return nil
	}
	switch src.Type {
	case mesos.Volume_Source_DOCKER_VOLUME:
		if src.DockerVolume == nil || src.DockerVolume.Name == "" {
			return errors.New("DOCKER_VOLUME source has no volume name")
		}
	case mesos.Volume_Source_HOST_PATH:
		if src.HostPath == nil || src.HostPath.Path == "" {
			return errors.New("HOST_PATH source has no path")
		}
	case mesos.Volume_Source_SANDBOX_PATH:
		sp := src.SandboxPath
		if sp == nil || sp.Path == "" {
			return errors.New("SANDBOX_PATH source has no path")
		}
		if _, ok := mesos.Volume_Source_SandboxPath_Type_name[int32(sp.Type)]; !ok || sp.Type == mesos.Volume_Source_SandboxPath_UNKNOWN {
			return fmt.Errorf("SANDBOX_PATH source has unknown type %d", int32(sp.Type))
		}
		if path.IsAbs(sp.Path) || escapesDir(sp.Path) {
			return fmt.Errorf("SANDBOX_PATH %q leaves the sandbox", sp.Path)
		}
	case mesos.Volume_Source_SECRET:
		if src.Secret == nil {
			return errors.New("SECRET source has no secret")
		}
		if err := validateSecret(src.Secret); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown source type %d", int32(src.Type))
	}
	return nil
}

func validateSecret(s *mesos.Secret) error {
	switch s.Type {
	case mesos.Secret_REFERENCE:
		if s.Reference == nil || s.Reference.Name == "" {
			return errors.New("REFERENCE secret has no name")
		}
		if s.Value != nil {
			return errors.New("REFERENCE secret also carries a value")
		}
	case mesos.Secret_VALUE:
		if s.Value == nil {
			return errors.New("VALUE secret has no value")
		}
		if s.Reference != nil {
			return errors.New("VALUE secret also carries a reference")
		}
	default:
		return fmt.Errorf("unknown secret type %d", int32(s.Type))
	}
	return nil
}

// escapesDir reports whether a relative path climbs out of its base, which
// Mesos forbids for sandbox paths ("upwards traversal is not allowed").
func escapesDir(p string) bool {
	c := path.Clean(p)
	return c == ".." || strings.HasPrefix(c, "../")
}
