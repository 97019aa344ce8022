package kube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/lockstep-ci/lockstep/internal/executor/kube/kubetest"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// TestDocumentedRBAC runs lockstep as a user that has only the Role
// docs/kubernetes.md gives: runs succeed, and an abort deletes its Pod.
func TestDocumentedRBAC(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## The RBAC lockstep needs")
	if !ok {
		t.Fatal("docs/kubernetes.md has no RBAC section")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatal("the RBAC section has no yaml block")
	}
	e := newEnv(t, nil)
	e.stop()
	block = strings.ReplaceAll(block, "namespace: ci", "namespace: "+e.ns)
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(block)), 4096)
	ctx := context.Background()
	var kinds []string
	for {
		var obj struct {
			Kind string `json:"kind"`
		}
		var raw map[string]any
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(raw)
		_ = json.Unmarshal(b, &obj)
		kinds = append(kinds, obj.Kind)
		switch obj.Kind {
		case "Role":
			var role rbacv1.Role
			if err := json.Unmarshal(b, &role); err != nil {
				t.Fatal(err)
			}
			if _, err := e.admin.RbacV1().Roles(e.ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			if err := json.Unmarshal(b, &rb); err != nil {
				t.Fatal(err)
			}
			if rb.Subjects[0].Name != kubetest.LockstepUser {
				t.Errorf("the binding's subject is %q, want the test bed's user %q", rb.Subjects[0].Name, kubetest.LockstepUser)
			}
			if _, err := e.admin.RbacV1().RoleBindings(e.ns).Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(kinds, ",") != "Role,RoleBinding" {
		t.Fatalf("the RBAC block holds %v, want a Role and a RoleBinding", kinds)
	}
	e.token = kubetest.LockstepToken
	e.start(true)
	ok1 := e.create(job(outcome("succeed"), nil), 0)
	abort := e.create(job(outcome("hold"), nil), 0)
	if got := e.waitDone(ok1.ID); got.Status.State != run.Success {
		t.Errorf("run ended %s/%s %q as the lockstep user, want success", got.Status.State, got.Status.Reason, got.Status.Message)
	}
	e.wait(abort.ID, "running", func(r *run.Run) bool { return r.Status.State == run.Running })
	cur, _ := e.store.GetRun(ctx, abort.ID)
	cur.RequestAbort("ByUser", "")
	if _, err := e.store.UpdateRun(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if got := e.waitDone(abort.ID); got.Status.State != run.Aborted {
		t.Errorf("aborted run ended %s/%s %q as the lockstep user, want aborted", got.Status.State, got.Status.Reason, got.Status.Message)
	}
	if n := len(e.pods(abort.ID)); n != 0 {
		t.Errorf("%d Pods left after the abort, want 0", n)
	}
}
