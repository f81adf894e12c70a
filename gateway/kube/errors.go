package kube

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// apiError wraps an API server error in the legacyapi error the handler
// turns into a status code, keeping the original for logs and errors.As.
func apiError(err error, format string, args ...any) error {
	kind := legacyapi.ErrUnavailable
	switch {
	case apierrors.IsNotFound(err):
		kind = legacyapi.ErrNotFound
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		kind = legacyapi.ErrConflict
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		kind = legacyapi.ErrInvalid
	}
	return fmt.Errorf("%s: %w: %w", fmt.Sprintf(format, args...), kind, err)
}

// asAPIError leaves the backend's own verdicts (a conflict found by a
// mutation, say) as they are and wraps the rest with apiError.
func asAPIError(err error, format string, args ...any) error {
	for _, own := range []error{legacyapi.ErrNotFound, legacyapi.ErrInvalid, legacyapi.ErrConflict, legacyapi.ErrTerminating,
		legacyapi.ErrUnavailable, legacyapi.ErrUnimplemented} {
		if errors.Is(err, own) {
			return err
		}
	}
	return apiError(err, format, args...)
}
