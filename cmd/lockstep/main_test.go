package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary act as the lockstep command, so tests can
// run it as a separate process (and kill it) without building it first.
func TestMain(m *testing.M) {
	if os.Getenv("LOCKSTEP_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lockstepCmd returns a command running lockstep with args.
func lockstepCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LOCKSTEP_TEST_AS_MAIN=1")
	return cmd
}

// runLockstep runs lockstep in-process and returns its output and error.
func runLockstep(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// gitRepo makes a repository with one commit and returns its path.
func gitRepo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "README"), "hello\n")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

func TestRunJob(t *testing.T) {
	t.Parallel()
	repo := gitRepo(t)
	cfg := writeFile(t, filepath.Join(t.TempDir(), "lockstep.yaml"), fmt.Sprintf(`
repos:
  acme/widget:
    clone_url: %s
    presubmits:
      - name: ok
        always_run: true
        run: cat README; echo "job=$JOB_NAME sha=$PULL_BASE_SHA"
      - name: exits3
        always_run: true
        run: echo failing; exit 3
`, repo))
	stdout, stderr, err := runLockstep(t, "run", "ok", "--config", cfg)
	if err != nil {
		t.Fatalf("lockstep run ok: %v\nstderr: %s", err, stderr)
	}
	if !strings.Contains(stdout, "hello") || !regexp.MustCompile(`job=ok sha=[0-9a-f]{40}`).MatchString(stdout) {
		t.Errorf("log not streamed to stdout; got:\n%s", stdout)
	}
	if !strings.Contains(stderr, "ok success") {
		t.Errorf("stderr does not report success:\n%s", stderr)
	}

	stdout, stderr, err = runLockstep(t, "run", "--config", cfg, "exits3")
	if err == nil {
		t.Fatal("lockstep run exits3 succeeded, want a non-zero exit")
	}
	if !strings.Contains(stdout, "failing") || !strings.Contains(stderr, "exited with status 3") {
		t.Errorf("stdout %q, stderr %q: want the log and the exit status", stdout, stderr)
	}

	_, _, err = runLockstep(t, "run", "--config", cfg, "nosuchjob")
	if err == nil || !strings.Contains(err.Error(), "nosuchjob") {
		t.Errorf("unknown job: err = %v, want one naming the job", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	cfg := writeFile(t, filepath.Join(t.TempDir(), "lockstep.yaml"), `
repos:
  acme/widget:
    presubmits:
      - name: unit
        run: go test ./...
        timeout: 3x
      - name: unit
        run: make
    periodics:
      - name: nightly
        run: make e2e
`)
	_, stderr, err := runLockstep(t, "validate", "--config", cfg)
	if err == nil {
		t.Fatal("validate succeeded on a broken config")
	}
	if code, ok := err.(exitError); !ok || code != 1 {
		t.Errorf("err = %v, want exit status 1", err)
	}
	for _, want := range []string{
		`repos["acme/widget"].presubmits[0].timeout`,
		`repos["acme/widget"].presubmits[1].name`,
		`repos["acme/widget"].periodics[0]`,
		": 3 problems\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr)
		}
	}

	good := writeFile(t, filepath.Join(t.TempDir(), "lockstep.yaml"), "repos: {}\n")
	if stdout, stderr, err := runLockstep(t, "validate", "--config", good); err != nil || !strings.Contains(stdout, "valid") {
		t.Errorf("valid config: err %v, stdout %q, stderr %q", err, stdout, stderr)
	}
}

// TestValidatePluralises: counts are written the way one says them.
func TestValidatePluralises(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct{ yaml, want string }{
		{"repos: {}\n", "(0 repositories, 0 jobs)"},
		{"repos:\n  acme/widget: {presubmits: [{name: unit, run: 'true'}]}\n", "(1 repository, 1 job)"},
		{"repos:\n  acme/widget: {presubmits: [{name: unit, run: 'true'}, {name: lint, run: 'true'}]}\n  acme/gadget: {}\n", "(2 repositories, 2 jobs)"},
	}
	for i, tt := range tests {
		cfg := writeFile(t, filepath.Join(dir, fmt.Sprintf("%d.yaml", i)), tt.yaml)
		stdout, stderr, err := runLockstep(t, "validate", "--config", cfg)
		if err != nil || !strings.HasSuffix(stdout, ": valid "+tt.want+"\n") {
			t.Errorf("validate %q: err %v, stdout %q, stderr %q; want %s", tt.yaml, err, stdout, stderr, tt.want)
		}
	}
	one := writeFile(t, filepath.Join(dir, "one.yaml"), "repos:\n  acme/widget: {presubmits: [{name: unit}]}\n")
	if _, stderr, err := runLockstep(t, "validate", "--config", one); err == nil || !strings.HasSuffix(stderr, ": 1 problem\n") {
		t.Errorf("validate with one problem: err %v, stderr %q, want it to end \": 1 problem\"", err, stderr)
	}
}

// TestMissingFilesFoundEarly: a file the configuration names that is not
// there is reported by validate and stops serve from starting, with the
// field's path, instead of every webhook being refused later.
func TestMissingFilesFoundEarly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), `github:
  token_file: token
  webhook_secret_file: hook-secret
`)
	want := []string{
		cfg + ":2:3: github.token_file: file " + filepath.Join(dir, "token") + " does not exist",
		cfg + ":3:3: github.webhook_secret_file: file " + filepath.Join(dir, "hook-secret") + " does not exist",
	}
	_, stderr, err := runLockstep(t, "validate", "--config", cfg)
	if code, ok := err.(exitError); !ok || code != 1 {
		t.Errorf("validate: err = %v, want exit status 1", err)
	}
	for _, w := range append(want, ": 2 problems") {
		if !strings.Contains(stderr, w) {
			t.Errorf("validate output lacks %q:\n%s", w, stderr)
		}
	}

	_, stderr, err = runLockstep(t, "serve", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0")
	if err == nil {
		t.Fatal("serve started with missing files")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("serve error lacks %q:\n%v\n%s", w, err, stderr)
		}
	}

	// A secret file removed after the start: deliveries are refused,
	// saying the secret cannot be read rather than that none is
	// configured.
	secret := writeFile(t, filepath.Join(dir, "hook-secret"), "s3cret\n")
	writeFile(t, filepath.Join(dir, "token"), "t0ken\n")
	srv := startServer(t, cfg, filepath.Join(dir, "data"))
	copied := writeFile(t, filepath.Join(dir, "copy"), "s3cret\n")
	if err := os.Remove(secret); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runLockstep(t, "hook", "send", "--url", "http://"+srv.addr+"/hook", "--secret-file", copied, "--event", "ping", cfg)
	if want := "cannot read its webhook secret: github.webhook_secret_file: open " + secret; err == nil || !strings.Contains(stdout, "500") || !strings.Contains(stdout, want) {
		t.Errorf("delivery after the secret file was removed: err %v, stdout %q; want a 500 saying %q", err, stdout, want)
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	_, stderr, err := runLockstep(t, "frobnicate")
	if err == nil || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("err %v, stderr %q", err, stderr)
	}
}

