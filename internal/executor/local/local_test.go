package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// testTimeout bounds every wait in these tests; reaching it is a failure.
const testTimeout = 30 * time.Second

// gitRepo is a git repository made for a test.
type gitRepo struct {
	t   testing.TB
	dir string
}

// newRepo returns a repository whose branch main has one commit adding
// base.txt.
func newRepo(t testing.TB) *gitRepo {
	t.Helper()
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	r.commit("base.txt", "base\n")
	return r
}

// git runs git in the repository with a fixed identity and no user
// configuration, and returns its trimmed output.
func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes content to file on the current branch, commits it and
// returns the commit's SHA.
func (r *gitRepo) commit(file, content string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, file), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.git("add", file)
	r.git("commit", "-q", "-m", "change "+file)
	return r.git("rev-parse", "HEAD")
}

// newExecutor returns an Executor over fresh directories, shut down when
// the test ends.
func newExecutor(t *testing.T, opts Options) *Executor {
	t.Helper()
	if opts.WorkDir == "" {
		opts.WorkDir = filepath.Join(t.TempDir(), "work")
	}
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(t.TempDir(), "logs")
	}
	e := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e
}

// newRun returns a run of script with ID id and refs.
func newRun(id run.ID, script string, refs run.Refs) *run.Run {
	r := &run.Run{Spec: run.Spec{Job: "unit", Type: run.Postsubmit, Refs: refs, Script: script}}
	r.ID = id
	return r
}

// started is a run under way in a test.
type started struct {
	r        *run.Run
	s        executor.Started
	notified chan struct{}
	calls    *atomic.Int32
}

// start starts r on e and records the handle in r, as the runner does.
func start(t *testing.T, e *Executor, r *run.Run) started {
	t.Helper()
	st := started{r: r, notified: make(chan struct{}, 1), calls: new(atomic.Int32)}
	s, err := e.Start(context.Background(), r, func() {
		st.calls.Add(1)
		st.notified <- struct{}{}
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	st.s = s
	r.Status.Handle, r.Status.LogPath = s.Handle, s.LogPath
	return st
}

// wait waits for notify, then returns the outcome and the log.
func (st started) wait(t *testing.T, e *Executor) (executor.Outcome, string) {
	t.Helper()
	select {
	case <-st.notified:
	case <-time.After(testTimeout):
		t.Fatalf("run %s did not end", st.r.ID)
	}
	out, err := e.Status(context.Background(), st.r)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	log, err := os.ReadFile(st.s.LogPath)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	return out, string(log)
}

// run starts r on e and waits for its end.
func runToEnd(t *testing.T, e *Executor, r *run.Run) (executor.Outcome, string) {
	t.Helper()
	return start(t, e, r).wait(t, e)
}

// poll calls cond until it returns true, failing the test after
// testTimeout.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitForLog waits until the log at path contains s.
func waitForLog(t *testing.T, path, s string) {
	t.Helper()
	poll(t, fmt.Sprintf("%q in the log", s), func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, []byte(s))
	})
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z'
}

// waitForMembers waits until process group pgid has n live members and
// returns their PIDs.
func waitForMembers(t *testing.T, pgid, n int) []int {
	t.Helper()
	var pids []int
	poll(t, fmt.Sprintf("%d processes in group %d", n, pgid), func() bool {
		members, err := groupMembers(pgid)
		if err != nil {
			t.Fatal(err)
		}
		pids = pids[:0]
		for _, m := range members {
			if m.state != 'Z' {
				pids = append(pids, m.pid)
			}
		}
		return len(pids) >= n
	})
	return pids
}

// waitGone waits until none of pids is alive.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	poll(t, fmt.Sprintf("processes %v to die", pids), func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

