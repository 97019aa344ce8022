package gitlab

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/gitlab/gitlabtest"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

const (
	testProject  = "kubespray/mirror"
	webhookToken = "hook-token"
)

// env is an Executor against the GitLab double, with a source
// repository (the GitHub side) holding main and a pull request's head,
// and the real webhook intake over a real SQLite store feeding it.
type env struct {
	t          *testing.T
	gl         *gitlabtest.Server
	store      *sqlite.Store
	dir        string
	src        string
	base, head string
	hookURL    string
	seq        atomic.Int64
	stops      map[*Executor]func()
}

func newEnv(t *testing.T, auto bool, jobs ...gitlabtest.JobSpec) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), stops: map[*Executor]func(){}}
	e.src = filepath.Join(e.dir, "src")
	e.git("", "init", "-q", "-b", "main", e.src)
	writeFile(t, filepath.Join(e.src, "README"), "hello\n")
	e.git(e.src, "add", ".")
	e.git(e.src, "commit", "-q", "-m", "init")
	e.base = e.git(e.src, "rev-parse", "HEAD")
	e.git(e.src, "checkout", "-q", "-b", "feature")
	writeFile(t, filepath.Join(e.src, "feature.txt"), "new\n")
	e.git(e.src, "add", ".")
	e.git(e.src, "commit", "-q", "-m", "feature")
	e.head = e.git(e.src, "rev-parse", "HEAD")
	e.git(e.src, "checkout", "-q", "main")

	e.gl = gitlabtest.NewServer(t)
	if len(jobs) == 0 {
		jobs = []gitlabtest.JobSpec{{Name: "lint", Stage: "unit-tests", Trace: "lint ok\n"}, {Name: "kubespray-e2e", Stage: "deploy-part1", Trace: "deployed\n"}}
	}
	e.gl.AddProject(testProject, auto, jobs...)

	st, err := sqlite.Open(context.Background(), filepath.Join(e.dir, "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	hook := NewHookHandler(HookOptions{Token: func() []byte { return []byte(webhookToken) }, Store: st})
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	e.hookURL = srv.URL
	e.gl.SetWebhook(srv.URL, webhookToken)
	return e
}

// newExecutor starts an Executor (a lockstep process) whose deliveries
// processor runs until the test ends or the Executor is shut down.
func (e *env) newExecutor(configure ...func(*Options)) *Executor {
	e.t.Helper()
	opts := Options{
		URL: e.gl.URL(), Token: gitlabtest.Token,
		WorkDir: filepath.Join(e.dir, "work"), LogDir: filepath.Join(e.dir, "logs"),
		LogSink:      &executor.StoreLogs{Logs: e.store, FlushInterval: 10 * time.Millisecond},
		PollInterval: time.Hour, TraceInterval: time.Hour,
	}
	for _, c := range configure {
		c(&opts)
	}
	x, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := NewDeliveries(e.store, x, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			_ = x.Shutdown(context.Background())
		})
	}
	e.stops[x] = stop
	e.t.Cleanup(stop)
	return x
}

// kill stops x and its deliveries processor, as if its process ended.
func (e *env) kill(x *Executor) { e.stops[x]() }

// newRun returns a presubmit run of pull request 7 for the gitlab job.
func (e *env) newRun(merge bool) *run.Run {
	cfg, _ := json.Marshal(config.GitLabRun{
		Project: testProject, Remote: e.gl.RemoteURL(testProject), Merge: merge,
		Variables: map[string]string{"CI_PLATFORM": "packet"},
	})
	return &run.Run{
		Meta: run.Meta{ID: run.ID(e.seq.Add(1))},
		Spec: run.Spec{
			Job: "kubespray", Type: run.Presubmit, Cause: run.CauseEvent, Timeout: time.Hour,
			Refs: run.Refs{Repo: "kubernetes-sigs/kubespray", CloneURL: e.src, BaseRef: "main", BaseSHA: e.base,
				Pull: 7, HeadSHA: e.head, HeadRef: "feature", Author: "alice"},
			Env:      map[string]string{"JOB_NAME": "overridden", "A": "1"},
			Executor: config.ExecutorGitLab, ExecutorConfig: cfg,
		},
	}
}

// start starts r on x and records the handle as the runner would.
func (e *env) start(x *Executor, r *run.Run, notify func()) executor.Started {
	e.t.Helper()
	started, err := x.Start(context.Background(), r, notify)
	if err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	r.Status.Handle, r.Status.LogPath = started.Handle, started.LogPath
	return started
}

// waitDone polls x's Status of r until it is done.
func (e *env) waitDone(x *Executor, r *run.Run) executor.Outcome {
	e.t.Helper()
	var out executor.Outcome
	e.waitFor("the pipeline's outcome", func() bool {
		var err error
		out, err = x.Status(context.Background(), r)
		if err != nil {
			e.t.Fatalf("Status: %v", err)
		}
		return out.Done
	})
	return out
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pipeline returns the only pipeline of the project.
func (e *env) pipeline() int64 {
	e.t.Helper()
	ps := e.gl.Pipelines(testProject)
	if len(ps) != 1 {
		e.t.Fatalf("%d pipelines on GitLab, want 1", len(ps))
	}
	return ps[0].ID
}

func (e *env) jobIDs(pipeline int64) []int64 {
	var ids []int64
	for _, j := range e.gl.Jobs(pipeline) {
		ids = append(ids, j.ID)
	}
	return ids
}

func (e *env) git(dir string, args ...string) string {
	e.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (e *env) readLog(r *run.Run) string {
	b, err := os.ReadFile(r.Status.LogPath)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// storedLog returns r's log as the store holds it.
func (e *env) storedLog(r *run.Run) string {
	e.t.Helper()
	b, err := e.store.ReadLog(context.Background(), r.ID, 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
