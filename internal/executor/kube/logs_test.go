package kube_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	"github.com/lockstep-ci/lockstep/internal/executor/kube/kubetest"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// TestLogInStore: the test container's log, read through pods/log,
// reaches the store, where the web of every replica reads it, and a
// follower started again after a restart, which reads it again from its
// start, does not double it. kwok keeps a followed stream open after the
// container ends: lockstep cuts it after LogDrain and says so.
func TestLogInStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := e.create(job(outcome("hold"), nil), 0)
	running := e.wait(r.ID, "running", func(r *run.Run) bool { return r.Status.State == run.Running })
	e.storedLog(r.ID, "the container's log", func(log string) bool { return log == kubetest.ContainerLog })

	// A new process follows the Pod again: the replica it runs on has
	// no log file of the run.
	e.stop()
	if err := os.Remove(running.Status.LogPath); err != nil {
		t.Fatal(err)
	}
	e.start(true)
	release(t, e.admin, e.ns, r.ID)
	done := e.waitDone(r.ID)
	if done.Status.State != run.Success {
		t.Fatalf("run ended %s/%s %q, want success", done.Status.State, done.Status.Reason, done.Status.Message)
	}
	want := kubetest.ContainerLog + "lockstep: the log stream of Pod " + e.ns + "/" + kube.PodName(r.ID) +
		" was still open 300ms after its test container ended; stopped reading it\n"
	stored, err := e.store.ReadLog(context.Background(), r.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(stored) != want {
		t.Errorf("stored log after the restart:\n%q\nwant:\n%q", stored, want)
	}
	file, err := os.ReadFile(done.Status.LogPath)
	if err != nil {
		t.Fatalf("the follower started again wrote no log file: %v", err)
	}
	if string(file) != want {
		t.Errorf("log file of the follower started again:\n%q\nwant:\n%q", file, want)
	}
}

// storedLog polls the store until run id's log satisfies cond.
func (e *env) storedLog(id run.ID, what string, cond func(string) bool) string {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		b, err := e.store.ReadLog(context.Background(), id, 0, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		if cond(string(b)) {
			return string(b)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %d: the stored log has not %s after 90s: %q", id, what, b)
		}
		time.Sleep(20 * time.Millisecond) // polling the store, with a deadline
	}
}
