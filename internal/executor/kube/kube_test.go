package kube_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
)

// TestOutcomes maps every way a Pod can end to the run's state: the test
// container's exit status is success or failure; everything else is an
// infrastructure error with a reason, never failure.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		name    string
		env     map[string]string
		state   run.State
		reason  string
		message string
		build   string // the run's Status.BuildOutput
	}{
		{"succeed", outcome("succeed"), run.Success, "", "", ""},
		// What the job wrote to $LOCKSTEP_BUILD_FILE, its termination
		// message, is the run's build.
		{"succeed with a build", map[string]string{"KWOK_OUTCOME": "succeed", "KWOK_MESSAGE": "v1.2.3\n"}, run.Success, "", "", "v1.2.3"},
		{"fail", map[string]string{"KWOK_OUTCOME": "fail", "KWOK_EXIT": "3"}, run.Failure, runner.ReasonExited, "status 3", ""},
		{"clone fails", outcome("clone-fail"), run.Error, executor.ReasonClone, "cannot clone", ""},
		{"merge conflict", outcome("merge-conflict"), run.Error, executor.ReasonMergeConflict, "cannot merge", ""},
		{"image pull", outcome("bad-image"), run.Error, kube.ReasonImagePull, "ErrImagePull", ""},
		{"unschedulable", outcome("unschedulable"), run.Error, kube.ReasonUnschedulable, "Insufficient cpu", ""},
		{"evicted", outcome("evict"), run.Error, kube.ReasonLost, "Evicted", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e.create(job(tc.env, nil), 0)
			got := e.waitDone(r.ID)
			if got.Status.State != tc.state || got.Status.Reason != tc.reason || !strings.Contains(got.Status.Message, tc.message) {
				t.Errorf("run ended %s/%s %q, want %s/%s containing %q", got.Status.State, got.Status.Reason, got.Status.Message, tc.state, tc.reason, tc.message)
			}
			if got.Status.BuildOutput != tc.build {
				t.Errorf("run's build output %q, want %q", got.Status.BuildOutput, tc.build)
			}
			if got.Status.StartedAt == nil && tc.state != run.Error {
				t.Errorf("run has no start time")
			}
			e.waitGone(r.ID)
		})
	}
	t.Run("deleted behind lockstep's back", func(t *testing.T) {
		t.Parallel()
		r := e.create(job(outcome("pending"), nil), 0)
		got := e.wait(r.ID, "started", func(r *run.Run) bool { return r.Status.Handle != "" })
		if got.Status.State != run.Scheduled {
			t.Errorf("run with a pending Pod is %s, want scheduled", got.Status.State)
		}
		if err := e.admin.CoreV1().Pods(e.ns).Delete(context.Background(), kube.PodName(r.ID), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		got = e.waitDone(r.ID)
		if got.Status.State != run.Error || got.Status.Reason != kube.ReasonLost {
			t.Errorf("run whose Pod was deleted ended %s/%s %q, want error/%s", got.Status.State, got.Status.Reason, got.Status.Message, kube.ReasonLost)
		}
	})
}

// waitGone waits until run id has no Pod left.
func (e *env) waitGone(id run.ID) {
	e.t.Helper()
	e.waitPods(id, 0)
}

func (e *env) waitPods(id run.ID, n int) {
	e.t.Helper()
	e.waitCond("Pods of run "+id.String(), func() bool { return len(e.pods(id)) == n })
}

// waitCond polls cond for at most 90 s.
func (e *env) waitCond(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not so after 90s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling, with a deadline
	}
}
