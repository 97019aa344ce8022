package local

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// tracedGit returns a git command that logs its arguments, one call a
// line, to the returned file, then runs git.
func tracedGit(t *testing.T) (gitPath, trace string) {
	t.Helper()
	dir := t.TempDir()
	trace = filepath.Join(dir, "trace")
	gitPath = filepath.Join(dir, "git")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec git \"$@\"\n", trace)
	if err := os.WriteFile(gitPath, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return gitPath, trace
}

// calls returns the traced git calls that contain every one of words.
func calls(t *testing.T, trace string, words ...string) []string {
	t.Helper()
	data, err := os.ReadFile(trace)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		ok := line != ""
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func mirrorFetches(t *testing.T, trace, cacheDir string) []string {
	return calls(t, trace, "-C "+cacheDir, " fetch ")
}

// A burst of runs of one repository fetches it once into the mirror and
// clones it from there; a run created after a push fetches again and
// sees the push.
func TestGitCacheFetchesOncePerBurst(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	gitPath, trace := tracedGit(t)
	cacheDir := filepath.Join(t.TempDir(), "cache", "git")
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	// The clones are counted by a git that writes a trace under the
	// test's /tmp, which a sandboxed run does not share: the other cache
	// tests run sandboxed.
	e := newExecutor(t, Options{GitPath: gitPath, CacheDir: cacheDir, Clock: clk, Sandbox: SandboxOff})
	const script = `test -f base.txt
test -z "$(git status --porcelain)"
echo "head=$(git rev-parse HEAD) branch=$(git rev-parse --abbrev-ref HEAD) upstream=$(git rev-parse --abbrev-ref '@{u}') origin=$(git remote get-url origin)"
git fsck --no-dangling --connectivity-only
cat .git/objects/info/alternates`
	created := clk.Now().Add(-time.Second)
	const n = 30
	logs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := newRun(run.ID(i+1), script, run.Refs{Repo: "acme/widget", CloneURL: repo.dir, BaseRef: "main"})
			r.CreatedAt = created
			got, log := runToEnd(t, e, r)
			if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
				t.Errorf("run %d: outcome (-want +got):\n%s\nlog:\n%s", i+1, diff, log)
			}
			logs[i] = log
		})
	}
	wg.Wait()
	head := repo.git("rev-parse", "HEAD")
	mirrors, err := filepath.Glob(filepath.Join(cacheDir, "*.git"))
	if err != nil || len(mirrors) != 1 {
		t.Fatalf("mirrors %v (%v), want one", mirrors, err)
	}
	want := fmt.Sprintf("head=%s branch=main upstream=origin/main origin=%s\n%s\n", head, repo.dir, filepath.Join(mirrors[0], "objects"))
	for i, log := range logs {
		if !strings.HasSuffix(log, want) {
			t.Errorf("run %d: log %q, want it to end with %q", i+1, log, want)
		}
	}
	if got := mirrorFetches(t, trace, cacheDir); len(got) != 1 {
		t.Errorf("%d fetches into the mirror for %d runs, want 1: %q", len(got), n, got)
	}
	// Each workspace is seeded from the mirror: no clone, one checkout.
	if got := calls(t, trace, "clone"); len(got) != 0 {
		t.Errorf("%d clones, want none: %q", len(got), got)
	}
	if got := calls(t, trace, "checkout"); len(got) != n {
		t.Errorf("%d checkouts, want %d: %q", len(got), n, got)
	}

	// A push, then a run asked for after it: the mirror is fetched again.
	pushed := repo.commit("second.txt", "2\n")
	clk.SetTime(clk.Now().Add(time.Minute))
	r := newRun(n+1, script, run.Refs{Repo: "acme/widget", CloneURL: repo.dir, BaseRef: "main"})
	r.CreatedAt = clk.Now().Add(-time.Second)
	got, log := runToEnd(t, e, r)
	if got != (executor.Outcome{Done: true}) || !strings.Contains(log, "head="+pushed) {
		t.Errorf("run after the push: %+v, log %q; want success on %s", got, log, pushed)
	}
	if got := mirrorFetches(t, trace, cacheDir); len(got) != 2 {
		t.Errorf("%d fetches into the mirror, want 2", len(got))
	}
}

