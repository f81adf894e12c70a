package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacyapi"
	"github.com/vk-titus/vk-titus/migration"
)

// Stages tells where new jobs of an application go (a *migration.Store).
type Stages interface {
	Resolve(application, capacityGroup string) migration.Decision
}

// Router is a legacyapi.Backend over the legacy and the Kubernetes backends.
type Router struct {
	legacy, kube legacyapi.Backend
	stages       Stages
	log          logrus.FieldLogger
}

// NewRouter routes between legacy and kube by stages.
func NewRouter(legacy, kube legacyapi.Backend, stages Stages, log logrus.FieldLogger) *Router {
	return &Router{legacy: legacy, kube: kube, stages: stages, log: log}
}

var _ legacyapi.Backend = (*Router)(nil)

// owner is the backend an id belongs to, by its prefix.
func (r *Router) owner(kind, id string) (legacyapi.Backend, error) {
	switch {
	case strings.HasPrefix(id, legacyapi.LegacyPrefix):
		return r.legacy, nil
	case strings.HasPrefix(id, legacyapi.KubePrefix):
		return r.kube, nil
	}
	return nil, legacyapi.NotFound(kind, id)
}

// CreateJob sends the job where its stage says. A percentage stage decides
// on a fresh random key, so about that share of new jobs go to Kubernetes.
func (r *Router) CreateJob(ctx context.Context, d legacyapi.JobDescriptor) (string, error) {
	dec := r.stages.Resolve(d.ApplicationName, d.CapacityGroup)
	b, world := r.legacy, "legacy"
	if dec.Stage.Kube(randomKey()) {
		b, world = r.kube, "kube"
	}
	id, err := b.CreateJob(ctx, d)
	if err != nil {
		return "", fmt.Errorf("creating the job in the %s world: %w", world, err)
	}
	r.log.WithFields(logrus.Fields{
		"job": id, "application": d.ApplicationName, "capacityGroup": d.CapacityGroup,
		"stage": dec.Stage.String(), "stageFrom": string(dec.Scope) + "/" + dec.Name, "backend": world,
	}).Info("job routed")
	return id, nil
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// GetJob implements legacyapi.Backend.
func (r *Router) GetJob(ctx context.Context, id string) (legacyapi.Job, error) {
	b, err := r.owner("job", id)
	if err != nil {
		return legacyapi.Job{}, err
	}
	return b.GetJob(ctx, id)
}

// KillJob implements legacyapi.Backend.
func (r *Router) KillJob(ctx context.Context, id string) error {
	b, err := r.owner("job", id)
	if err != nil {
		return err
	}
	return b.KillJob(ctx, id)
}

// UpdateJob implements legacyapi.Backend.
func (r *Router) UpdateJob(ctx context.Context, id string, u legacyapi.JobUpdate) error {
	b, err := r.owner("job", id)
	if err != nil {
		return err
	}
	return b.UpdateJob(ctx, id, u)
}

// GetTask implements legacyapi.Backend.
func (r *Router) GetTask(ctx context.Context, id string) (legacyapi.Task, error) {
	b, err := r.owner("task", id)
	if err != nil {
		return legacyapi.Task{}, err
	}
	return b.GetTask(ctx, id)
}

// KillTask implements legacyapi.Backend.
func (r *Router) KillTask(ctx context.Context, id string, k legacyapi.TaskKill) error {
	b, err := r.owner("task", id)
	if err != nil {
		return err
	}
	return b.KillTask(ctx, id, k)
}

// UpdateTask implements legacyapi.Backend.
func (r *Router) UpdateTask(ctx context.Context, id string, u legacyapi.TaskUpdate) error {
	b, err := r.owner("task", id)
	if err != nil {
		return err
	}
	return b.UpdateTask(ctx, id, u)
}

// MoveTask implements legacyapi.Backend: within one world only, as a task
// cannot change worlds.
func (r *Router) MoveTask(ctx context.Context, m legacyapi.TaskMove) error {
	b, err := r.owner("task", m.TaskID)
	if err != nil {
		return err
	}
	for _, job := range []string{m.SourceJobID, m.TargetJobID} {
		if jb, err := r.owner("job", job); err != nil {
			return err
		} else if jb != b {
			return fmt.Errorf("task %s cannot move to job %s: they live in different worlds (legacy and Kubernetes): %w", m.TaskID, job, legacyapi.ErrUnimplemented)
		}
	}
	return b.MoveTask(ctx, m)
}