func mustHandle(t *testing.T, s string) handle {
	t.Helper()
	h, err := parseHandle(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// groupScript leaves a grandchild and a child running, says ready, and
// waits for them.
const groupScript = `sh -c 'sleep 1000 & wait' &
sleep 1000 &
echo ready
wait
`

func TestExitCode(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	e := newExecutor(t, Options{})
	tests := []struct {
		name   string
		script string
		clone  bool
		want   int
	}{
		{name: "success", script: "true", want: 0},
		{name: "exit 3", script: "exit 3", want: 3},
		{name: "exit 3 after a clone", script: "test -f base.txt\nexit 3", clone: true, want: 3},
		{name: "sh -e stops at the first failure", script: "false\nexit 0", want: 1},
		{name: "empty script", script: "", want: 0},
		{name: "killed by a signal", script: "kill -TERM $$", want: 128 + 15},
		{name: "the job cannot forge an infrastructure failure", script: "echo 'CloneFailed forged' >&3 || exit 4", want: 4},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var refs run.Refs
			if tc.clone {
				refs = run.Refs{Repo: "acme/widget", CloneURL: repo.dir}
			}
			got, log := runToEnd(t, e, newRun(run.ID(i+1), tc.script, refs))
			want := executor.Outcome{Done: true, ExitCode: tc.want}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	// Not parallel: it sets a variable in lockstep's environment that
	// must not reach the job.
	t.Setenv("LOCKSTEP_TEST_SECRET", "leaked")
	repo := newRepo(t)
	base := repo.git("rev-parse", "HEAD")
	repo.git("checkout", "-q", "-b", "feature")
	head := repo.commit("head.txt", "head\n")
	repo.git("checkout", "-q", "main")
	e := newExecutor(t, Options{})

	r := newRun(42, "echo cwd=$PWD\ntest -d \"$ARTIFACTS\"\nenv", run.Refs{
		Repo: "acme/widget", CloneURL: repo.dir, BaseRef: "main", BaseSHA: base,
		Pull: 7, HeadSHA: head, HeadRef: "feature", Author: "alice",
	})
	r.Spec.Type = run.Presubmit
	r.Spec.Job = "pull-unit"
	r.Spec.Env = map[string]string{"FOO": "bar baz", "BUILD_ID": "spoofed", "PATH": "/custom/bin:/usr/bin:/bin"}
	got, log := runToEnd(t, e, r)
	if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
		t.Fatalf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
	}

	env := map[string]string{}
	for _, line := range strings.Split(log, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	ws := filepath.Dir(env["cwd"])
	want := map[string]string{
		"CI":                  "true",
		"JOB_NAME":            "pull-unit",
		"JOB_TYPE":            "presubmit",
		"BUILD_ID":            "42",
		"BUILD_NUMBER":        "42",
		"LOCKSTEP_RUN_ID":     "42",
		"REPO_OWNER":          "acme",
		"REPO_NAME":           "widget",
		"PULL_BASE_REF":       "main",
		"PULL_BASE_SHA":       base,
		"PULL_NUMBER":         "7",
		"PULL_PULL_SHA":       head,
		"PULL_HEAD_REF":       "feature",
		"PULL_REFS":           "main:" + base + ",7:" + head,
		"ARTIFACTS":           filepath.Join(ws, "artifacts"),
		"LOCKSTEP_BUILD_FILE": filepath.Join(ws, "build-version"),
		"GIT_TERMINAL_PROMPT": "0",
		"FOO":                 "bar baz",
		"PATH":                "/custom/bin:/usr/bin:/bin",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s: got %q, want %q", k, env[k], v)
		}
	}
	if got, want := env["cwd"], filepath.Join(ws, "src"); got != want {
		t.Errorf("working directory: got %q, want %q", got, want)
	}
	if got, want := filepath.Dir(ws), e.opts.WorkDir; got != want {
		t.Errorf("workspace parent: got %q, want %q", got, want)
	}
	if !strings.HasPrefix(filepath.Base(ws), "42-") {
		t.Errorf("workspace name: got %q, want prefix 42-", filepath.Base(ws))
	}
	if v, ok := env["LOCKSTEP_TEST_SECRET"]; ok {
		t.Errorf("LOCKSTEP_TEST_SECRET reached the job: %q", v)
	}

	var spec map[string]any
	if err := json.Unmarshal([]byte(env["JOB_SPEC"]), &spec); err != nil {
		t.Fatalf("JOB_SPEC %q: %v", env["JOB_SPEC"], err)
	}
	wantSpec := map[string]any{
		"type": "presubmit", "job": "pull-unit", "buildid": "42",
		"refs": map[string]any{
			"org": "acme", "repo": "widget", "base_ref": "main", "base_sha": base, "clone_uri": repo.dir,
			"pulls": []any{map[string]any{"number": 7.0, "author": "alice", "sha": head, "head_ref": "feature"}},
		},
	}
	if diff := cmp.Diff(wantSpec, spec); diff != "" {
		t.Errorf("JOB_SPEC (-want +got):\n%s", diff)
	}
}

func TestProwEnvWithoutPull(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		refs run.Refs
		want map[string]string
	}{
		{
			name: "postsubmit",
			refs: run.Refs{Repo: "acme/widget", BaseRef: "main", BaseSHA: "abc"},
			want: map[string]string{
				"REPO_OWNER": "acme", "REPO_NAME": "widget",
				"PULL_BASE_REF": "main", "PULL_BASE_SHA": "abc", "PULL_REFS": "main:abc",
			},
		},
		{name: "no refs", refs: run.Refs{}, want: map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := prowEnv(newRun(5, "true", tc.refs))
			for _, k := range []string{"CI", "JOB_NAME", "JOB_TYPE", "BUILD_ID", "BUILD_NUMBER", "JOB_SPEC"} {
				delete(env, k)
			}
			if diff := cmp.Diff(tc.want, env); diff != "" {
				t.Errorf("prowEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStdoutCopy(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	e := newExecutor(t, Options{Stdout: &buf})
	_, log := runToEnd(t, e, newRun(1, "echo out\necho err >&2", run.Refs{}))
	for _, s := range []string{"out\n", "err\n"} {
		if !strings.Contains(log, s) {
			t.Errorf("log %q: want %q in it", log, s)
		}
		if !strings.Contains(buf.String(), s) {
			t.Errorf("stdout copy %q: want %q in it", buf.String(), s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	first := repo.git("rev-parse", "HEAD")
	second := repo.commit("second.txt", "2\n")
	repo.git("checkout", "-q", "-b", "release")
	release := repo.commit("release.txt", "r\n")
	repo.git("checkout", "-q", "main")
	e := newExecutor(t, Options{})

	// The script prints the checked-out commit and branch.
	const script = "echo head=$(git rev-parse HEAD)\necho branch=$(git rev-parse --abbrev-ref HEAD)\ngit status --porcelain"
	tests := []struct {
		name       string
		refs       run.Refs
		wantHead   string
		wantBranch string
	}{
		{name: "default branch", refs: run.Refs{}, wantHead: second, wantBranch: "main"},
		{name: "base ref", refs: run.Refs{BaseRef: "release"}, wantHead: release, wantBranch: "release"},
		{name: "base SHA on a branch", refs: run.Refs{BaseRef: "main", BaseSHA: first}, wantHead: first, wantBranch: "main"},
		{name: "base SHA alone", refs: run.Refs{BaseSHA: first}, wantHead: first, wantBranch: "HEAD"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refs := tc.refs
			refs.Repo, refs.CloneURL = "acme/widget", repo.dir
			got, log := runToEnd(t, e, newRun(run.ID(i+1), script, refs))
			if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
				t.Fatalf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
			}
			want := fmt.Sprintf("head=%s\nbranch=%s\n", tc.wantHead, tc.wantBranch)
			if !strings.HasSuffix(log, want) {
				t.Errorf("log: got %q, want it to end with %q (and a clean tree)", log, want)
			}
		})
	}
}

func TestNoClone(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{GitPath: "/nonexistent/git"})
	got, log := runToEnd(t, e, newRun(1, `test -z "$(ls -A)"`, run.Refs{Repo: "acme/widget"}))
	if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
		t.Errorf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
	}
}

func TestPresubmitMerge(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	// The clones use file:// URLs: a clone of a plain path copies every
	// object, so the head would always be there without a fetch.
	tests := []struct {
		name string
		// publish leaves the head commit where the clone can find it.
		publish func(r *gitRepo, head string)
		// wantFetch is where the head was fetched from, if it was.
		wantFetch string
	}{
		{name: "head on a branch", publish: func(r *gitRepo, head string) {}},
		{name: "head only under refs/pull", publish: func(r *gitRepo, head string) {
			r.git("update-ref", "refs/pull/7/head", head)
			r.git("branch", "-q", "-D", "feature")
		}, wantFetch: "pull/7/head"},
		{name: "head only as an unreachable object", publish: func(r *gitRepo, head string) {
			r.git("branch", "-q", "-D", "feature")
		}, wantFetch: "head"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			repo := newRepo(t)
			repo.git("checkout", "-q", "-b", "feature")
			head := repo.commit("head.txt", "head\n")
			repo.git("checkout", "-q", "main")
			base := repo.commit("other.txt", "other\n")
			tc.publish(repo, head)

			r := newRun(run.ID(i+1), `test -f head.txt
test -f other.txt
git log -1 --format='parents=%P author=%an <%ae> date=%at'`, run.Refs{
				Repo: "acme/widget", CloneURL: "file://" + repo.dir, BaseRef: "main", BaseSHA: base,
				Pull: 7, HeadSHA: head, HeadRef: "feature",
			})
			r.Spec.Type = run.Presubmit
			got, log := runToEnd(t, e, r)
			if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
				t.Fatalf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
			}
			from := tc.wantFetch
			if from == "head" {
				from = head
			}
			fetched := "lockstep: fetched " + head + " from " + from + "\n"
			if got, want := strings.Contains(log, "lockstep: fetched"), from != ""; got != want || want && !strings.Contains(log, fetched) {
				t.Errorf("log %q: want %q in it: %t", log, fetched, want)
			}
			want := fmt.Sprintf("parents=%s %s author=lockstep <lockstep@lockstep.invalid> date=1000000000\n", base, head)
			if !strings.HasSuffix(log, want) {
				t.Errorf("log: got %q, want it to end with %q", log, want)
			}
		})
	}
}

func TestInfraFailures(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	repo.git("checkout", "-q", "-b", "feature")
	conflicting := repo.commit("base.txt", "head\n")
	repo.git("checkout", "-q", "main")
	base := repo.commit("base.txt", "main\n")
	e := newExecutor(t, Options{})

	missing := strings.Repeat("1", 40)
	tests := []struct {
		name       string
		refs       run.Refs
		wantReason string
		wantLog    string
	}{
		{
			name:       "clone of a path that does not exist",
			refs:       run.Refs{CloneURL: filepath.Join(t.TempDir(), "nope")},
			wantReason: executor.ReasonClone,
			wantLog:    "lockstep: cannot clone",
		},
		{
			name:       "base SHA that does not exist",
			refs:       run.Refs{CloneURL: repo.dir, BaseRef: "main", BaseSHA: missing},
			wantReason: executor.ReasonClone,
			wantLog:    "lockstep: cannot fetch base commit " + missing,
		},
		{
			name:       "base ref that does not exist",
			refs:       run.Refs{CloneURL: repo.dir, BaseRef: "nope"},
			wantReason: executor.ReasonClone,
			wantLog:    "lockstep: cannot fetch base ref nope",
		},
		{
			name:       "head SHA that does not exist",
			refs:       run.Refs{CloneURL: repo.dir, BaseRef: "main", BaseSHA: base, Pull: 3, HeadSHA: missing, HeadRef: "gone"},
			wantReason: executor.ReasonClone,
			wantLog:    "lockstep: cannot fetch head commit " + missing + " of pull request 3",
		},
		{
			name:       "conflicting head",
			refs:       run.Refs{CloneURL: repo.dir, BaseRef: "main", BaseSHA: base, Pull: 3, HeadSHA: conflicting},
			wantReason: executor.ReasonMergeConflict,
			wantLog:    "lockstep: cannot merge " + conflicting,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.refs.Repo = "acme/widget"
			got, log := runToEnd(t, e, newRun(run.ID(i+1), "echo job ran", tc.refs))
			if !got.Done || got.Infra == nil {
				t.Fatalf("outcome: got %+v, want done with an infrastructure error\nlog:\n%s", got, log)
			}
			if got.Infra.Reason != tc.wantReason {
				t.Errorf("reason: got %s, want %s (%v)", got.Infra.Reason, tc.wantReason, got.Infra)
			}
			if !strings.Contains(log, tc.wantLog) {
				t.Errorf("log %q: want %q in it", log, tc.wantLog)
			}
			if strings.Contains(log, "job ran") {
				t.Errorf("log %q: the job script ran", log)
			}
		})
	}
}

func TestStartFailures(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		opts       Options
		refs       run.Refs
		wantReason string
	}{
		{name: "work directory is a file", opts: Options{WorkDir: file}, wantReason: executor.ReasonWorkspace},
		{name: "log directory is a file", opts: Options{LogDir: file}, wantReason: executor.ReasonWorkspace},
		{name: "no git", opts: Options{GitPath: "/nonexistent/git"}, refs: run.Refs{CloneURL: "/repo"}, wantReason: executor.ReasonClone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newExecutor(t, tc.opts)
			_, err := e.Start(context.Background(), newRun(1, "true", tc.refs), nil)
			var infra *executor.InfraError
			if !errors.As(err, &infra) {
				t.Fatalf("Start: got %v, want an *executor.InfraError", err)
			}
			if infra.Reason != tc.wantReason {
				t.Errorf("reason: got %s, want %s (%v)", infra.Reason, tc.wantReason, err)
			}
			if _, err := e.Status(context.Background(), newRun(1, "", run.Refs{})); !errors.Is(err, executor.ErrUnknown) {
				t.Errorf("Status after a failed Start: got %v, want ErrUnknown", err)
			}
			if entries, _ := os.ReadDir(e.opts.WorkDir); len(entries) != 0 {
				t.Errorf("work directory: got %d entries, want none", len(entries))
			}
		})
	}
}

