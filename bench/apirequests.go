package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The API server counts the requests it serves by flow schema
// (apiserver_flowcontrol_dispatched_requests_total), not by client, and
// vk-titus's fall under global-default with other clients' (the gateway's).
// A FlowSchema of the bench's own, matching vk-titus's user alone and
// sending it to the priority level it lands in anyway, counts vk-titus's
// requests apart without changing how they are served.
const (
	requestsSchema = "vk-bench-vk-titus"
	// vkTitusUser is the stack's vk-titus user: its client certificate's CN,
	// which stack.sh binds to vk-titus's roles.
	vkTitusUser = "vk-titus"
)

// countVKTitusRequests makes the bench's FlowSchema (teardown deletes it)
// and waits until it has counted one of vk-titus's requests.
func (b *Bench) countVKTitusRequests(ctx context.Context) error {
	if b.flowSchema != "" {
		return nil
	}
	fs := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: requestsSchema},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "global-default"},
			// Just before global-default (9900), which takes vk-titus's
			// requests otherwise.
			MatchingPrecedence:  9800,
			DistinguisherMethod: &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: vkTitusUser}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"},
					Resources: []string{"*"}, ClusterScope: true, Namespaces: []string{"*"}}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			}},
		},
	}
	_, err := b.client.FlowcontrolV1().FlowSchemas().Create(ctx, fs, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("flow schema %s: %w", requestsSchema, err)
	}
	b.flowSchema = requestsSchema
	// vk-titus renews leases every few seconds: a minute without a request
	// counted means a schema of higher precedence takes them.
	return poll(ctx, time.Minute, "flow schema "+requestsSchema+" counting vk-titus's requests", func() (bool, error) {
		n, err := b.vkTitusRequests(ctx)
		return err == nil && n > 0, nil
	})
}

// vkTitusRequests is how many of vk-titus's requests the API server has
// served under the bench's FlowSchema so far.
func (b *Bench) vkTitusRequests(ctx context.Context) (float64, error) {
	raw, err := b.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("API server metrics: %w", err)
	}
	m, err := parseMetrics(bytes.NewReader(raw))
	if err != nil {
		return 0, fmt.Errorf("API server metrics: %w", err)
	}
	return m.Sum("apiserver_flowcontrol_dispatched_requests_total", map[string]string{"flow_schema": requestsSchema}), nil
}

// deleteFlowSchema removes the bench's FlowSchema, if it made one.
func (b *Bench) deleteFlowSchema(ctx context.Context) error {
	if b.flowSchema == "" {
		return nil
	}
	err := b.client.FlowcontrolV1().FlowSchemas().Delete(ctx, b.flowSchema, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete flow schema %s: %w", b.flowSchema, err)
	}
	b.flowSchema = ""
	return nil
}