// snapshot lists every file of dir with its size and modification time.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[path] = fmt.Sprintf("%d %s", info.Size(), info.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Runs that name their commits fetch only commits the mirror lacks, merge
// a head found only under refs/pull, and leave the mirror untouched when
// it has everything.
func TestGitCachePinnedCommits(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	repo.git("checkout", "-q", "-b", "feature")
	head := repo.commit("head.txt", "head\n")
	repo.git("checkout", "-q", "main")
	base := repo.commit("other.txt", "other\n")
	repo.git("update-ref", "refs/pull/7/head", head)
	repo.git("branch", "-q", "-D", "feature")

	gitPath, trace := tracedGit(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	e := newExecutor(t, Options{GitPath: gitPath, CacheDir: cacheDir})
	refs := run.Refs{
		Repo: "acme/widget", CloneURL: "file://" + repo.dir, BaseRef: "main", BaseSHA: base,
		Pull: 7, HeadSHA: head, HeadRef: "feature",
	}
	const script = `test -f head.txt
test -f other.txt
git log -1 --format='parents=%P'`
	want := fmt.Sprintf("parents=%s %s\n", base, head)
	check := func(id run.ID) {
		t.Helper()
		r := newRun(id, script, refs)
		r.Spec.Type = run.Presubmit
		got, log := runToEnd(t, e, r)
		if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
			t.Fatalf("run %d: outcome (-want +got):\n%s\nlog:\n%s", id, diff, log)
		}
		if !strings.HasSuffix(log, want) || strings.Contains(log, "lockstep: fetched") {
			t.Errorf("run %d: log %q, want it to end with %q, with no fetch in the workspace", id, log, want)
		}
	}
	check(1)
	fetches := mirrorFetches(t, trace, cacheDir)
	if len(fetches) == 0 {
		t.Fatalf("no fetch into the mirror")
	}
	before := snapshot(t, cacheDir)
	// The repository goes away: runs of commits the mirror has need
	// nothing from it.
	if err := os.Rename(repo.dir, repo.dir+".gone"); err != nil {
		t.Fatal(err)
	}
	for id := run.ID(2); id <= 5; id++ {
		check(id)
	}
	if got := mirrorFetches(t, trace, cacheDir); len(got) != len(fetches) {
		t.Errorf("fetches into the mirror went from %d to %d for commits it had", len(fetches), len(got))
	}
	if diff := cmp.Diff(before, snapshot(t, cacheDir)); diff != "" {
		t.Errorf("runs that needed nothing changed the mirror (-before +after):\n%s", diff)
	}
}

// Two executors (two lockstep processes) sharing a cache fetch a commit
// once between them.
func TestGitCacheSharedAcrossProcesses(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	sha := repo.commit("x.txt", "x\n")
	gitPath, trace := tracedGit(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	a := newExecutor(t, Options{GitPath: gitPath, CacheDir: cacheDir})
	b := newExecutor(t, Options{GitPath: gitPath, CacheDir: cacheDir})
	var wg sync.WaitGroup
	for i := range 16 {
		e := a
		if i%2 == 1 {
			e = b
		}
		wg.Go(func() {
			r := newRun(run.ID(i+1), "test -f x.txt", run.Refs{Repo: "acme/widget", CloneURL: repo.dir, BaseRef: "main", BaseSHA: sha})
			if got, log := runToEnd(t, e, r); got != (executor.Outcome{Done: true}) {
				t.Errorf("run %d: %+v\n%s", i+1, got, log)
			}
		})
	}
	wg.Wait()
	if got := mirrorFetches(t, trace, cacheDir); len(got) != 1 {
		t.Errorf("%d fetches into the mirror, want 1: %q", len(got), got)
	}
}

// A repository the mirror cannot fetch is cloned from itself, and fails
// the way it fails without a cache.
func TestGitCacheUnreachable(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{CacheDir: filepath.Join(t.TempDir(), "cache")})
	r := newRun(1, "true", run.Refs{Repo: "acme/widget", CloneURL: filepath.Join(t.TempDir(), "missing"), BaseRef: "main"})
	got, log := runToEnd(t, e, r)
	if got.Infra == nil || got.Infra.Reason != executor.ReasonClone {
		t.Errorf("outcome %+v, want CloneFailed\n%s", got, log)
	}
}

// A branch whose name lockstep does not write into a seeded repository
// itself (git allows more than safeRefName does) is still checked out:
// the workspace clones it from the repository.
func TestGitCacheUnusualBranchClones(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	const branch = "fix-ü@x"
	repo.git("branch", branch)
	if safeRefName(branch) {
		t.Fatalf("safeRefName(%q) = true; the test needs a name it refuses", branch)
	}
	e := newExecutor(t, Options{CacheDir: filepath.Join(t.TempDir(), "cache", "git")})
	r := newRun(1, `echo "branch=$(git rev-parse --abbrev-ref HEAD)"; test -z "$(git status --porcelain)"`,
		run.Refs{Repo: "acme/widget", CloneURL: repo.dir, BaseRef: branch})
	got, log := runToEnd(t, e, r)
	if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
		t.Fatalf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
	}
	if want := "branch=" + branch + "\n"; !strings.HasSuffix(log, want) {
		t.Errorf("log %q, want it to end with %q", log, want)
	}
}