func TestPreparationDied(t *testing.T) {
	t.Parallel()
	// A git that kills the preparing shell, its parent, the way an
	// out-of-memory kill would.
	git := writeScript(t, "git", "#!/bin/sh\nkill -KILL $PPID\n")
	e := newExecutor(t, Options{GitPath: git, Sandbox: SandboxOff})
	got, log := runToEnd(t, e, newRun(1, "true", run.Refs{CloneURL: "/repo"}))
	if !got.Done || got.Infra == nil || got.Infra.Reason != executor.ReasonStart {
		t.Errorf("outcome: got %+v, want done with reason %s\nlog:\n%s", got, executor.ReasonStart, log)
	}
}

// writeScript writes an executable script named name and returns its path.
func writeScript(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKillGroup(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	st := start(t, e, newRun(1, groupScript, run.Refs{}))
	waitForLog(t, st.s.LogPath, "ready")
	h := mustHandle(t, st.s.Handle)
	// The leader, the subshell, its sleep and the other sleep.
	pids := waitForMembers(t, h.pgid, 4)

	if err := e.Kill(context.Background(), st.r); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	// Kill returns once the execution has ended.
	got, err := e.Status(context.Background(), st.r)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if diff := cmp.Diff(executor.Outcome{Done: true, ExitCode: 128 + int(syscall.SIGKILL)}, got); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
	waitGone(t, pids)
	st.wait(t, e)
	if err := e.Kill(context.Background(), st.r); err != nil {
		t.Errorf("Kill of an ended execution: %v", err)
	}
	if n := st.calls.Load(); n != 1 {
		t.Errorf("notify calls: got %d, want 1", n)
	}
}

func TestLeftoverProcessesKilled(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{Sandbox: SandboxOff})
	// The job ends, leaving a child and a grandchild running.
	got, log := runToEnd(t, e, newRun(1, `sh -c 'sleep 1000 & echo "pid=$!"' &
child=$!
sleep 1000 &
echo "pid=$!"
wait $child`, run.Refs{}))
	if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
		t.Fatalf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
	}
	var pids []int
	for _, line := range strings.Split(log, "\n") {
		if s, ok := strings.CutPrefix(line, "pid="); ok {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			pids = append(pids, pid)
		}
	}
	if len(pids) != 2 {
		t.Fatalf("log %q: got %d PIDs, want 2", log, len(pids))
	}
	waitGone(t, pids)
}

