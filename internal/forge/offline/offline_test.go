package offline_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/forge/offline"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// TestGetPull: the offline forge knows the pull requests the store
// recorded from webhooks, and says what to do about the others.
func TestGetPull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	updated := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := st.PutPullState(ctx, &store.PullState{
		Repo: "acme/widget", Number: 2, State: "open", Author: "alice",
		HeadSHA: "h", HeadRef: "fix", BaseRef: "main", BaseSHA: "b", Labels: []string{"ok-to-test"}, UpdatedAt: updated,
	}); err != nil {
		t.Fatal(err)
	}

	f := &offline.Forge{Pulls: st}
	got, err := f.GetPull(ctx, "acme/widget", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := &forge.Pull{Repo: "acme/widget", Number: 2, State: "open", Author: "alice",
		HeadSHA: "h", HeadRef: "fix", BaseRef: "main", BaseSHA: "b", Labels: []string{"ok-to-test"}, UpdatedAt: updated}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetPull mismatch (-want +got):\n%s", diff)
	}

	for name, f := range map[string]*offline.Forge{"unknown pull": {Pulls: st}, "no store": {}} {
		_, err := f.GetPull(ctx, "acme/widget", 3)
		if !errors.Is(err, forge.ErrNotFound) || !strings.Contains(err.Error(), "acme/widget#3") {
			t.Errorf("%s: err = %v, want ErrNotFound naming acme/widget#3", name, err)
		}
	}
	if _, err := (&offline.Forge{Pulls: st}).GetPull(ctx, "acme/widget", 3); !strings.Contains(err.Error(), "send one first") {
		t.Errorf("unknown pull: err = %v, want it to say to send its pull_request webhook", err)
	}
}

// TestListPullFiles: with a local clone URL, the changed files of a
// known pull request come from git, as GitHub lists them: against the
// merge base (a later change on the base is not the pull request's), both
// paths of a rename. Without one, they are unknown.
func TestListPullFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	write("README", "hello\n")
	write("old.txt", "a file to rename\n")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	git("checkout", "-q", "-b", "fix")
	write("docs/guide.md", "guide\n")
	git("mv", "old.txt", "new.txt")
	git("add", ".")
	git("commit", "-q", "-m", "fix")
	head := git("rev-parse", "HEAD")
	git("checkout", "-q", "main")
	write("main-only.txt", "later, on main\n")
	git("add", ".")
	git("commit", "-q", "-m", "later")
	base := git("rev-parse", "HEAD")

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.PutPullState(ctx, &store.PullState{Repo: "acme/widget", Number: 2, State: "open", HeadSHA: head, BaseSHA: base, BaseRef: "main"}); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{dir, "file://" + dir} {
		f := &offline.Forge{Pulls: st, CloneURL: func(string) string { return url }}
		got, err := f.ListPullFiles(ctx, "acme/widget", 2)
		if err != nil {
			t.Fatalf("clone URL %s: %v", url, err)
		}
		if diff := cmp.Diff([]string{"docs/guide.md", "new.txt", "old.txt"}, got); diff != "" {
			t.Errorf("clone URL %s: files mismatch (-want +got):\n%s", url, diff)
		}
	}
	for _, f := range []*offline.Forge{
		{Pulls: st},
		{Pulls: st, CloneURL: func(repo string) string { return "https://github.com/" + repo + ".git" }},
	} {
		if _, err := f.ListPullFiles(ctx, "acme/widget", 2); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("no local repository: err = %v, want ErrNotFound", err)
		}
	}
}
