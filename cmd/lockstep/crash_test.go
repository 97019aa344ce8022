package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor/local"
	lsrun "github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// TestKillServeWhileRunning kills lockstep serve with SIGKILL while a run
// is under way and starts it again: the run must end as error/Interrupted,
// its processes must be gone, and nothing else may be lost.
//
// Unsandboxed, the job's processes outlive the server, and the next one
// kills them through the run's handle; sandboxed, they die with the
// server (bubblewrap's --die-with-parent ends the PID namespace).
func TestKillServeWhileRunning(t *testing.T) {
	t.Parallel()
	for _, sandboxed := range []bool{false, true} {
		t.Run(map[bool]string{false: "unsandboxed", true: "sandboxed"}[sandboxed], func(t *testing.T) {
			t.Parallel()
			killServeWhileRunning(t, sandboxed)
		})
	}
}

func killServeWhileRunning(t *testing.T, sandboxed bool) {
	dir := t.TempDir()
	mode := "off"
	if sandboxed {
		mode = "required"
	}
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), `
local:
  sandbox: `+mode+`
repos:
  acme/widget:
    periodics:
      - name: tick
        interval: 1h
        run: "true"
`)
	data := filepath.Join(dir, "data")
	srv := startServer(t, cfg, data)

	// The test writes runs straight into the server's database, as the
	// webhook intake and the scheduler do.
	st, err := sqlite.Open(context.Background(), filepath.Join(data, "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	create := func(key, script string) lsrun.ID {
		t.Helper()
		r, err := st.CreateRun(context.Background(), &lsrun.Run{Spec: lsrun.Spec{
			Job: "tick", Type: lsrun.Periodic, Refs: lsrun.Refs{Repo: "acme/widget"},
			Cause: lsrun.CauseCron, Script: script, Timeout: time.Hour, TriggerKey: key,
		}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	done := create("before", "true")
	waitRun(t, st, done, lsrun.Success)
	// The job says when its children exist, so the kill cannot come before.
	hanging := create("hanging", "sleep 1000 & sleep 1000 & echo children-started; wait")
	running := waitRun(t, st, hanging, lsrun.Running)
	pollUntil(t, "the job to start its children", func() bool {
		b, _ := os.ReadFile(running.Status.LogPath)
		return strings.Contains(string(b), "children-started")
	})
	alive := func() bool {
		ok, err := local.Alive(running.Status.Handle)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.done
	if sandboxed {
		pollUntil(t, "the sandboxed run's processes to die with the server", func() bool { return !alive() })
	} else if !alive() {
		t.Fatal("the run's processes died with the server; the test would prove nothing")
	}
	afterCrash := create("while-down", "true")

	srv = startServer(t, cfg, data)
	interrupted := waitRun(t, st, hanging, lsrun.Error)
	if interrupted.Status.Reason != "Interrupted" {
		t.Errorf("reason %q, want Interrupted", interrupted.Status.Reason)
	}
	pollUntil(t, "the interrupted run's processes to be gone", func() bool { return !alive() })
	waitRun(t, st, afterCrash, lsrun.Success)
	if r, err := st.GetRun(context.Background(), done); err != nil || r.Status.State != lsrun.Success {
		t.Errorf("run finished before the crash: %v, %v; want it unchanged", r, err)
	}
	page, err := st.ListRuns(context.Background(), store.ListOptions{})
	if err != nil || len(page.Runs) != 3 {
		t.Errorf("store holds %d runs (%v), want 3", len(page.Runs), err)
	}

	// The restarted server answers, and stops cleanly on SIGTERM.
	resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/runs/%d", srv.addr, hanging))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET run: %s", resp.Status)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-srv.done; err != nil {
		t.Errorf("lockstep serve after SIGTERM: %v, want a clean exit", err)
	}
}

func waitRun(t *testing.T, st store.Runs, id lsrun.ID, want lsrun.State) *lsrun.Run {
	t.Helper()
	var r *lsrun.Run
	pollUntil(t, fmt.Sprintf("run %d to be %s", id, want), func() bool {
		var err error
		if r, err = st.GetRun(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if r.Status.State.Terminal() && r.Status.State != want {
			t.Fatalf("run %d ended %s (%s), want %s", id, r.Status.State, r.Status.Message, want)
		}
		return r.Status.State == want
	})
	return r
}

func pollUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