func TestKillDuringClone(t *testing.T) {
	t.Parallel()
	git := writeScript(t, "git", "#!/bin/sh\necho cloning slowly\nexec sleep 1000\n")
	e := newExecutor(t, Options{GitPath: git, Sandbox: SandboxOff})
	st := start(t, e, newRun(1, "echo job ran", run.Refs{CloneURL: "/repo"}))
	waitForLog(t, st.s.LogPath, "cloning slowly")
	pids := waitForMembers(t, mustHandle(t, st.s.Handle).pgid, 2)

	if err := e.Kill(context.Background(), st.r); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	got, log := st.wait(t, e)
	// A killed preparation is no infrastructure failure: the runner knows
	// why it killed the run.
	if diff := cmp.Diff(executor.Outcome{Done: true, ExitCode: 128 + int(syscall.SIGKILL)}, got); diff != "" {
		t.Errorf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
	}
	waitGone(t, pids)
}

func TestKillAfterRestart(t *testing.T) {
	t.Parallel()
	first := newExecutor(t, Options{})
	st := start(t, first, newRun(1, groupScript, run.Refs{}))
	waitForLog(t, st.s.LogPath, "ready")
	pids := waitForMembers(t, mustHandle(t, st.s.Handle).pgid, 4)

	// A second Executor knows the run only from the store.
	second := newExecutor(t, Options{})
	r := newRun(1, groupScript, run.Refs{})
	r.Status.Handle = st.s.Handle
	if _, err := second.Status(context.Background(), r); !errors.Is(err, executor.ErrUnknown) {
		t.Errorf("Status: got %v, want ErrUnknown", err)
	}
	if err := second.Kill(context.Background(), r); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitGone(t, pids)
	got, _ := st.wait(t, first)
	if diff := cmp.Diff(executor.Outcome{Done: true, ExitCode: 128 + int(syscall.SIGKILL)}, got); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
}

