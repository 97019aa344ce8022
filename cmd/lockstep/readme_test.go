package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

// The README's offline trial is the text between these markers.
const (
	offlineBegin = "<!-- offline-trial:"
	offlineEnd   = "<!-- end offline-trial -->"
	goRun        = "go run ./cmd/lockstep "
)

// readmeCommands returns the shell commands of the ```sh blocks of the
// README between the offline-trial markers, one per command: comments
// and blank lines dropped, continued lines joined.
func readmeCommands(t *testing.T, readme string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, offlineBegin)
	section, _, ok2 := strings.Cut(rest, offlineEnd)
	if !ok || !ok2 {
		t.Fatalf("README.md has no %q … %q section", offlineBegin, offlineEnd)
	}
	var cmds []string
	var cur strings.Builder
	inBlock := false
	for _, line := range strings.Split(section, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "```sh":
			inBlock = true
			continue
		case trimmed == "```":
			inBlock = false
			continue
		case !inBlock || trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		}
		if c, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(c)
			continue
		}
		cur.WriteString(trimmed)
		cmds = append(cmds, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("README's offline trial ends in a continued line: %q", cur.String())
	}
	return cmds
}

// TestReadmeOfflineTrial runs the README's "Trying it without GitHub"
// commands as written, from a folder holding only a copy of
// examples/offline (so the example needs nothing else from the
// repository), with two changes a test needs: `go run ./cmd/lockstep` is
// this test binary, and lockstep listens on a free port rather than 8080
// (serve gets --listen, hook send the matching --url). The runs the
// deliveries create must clone the example's repository and succeed.
func TestReadmeOfflineTrial(t *testing.T) {
	t.Parallel()
	root := testfixtures.ModuleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := readmeCommands(t, string(readme))
	work := t.TempDir()
	copyDir(t, filepath.Join(root, "examples", "offline"), filepath.Join(work, "examples", "offline"))

	env := append(os.Environ(), "LOCKSTEP="+os.Args[0], "LOCKSTEP_TEST_AS_MAIN=1")
	shell := func(command string) *exec.Cmd {
		cmd := exec.Command("sh", "-c", command)
		cmd.Dir = work
		cmd.Env = env
		return cmd
	}
	var srv *server
	var sent []string
	for _, c := range cmds {
		args, isLockstep := strings.CutPrefix(c, goRun)
		switch {
		case isLockstep && strings.HasPrefix(args, "serve "):
			srv = startServerCmd(t, shell(`exec "$LOCKSTEP" `+args+" --listen 127.0.0.1:0"))
			continue
		case isLockstep && strings.HasPrefix(args, "hook send "):
			if srv == nil {
				t.Fatalf("README sends %q before serve is started", c)
			}
			args += " --url http://" + srv.addr + "/hook"
			sent = append(sent, c)
		case isLockstep:
			t.Fatalf("README's offline trial runs %q, which this test does not know how to check", c)
		}
		command := c
		if isLockstep {
			command = `"$LOCKSTEP" ` + args
		}
		out, err := shell(command).CombinedOutput()
		if err != nil {
			t.Fatalf("README command %q: %v\n%s", c, err, out)
		}
		if isLockstep && !strings.Contains(string(out), ": 202 Accepted") {
			t.Errorf("README command %q: want the delivery accepted, got:\n%s", c, out)
		}
	}
	if srv == nil || len(sent) != 2 {
		t.Fatalf("README's offline trial starts serve %v and sends %d deliveries, want serve and two", srv != nil, len(sent))
	}

	type apiRun struct {
		ID     int64  `json:"id"`
		Job    string `json:"job"`
		PR     int    `json:"pr"`
		SHA    string `json:"sha"`
		State  string `json:"state"`
		Reason string `json:"reason"`
		Cause  string `json:"cause"`
	}
	var runs []apiRun
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lockstep serve's log:\n%s", srv.Log())
		}
	})
	pollUntil(t, "the README's two runs to succeed", func() bool {
		resp, err := http.Get("http://" + srv.addr + "/api/v1/runs?repo=acme/widget")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page struct{ Runs []apiRun }
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			t.Fatal(err)
		}
		runs = page.Runs
		done := 0
		for _, r := range runs {
			switch r.State {
			case "failure", "error", "aborted":
				t.Fatalf("run %d (%s) ended %s %s:\n%s", r.ID, r.Job, r.State, r.Reason, runLog(t, srv.addr, r.ID))
			case "success":
				done++
			}
		}
		return len(runs) >= 2 && done == len(runs)
	})
	fix := gitOut(t, filepath.Join(work, "examples", "offline", "widget"), "rev-parse", "fix")
	var got []string
	for _, r := range runs {
		if r.PR != 1 || r.SHA != fix {
			t.Errorf("run %+v, want one of pull request 1 at fix (%s)", r, fix)
		}
		got = append(got, r.Job+"/"+r.Cause)
		if log := runLog(t, srv.addr, r.ID); !strings.Contains(log, "lockstep: merging "+fix) {
			t.Errorf("run %d (%s) did not merge the head %s:\n%s", r.ID, r.Job, fix, log)
		}
	}
	slices.Sort(got)
	if want := []string{"lint/command", "unit/event"}; !slices.Equal(got, want) {
		t.Errorf("runs %v, want %v", got, want)
	}
}

// TestReadmeCommands: the README's offline-trial commands are parsed the
// way a shell reads them.
func TestReadmeCommands(t *testing.T) {
	t.Parallel()
	got := readmeCommands(t, "x\n<!-- offline-trial: y -->\n```sh\n# c\necho a \\\n  b\n\n```\n\n```sh\necho c\n```\n<!-- end offline-trial -->\n```sh\necho d\n```\n")
	if want := []string{"echo a b", "echo c"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func runLog(t *testing.T, addr string, id int64) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/runs/%d/log", addr, id))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v in %s: %v", args, dir, err)
	}
	return strings.TrimSpace(string(out))
}

// copyDir copies the files of the repository's folder src to dst,
// leaving out what the example makes when it is tried (its repository,
// lockstep's data).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() && (rel == "widget" || rel == "lockstep-data") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}
