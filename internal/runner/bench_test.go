package runner_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// BenchmarkThousandTrivialRuns measures the wall time of 1,000 runs of
// `run: "true"` through the real runner and local executor, from created
// to finished: in an empty workspace and cloning a small local repository
// first (through the git cache, as lockstep serve does), each unsandboxed
// and in the bubblewrap sandbox, side by side.
func BenchmarkThousandTrivialRuns(b *testing.B) {
	for _, clone := range []bool{false, true} {
		for _, mode := range []local.SandboxMode{local.SandboxOff, local.SandboxRequired} {
			benchThousandRuns(b, clone, mode)
		}
	}
}

func benchThousandRuns(b *testing.B, clone bool, mode local.SandboxMode) {
	name := "no-clone"
	if clone {
		name = "local-clone"
	}
	name += map[local.SandboxMode]string{local.SandboxOff: "/unsandboxed", local.SandboxRequired: "/sandboxed"}[mode]
	b.Run(name, func(b *testing.B) {
		for range b.N {
			e := newEnv(b, nil)
			e.exec = local.New(local.Options{
				WorkDir: filepath.Join(e.dir, "work"), LogDir: filepath.Join(e.dir, "logs"),
				CacheDir: filepath.Join(e.dir, "cache", "git"), Sandbox: mode,
			})
			b.Cleanup(func() { _ = e.exec.Shutdown(context.Background()) })
			refs := run.Refs{Repo: "acme/widget"}
			if clone {
				refs.CloneURL = smallRepo(b)
				refs.BaseRef = "main"
			}
			start := time.Now()
			for i := range 1000 {
				if _, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{
					Job: "trivial", Type: run.Periodic, Refs: refs, Cause: run.CauseCLI,
					Script: "true", Timeout: time.Minute, TriggerKey: fmt.Sprintf("bench/%d", i),
				}}); err != nil {
					b.Fatal(err)
				}
			}
			stop := e.start(e.exec, nil)
			for {
				page, err := e.store.ListRuns(context.Background(), store.ListOptions{State: []run.State{run.Pending, run.Scheduled, run.Running}, Limit: 1})
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Runs) == 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			elapsed := time.Since(start)
			stop()
			failed, err := e.store.ListRuns(context.Background(), store.ListOptions{State: []run.State{run.Failure, run.Error, run.Aborted}, Limit: 1})
			if err != nil || len(failed.Runs) > 0 {
				if err != nil {
					b.Fatal(err)
				}
				r := failed.Runs[0]
				log, _ := os.ReadFile(r.Status.LogPath)
				b.Fatalf("run %d ended %s (%s): %s\nlog:\n%s", r.ID, r.Status.State, r.Status.Reason, r.Status.Message, log)
			}
			b.ReportMetric(elapsed.Seconds(), "s/1000runs")
		}
	})
}

func smallRepo(b *testing.B) string {
	dir := b.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "first"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return filepath.Clean(dir)
}
