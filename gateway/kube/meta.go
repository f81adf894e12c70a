package kube

import (
	"strings"
	"time"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// Labels select a job's objects and pods; label values are sanitised, so
// the exact strings are kept in annotations of the same keys.
const (
	LabelJobID         = "vk-titus.io/job-id"
	LabelApplication   = "vk-titus.io/application"
	LabelCapacityGroup = "vk-titus.io/capacity-group"
)

// Annotations on a job's Job or Deployment.
const (
	// AnnotationDescriptor is the descriptor as submitted (JSON): what GET
	// returns, with a service's current capacity and enablement laid over.
	AnnotationDescriptor = "vk-titus.io/job-descriptor"
	// AnnotationAcceptedAt and AnnotationKilledAt are when the job was
	// accepted and killed (RFC 3339, milliseconds): creationTimestamp has
	// only seconds, and a kill has no other trace once the pods are gone.
	AnnotationAcceptedAt  = "vk-titus.io/accepted-at"
	AnnotationKilledAt    = "vk-titus.io/killed-at"
	AnnotationCapacityMin = "vk-titus.io/capacity-min"
	AnnotationCapacityMax = "vk-titus.io/capacity-max"
	AnnotationEnabled     = "vk-titus.io/enabled"
)

// AnnotationTaskAttributes on a pod holds its task's attributes (JSON),
// which UpdateTask sets.
const AnnotationTaskAttributes = "vk-titus.io/task-attributes"

// maxNameStem leaves room in a Job name (≤ 63, as pods carry it in a label)
// for the id suffix, and in pod names for the controllers' suffixes.
const maxNameStem = 40

// objectName is a DNS-1123 label made of the application name and a short
// piece of the job id, readable in kubectl listings.
func objectName(app, suffix string) string {
	stem := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, app)
	stem = strings.Trim(truncate(strings.Trim(stem, "-"), maxNameStem), "-")
	if stem == "" {
		stem = "job"
	}
	return stem + "-" + suffix
}

// labelValue makes s a valid label value: other characters become '-', and
// it is cut to 63 characters that begin and end alphanumeric.
func labelValue(s string) string {
	v := strings.Map(func(r rune) rune {
		if isAlnum(r) || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, s)
	trim := func(v string) string { return strings.TrimFunc(v, func(r rune) bool { return !isAlnum(r) }) }
	return trim(truncate(trim(v), 63))
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// stampLayout is RFC 3339 with milliseconds, the precision of the job API.
const stampLayout = "2006-01-02T15:04:05.000Z07:00"

func stamp(t time.Time) string { return t.UTC().Format(stampLayout) }

// annotationTime reads a stamp annotation; ok is false when it is missing
// or unreadable.
func annotationTime(annotations map[string]string, key string) (time.Time, bool) {
	s, ok := annotations[key]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// millis is a timestamp as the job API writes it.
func millis(t time.Time) legacyapi.U64 {
	if t.IsZero() {
		return 0
	}
	return legacyapi.U64(t.UnixMilli())
}
