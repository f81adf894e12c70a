package provider

import (
	"context"
	"syscall"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk-titus/vk-titus/translate"
)

// CleanOrphans kills and removes the bridge's containers on the agent whose
// pod no longer exists on this node: pods deleted while the bridge was down.
// Call it once the pod informer has synced (the node is ready), or a pod not
// yet seen would be taken for gone.
func (p *Provider) CleanOrphans(ctx context.Context) error {
	live, err := p.health.refreshLive(ctx)
	if err != nil {
		return err
	}
	pods, err := p.opts.Pods.List(labels.Everything())
	if err != nil {
		return err
	}
	known := map[types.UID]bool{}
	for _, pod := range pods {
		if pod.Spec.NodeName == p.opts.NodeName {
			known[pod.UID] = true
		}
	}
	for id := range live {
		uid, _, ok := translate.ParseContainerID(id)
		if !ok || known[uid] {
			continue
		}
		log := p.log.WithField("task", id)
		log.Warn("container of a pod that no longer exists: killing it")
		err := p.agent.Kill(ctx, id, syscall.SIGKILL)
		if err != nil {
			log.WithError(err).Warn("orphan kill failed")
			continue
		}
		// REMOVE needs the container to have ended; one WAIT says when.
		_, err = p.agent.Wait(ctx, id)
		p.remove(ctx, id, log)
	}
	return nil
}
