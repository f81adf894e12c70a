package translate

import (
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

const containerIDPrefix = "vkt-"

// ContainerID names the Mesos container that runs one pod container. It is a
// pure function of the pod UID and the container name so that a LAUNCH
// repeated after a bridge restart hits the same container (the agent answers
// 200 for one that exists) instead of starting a twin.
//
// Mesos refuses '/', '\\', control characters and '.' in container ids.
// Container names are DNS labels and the API server assigns RFC 4122 UUIDs,
// so in practice nothing needs changing; anything outside [A-Za-z0-9-] is
// still escaped as "_hh" (lower-case hex) to keep ids valid and reversible.
func ContainerID(uid types.UID, container string) string {
	var b strings.Builder
	b.Grow(len(containerIDPrefix) + len(uid) + 1 + len(container))
	b.WriteString(containerIDPrefix)
	escapeIDPart(&b, string(uid))
	b.WriteByte('-')
	escapeIDPart(&b, container)
	return b.String()
}

// ParseContainerID reverses ContainerID. Both UUIDs and container names hold
// dashes, so the split relies on the UID being a canonical 36-character
// UUID, which is what the API server assigns; ids built from other UIDs, and
// ids the bridge did not build, do not parse.
func ParseContainerID(id string) (types.UID, string, bool) {
	rest, ok := strings.CutPrefix(id, containerIDPrefix)
	if !ok || len(rest) < 38 || !isUUID(rest[:36]) || rest[36] != '-' {
		return "", "", false
	}
	name, ok := unescapeIDPart(rest[37:])
	if !ok || name == "" {
		return "", "", false
	}
	return types.UID(rest[:36]), name, true
}

const hexDigits = "0123456789abcdef"

func escapeIDPart(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isIDChar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
}

func unescapeIDPart(s string) (string, bool) {
	if !strings.Contains(s, "_") {
		for i := 0; i < len(s); i++ {
			if !isIDChar(s[i]) {
				return "", false
			}
		}
		return s, true
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isIDChar(c):
			out = append(out, c)
		case c == '_' && i+2 < len(s):
			hi, lo := strings.IndexByte(hexDigits, s[i+1]), strings.IndexByte(hexDigits, s[i+2])
			if hi < 0 || lo < 0 {
				return "", false
			}
			d := byte(hi<<4 | lo)
			if isIDChar(d) { // ContainerID never escapes these: not one of ours
				return "", false
			}
			out = append(out, d)
			i += 2
		default:
			return "", false
		}
	}
	return string(out), true
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