func TestKillStaleHandle(t *testing.T) {
	t.Parallel()
	first := newExecutor(t, Options{Sandbox: SandboxOff})
	second := newExecutor(t, Options{Sandbox: SandboxOff})
	tests := []struct {
		name  string
		stale func(h handle) handle
	}{
		{name: "other start time", stale: func(h handle) handle { h.start++; return h }},
		{name: "other boot", stale: func(h handle) handle { h.boot = "00000000-0000-0000-0000-000000000000"; return h }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fifo := mkfifo(t)
			r := newRun(run.ID(i+1), "sleep 1000 &\necho ready\nread line < \"$FIFO\"\nexit 0", run.Refs{})
			r.Spec.Env = map[string]string{"FIFO": fifo}
			st := start(t, first, r)
			waitForLog(t, st.s.LogPath, "ready")
			h := mustHandle(t, st.s.Handle)
			if h.boot == "" {
				t.Fatal("handle has no boot ID")
			}

			other := newRun(r.ID, "", run.Refs{})
			other.Status.Handle = tc.stale(h).String()
			if err := second.Kill(context.Background(), other); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			// Had the group received SIGKILL, the job could not exit 0.
			release(t, fifo)
			got, log := st.wait(t, first)
			if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
			}
		})
	}
}

// release writes a line to the FIFO at path, for a reader that may not
// have opened it yet. The write end stays open until the test ends, so the
// line waits for the reader.
func release(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0) // does not block, unlike O_WRONLY
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
}