// server is a lockstep serve process started by a test.
type server struct {
	cmd  *exec.Cmd
	addr string
	done chan error

	mu  sync.Mutex // mu guards log
	log bytes.Buffer
}

// Log returns what the server has logged so far.
func (s *server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func startServer(t testing.TB, cfg, dataDir string) *server {
	t.Helper()
	return startServerArgs(t, cfg, dataDir)
}

// startServerArgs starts lockstep serve with more flags.
func startServerArgs(t testing.TB, cfg, dataDir string, args ...string) *server {
	t.Helper()
	return startServerCmd(t, lockstepCmd(context.Background(), append([]string{"serve", "--config", cfg, "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, args...)...))
}

// startServerCmd starts cmd, a lockstep serve, and returns once it listens
// (as its log says); the test's end kills it.
func startServerCmd(t testing.TB, cmd *exec.Cmd) *server {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, done: make(chan error, 1)}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`addr=http://(\S+)`)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		s.done <- cmd.Wait()
	}()
	select {
	case s.addr = <-addrCh:
	case err := <-s.done:
		t.Fatalf("lockstep serve exited early: %v", err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("lockstep serve did not start listening")
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
		}
	})
	return s
}

// TestExampleUnitJob runs the README's example: lockstep's own unit job
// (go build and go vet of a fresh clone of this repository).
func TestExampleUnitJob(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runLockstep(t, "run", "unit", "--config", filepath.Join("..", "..", "examples", "lockstep.yaml"))
	if err != nil {
		t.Fatalf("lockstep run unit: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if !strings.Contains(stderr, "unit success") {
		t.Errorf("stderr does not report success:\n%s", stderr)
	}
}
