package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/vk-titus/vk-titus/api/titus"
)

// The job API authenticates every caller and asks the API server whether
// it may do what it asks (issue 13, part 2). These tests call it as a
// stranger (no credentials) and as a ServiceAccount whose rights they
// grant with the example ClusterRoles of manifests/base/job-api-roles.yaml.

// grantWait bounds how long a new binding may take to be honoured: the
// gateway remembers a denial for apiauth.DefaultDenyTTL (10 s), and RBAC
// needs a moment to see the binding.
const grantWait = time.Minute

// TestJobAPIAuthAnonymousWritesRefused: without a client certificate or a
// token, job and migration writes get 401 in Titus's error shape.
func TestJobAPIAuthAnonymousWritesRefused(t *testing.T) {
	anon := env.JobAPIClient(time.Minute, true)
	app := appName(t, "anon")
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/v3/jobs", descriptor(app, "true", batch(1))},
		{"PUT", "/api/v3/migration/stages/application/" + app, obj{"stage": "kube"}},
	} {
		code, out := callAs(t, anon, "", c.method, c.path, c.body)
		if code != http.StatusUnauthorized || out["statusCode"] != float64(http.StatusUnauthorized) || out["message"] == "" {
			t.Errorf("anonymous %s %s: %d %v, want 401 with Titus's error body", c.method, c.path, code, out)
		}
	}
	if code, out := call(t, "GET", "/api/v3/migration/stages/application/"+app, nil); code != http.StatusNotFound {
		t.Errorf("the anonymous PUT set a stage: GET answers %d %v", code, out)
	}
}

// TestJobAPIAuthServiceAccount: a ServiceAccount's token is refused (403)
// until a binding grants the verb, then accepted (202); the migration
// history records the ServiceAccount as the author; gRPC refuses a call
// without credentials and serves the same token.
func TestJobAPIAuthServiceAccount(t *testing.T) {
	ctx := ctxFor(t, 5*time.Minute)
	name := "job-api-e2e"
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("ServiceAccount: %v", err)
	}
	tr, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	token := tr.Status.Token
	user := fmt.Sprintf("system:serviceaccount:%s:%s", ns, name)
	// The token alone authenticates: no client certificate beside it.
	sa := env.JobAPIClient(time.Minute, true)
	app := appName(t, "sa")
	job := descriptor(app, "true", batch(1))

	if code, out := callAs(t, sa, token, "POST", "/api/v3/jobs", job); code != http.StatusForbidden || out["statusCode"] != float64(http.StatusForbidden) {
		t.Fatalf("POST /api/v3/jobs without a binding: %d %v, want 403", code, out)
	}

	bind(t, ctx, "vk-titus-job-submitter", name)
	out := eventually(t, "POST /api/v3/jobs once vk-titus-job-submitter is bound", http.StatusAccepted, func() (int, obj) {
		return callAs(t, sa, token, "POST", "/api/v3/jobs", job)
	})
	if id, _ := out["id"].(string); id == "" {
		t.Fatalf("no job id in %v", out)
	}

	stage := "/api/v3/migration/stages/application/" + app
	if code, out := callAs(t, sa, token, "PUT", stage, obj{"stage": "kube"}); code != http.StatusForbidden {
		t.Fatalf("PUT %s as a job submitter: %d %v, want 403", stage, code, out)
	}
	bind(t, ctx, "vk-titus-migration-operator", name)
	eventually(t, "PUT "+stage+" once vk-titus-migration-operator is bound", http.StatusOK, func() (int, obj) {
		return callAs(t, sa, token, "PUT", stage, obj{"stage": "kube", "by": "declared-e2e"})
	})
	hist := mustCall(t, http.StatusOK, "GET", "/api/v3/migration/history?scope=application&name="+url.QueryEscape(app)+"&limit=10", nil)
	items, _ := hist["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("history of %s: %v, want one change", app, hist)
	}
	if ch, _ := items[0].(obj); ch["by"] != user || ch["declaredBy"] != "declared-e2e" {
		t.Fatalf("history of %s: %v, want by %q and declaredBy %q", app, ch, user, "declared-e2e")
	}

	// gRPC: the same decisions through the interceptors.
	c := grpcJobAPIWith(t, env.JobAPICredentials(true))
	q := &titus.JobQuery{Page: &titus.Page{PageSize: 10}, FilteringCriteria: map[string]string{"appName": app}}
	if _, err := c.FindJobs(ctxFor(t, time.Minute), q); grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("FindJobs without credentials: %v, want UNAUTHENTICATED", err)
	}
	withToken := func() context.Context {
		return metadata.AppendToOutgoingContext(ctxFor(t, time.Minute), "authorization", "Bearer "+token)
	}
	deadline := time.Now().Add(grantWait)
	for {
		_, err := c.FindJobs(withToken(), q)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("FindJobs with the bound ServiceAccount's token: %v", err)
		}
		time.Sleep(time.Second)
	}
}

// bind grants the ServiceAccount ns/sa a ClusterRole cluster-wide (the job
// API's resources are not namespaced) until the test ends.
func bind(t *testing.T, ctx context.Context, role, sa string) {
	t.Helper()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s-%s", ns, sa, role)},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("ClusterRoleBinding %s: %v", crb.Name, err)
	}
	t.Cleanup(func() {
		_ = client.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
}

// eventually repeats do until it answers want, for grantWait.
func eventually(t *testing.T, what string, want int, do func() (int, obj)) obj {
	t.Helper()
	deadline := time.Now().Add(grantWait)
	for {
		code, out := do()
		if code == want {
			return out
		}
		if code != http.StatusForbidden || time.Now().After(deadline) {
			t.Fatalf("%s: %d %v, want %d", what, code, out, want)
		}
		time.Sleep(time.Second)
	}
}