// mkfifo makes a FIFO in a fresh directory and returns its path.
func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKillOrphanedGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		envRunID string
		wantKill bool
	}{
		{name: "members carry the run ID", envRunID: "9", wantKill: true},
		{name: "members carry another run ID", envRunID: "10", wantKill: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// What a crash of lockstep leaves: Pdeathsig killed the leader,
			// the processes the job started live on in its group.
			// One of them writes a file once told to, if it is still alive.
			fifo, survived := mkfifo(t), filepath.Join(t.TempDir(), "survived")
			cmd := exec.Command("sh", "-c", `sh -c 'read line < "$FIFO" && touch "$SURVIVED"' & sleep 1000 & wait`)
			cmd.Env = append(os.Environ(), envRunID+"="+tc.envRunID, "FIFO="+fifo, "SURVIVED="+survived)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			leader, err := readStat(pgid)
			if err != nil {
				t.Fatal(err)
			}
			pids := waitForMembers(t, pgid, 3)
			t.Cleanup(func() { _ = killGroup(pgid) })
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			var orphans []int
			for _, pid := range pids {
				if pid != pgid {
					orphans = append(orphans, pid)
				}
			}

			e := newExecutor(t, Options{})
			r := newRun(9, "", run.Refs{})
			r.Status.Handle = handle{pgid: pgid, start: leader.start, boot: e.bootID}.String()
			if err := e.Kill(context.Background(), r); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			if tc.wantKill {
				waitGone(t, orphans)
				return
			}
			release(t, fifo)
			poll(t, "the process of another run to carry on", func() bool {
				_, err := os.Stat(survived)
				return err == nil
			})
		})
	}
}

func TestKillUnknown(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	tests := []struct {
		name    string
		handle  string
		wantErr bool
	}{
		{name: "no handle"},
		{name: "process that does not exist", handle: "pgid=999999999 start=1"},
		{name: "malformed handle", handle: "pid=12", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(1, "", run.Refs{})
			r.Status.Handle = tc.handle
			err := e.Kill(context.Background(), r)
			if (err != nil) != tc.wantErr {
				t.Errorf("Kill: got %v, want error %t", err, tc.wantErr)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	e := New(Options{WorkDir: filepath.Join(t.TempDir(), "work"), LogDir: t.TempDir()})
	st := start(t, e, newRun(1, groupScript, run.Refs{}))
	waitForLog(t, st.s.LogPath, "ready")
	pids := waitForMembers(t, mustHandle(t, st.s.Handle).pgid, 4)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Shutdown has waited for the execution's goroutine, notify included.
	if n := st.calls.Load(); n != 1 {
		t.Errorf("notify calls when Shutdown returned: got %d, want 1", n)
	}
	got, err := e.Status(context.Background(), st.r)
	if err != nil || !got.Done {
		t.Errorf("Status: got %+v, %v, want done", got, err)
	}
	waitGone(t, pids)
	if entries, _ := os.ReadDir(e.opts.WorkDir); len(entries) != 0 {
		t.Errorf("work directory: got %d entries, want none", len(entries))
	}

	_, err = e.Start(context.Background(), newRun(2, "true", run.Refs{}), nil)
	var infra *executor.InfraError
	if !errors.As(err, &infra) || infra.Reason != executor.ReasonStart {
		t.Errorf("Start after Shutdown: got %v, want reason %s", err, executor.ReasonStart)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	release := make(chan struct{})
	r := newRun(1, "true", run.Refs{})
	if _, err := e.Start(context.Background(), r, func() { <-release }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with a notify that blocks: got %v, want context.Canceled", err)
	}
	close(release)
}

func TestWorkspaceAndBuildOutput(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	e := newExecutor(t, Options{})
	tests := []struct {
		name      string
		script    string
		wantBuild string
		wantHave  bool
	}{
		{
			name: "build file and a read-only directory",
			script: `printf '  v1.2.3\n\n' > "$LOCKSTEP_BUILD_FILE"
mkdir -p ro/sub && touch ro/sub/f "$ARTIFACTS/a" && chmod 555 ro/sub ro`,
			wantBuild: "v1.2.3",
			wantHave:  true,
		},
		{name: "no build file", script: "touch made", wantHave: false},
		{name: "failing job", script: `echo v9 > "$LOCKSTEP_BUILD_FILE"; exit 1`, wantBuild: "v9", wantHave: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(run.ID(i+1), tc.script, run.Refs{Repo: "acme/widget", CloneURL: repo.dir})
			st := start(t, e, r)
			got, log := st.wait(t, e)
			if !got.Done || got.Infra != nil {
				t.Fatalf("outcome: got %+v\nlog:\n%s", got, log)
			}
			build, have := got.BuildOutput, got.HaveBuild
			if build != tc.wantBuild || have != tc.wantHave {
				t.Errorf("BuildOutput: got %q, %t, want %q, %t", build, have, tc.wantBuild, tc.wantHave)
			}
			entries, err := os.ReadDir(e.opts.WorkDir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("work directory after the end: got %v, want empty", entries)
			}
			if got, want := st.s.LogPath, filepath.Join(e.opts.LogDir, strconv.Itoa(i+1)+".log"); got != want {
				t.Errorf("log path: got %s, want %s", got, want)
			}
		})
	}
}

func TestStartTwice(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	r := newRun(1, "echo once", run.Refs{})
	st := start(t, e, r)
	again, err := e.Start(context.Background(), r, func() { t.Error("second notify called") })
	if err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if diff := cmp.Diff(st.s, again); diff != "" {
		t.Errorf("second Start (-want +got):\n%s", diff)
	}
	_, log := st.wait(t, e)
	if got := strings.Count(log, "once"); got != 1 {
		t.Errorf("runs of the script: got %d, want 1", got)
	}
	if err := e.Cleanup(context.Background(), r); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, err := e.Status(context.Background(), r); !errors.Is(err, executor.ErrUnknown) {
		t.Errorf("Status after Cleanup: got %v, want ErrUnknown", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	e := newExecutor(t, Options{})
	const n = 20
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			r := newRun(run.ID(i), `test -f base.txt
echo "$BUILD_ID" > "$ARTIFACTS/id"
echo "id=$(cat "$ARTIFACTS/id")"
exit $((BUILD_ID % 4))`, run.Refs{Repo: "acme/widget", CloneURL: repo.dir, BaseRef: "main"})
			notified := make(chan struct{})
			s, err := e.Start(context.Background(), r, func() { close(notified) })
			if err != nil {
				t.Errorf("run %d: Start: %v", i, err)
				return
			}
			r.Status.Handle = s.Handle
			// Status is read while other runs start and end.
			timeout := time.NewTimer(testTimeout)
			defer timeout.Stop()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for done := false; !done; {
				select {
				case <-notified:
					done = true
				case <-timeout.C:
					t.Errorf("run %d did not end", i)
					return
				case <-tick.C:
					if _, err := e.Status(context.Background(), r); err != nil {
						t.Errorf("run %d: Status: %v", i, err)
						return
					}
				}
			}
			got, err := e.Status(context.Background(), r)
			if err != nil {
				t.Errorf("run %d: Status: %v", i, err)
				return
			}
			if want := (executor.Outcome{Done: true, ExitCode: i % 4}); got != want {
				t.Errorf("run %d: got %+v, want %+v", i, got, want)
			}
			log, err := os.ReadFile(s.LogPath)
			if err != nil {
				t.Errorf("run %d: %v", i, err)
				return
			}
			if want := fmt.Sprintf("id=%d\n", i); !strings.HasSuffix(string(log), want) {
				t.Errorf("run %d: log %q, want it to end with %q", i, log, want)
			}
		})
	}
	wg.Wait()
}

func TestParseHandle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    handle
		wantErr bool
	}{
		{in: "pgid=12 start=345 boot=abc", want: handle{pgid: 12, start: 345, boot: "abc"}},
		{in: "pgid=12 start=345", want: handle{pgid: 12, start: 345}},
		{in: "start=345 pgid=12", want: handle{pgid: 12, start: 345}},
		{in: "pgid=12", wantErr: true},
		{in: "pgid=1 start=3", wantErr: true},
		{in: "pgid=-5 start=3", wantErr: true},
		{in: "pgid=x start=3", wantErr: true},
		{in: "pgid=12 start=3 color=red", wantErr: true},
		{in: "12 345", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseHandle(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseHandle(%q): got error %v, want error %t", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("parseHandle(%q): got %+v, want %+v", tc.in, got, tc.want)
		}
		if !tc.wantErr {
			if back, _ := parseHandle(got.String()); back != got {
				t.Errorf("round trip of %q: got %+v, want %+v", tc.in, back, got)
			}
		}
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	// stat returns a stat line whose fields 6 to 21 are their own numbers.
	stat := func(name string, state byte, pgrp int, start uint64) string {
		return fmt.Sprintf("100 (%s) %c 1 %d 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 %d 23 24", name, state, pgrp, start)
	}
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{name: "plain", in: stat("sleep", 'S', 5, 22222), want: procStat{state: 'S', pgrp: 5, start: 22222}},
		{name: "name with spaces and parentheses", in: stat("a) b (c", 'Z', 7, 9), want: procStat{state: 'Z', pgrp: 7, start: 9}},
		{name: "no name", in: "100 sleep S", wantErr: true},
		{name: "too short", in: "100 (sleep) S 1 5 6", wantErr: true},
		{name: "bad start", in: strings.Replace(stat("x", 'S', 5, 1), " 1 23", " x 23", 1), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %t", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadStatSelf(t *testing.T) {
	t.Parallel()
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.pgrp, syscall.Getpgrp(); got != want {
		t.Errorf("pgrp: got %d, want %d", got, want)
	}
	if st.start == 0 {
		t.Error("start time: got 0, want the process's start")
	}
}

// BenchmarkTrivialRun measures lockstep's overhead for one run: Start,
// the clone of a small repository (or none), a script that does nothing,
// the end and the workspace's removal.
func BenchmarkTrivialRun(b *testing.B) {
	repo := newRepo(b)
	for _, bc := range []struct {
		name string
		refs run.Refs
	}{
		{name: "clone", refs: run.Refs{Repo: "acme/widget", CloneURL: repo.dir, BaseRef: "main"}},
		{name: "no-clone", refs: run.Refs{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := New(Options{WorkDir: filepath.Join(b.TempDir(), "work"), LogDir: b.TempDir()})
			defer e.Shutdown(context.Background())
			id := run.ID(0)
			for b.Loop() {
				id++
				r := newRun(id, "true", bc.refs)
				done := make(chan struct{})
				if _, err := e.Start(context.Background(), r, func() { close(done) }); err != nil {
					b.Fatal(err)
				}
				<-done
				out, err := e.Status(context.Background(), r)
				if err != nil || out != (executor.Outcome{Done: true}) {
					b.Fatalf("Status: got %+v, %v", out, err)
				}
				if err := e.Cleanup(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
