package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// waitTimeout bounds every wait for the watcher; it is only reached when
// a test fails.
const waitTimeout = 20 * time.Second

// logRecorder is a slog.Handler keeping every record, with its
// attributes flattened to text, and signalling each one.
type logRecorder struct {
	mu      sync.Mutex
	records []string // mu guards records
	notify  chan struct{}
}

func newLogRecorder() *logRecorder {
	return &logRecorder{notify: make(chan struct{}, 1)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value.Any())
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, b.String())
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
	return nil
}

// waitFor waits until a record contains every one of parts, and returns it.
func (h *logRecorder) waitFor(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.mu.Lock()
		for _, r := range h.records {
			if containsAll(r, parts) {
				h.mu.Unlock()
				return r
			}
		}
		h.mu.Unlock()
		select {
		case <-h.notify:
		case <-deadline:
			h.mu.Lock()
			defer h.mu.Unlock()
			t.Fatalf("no log record with %q; got:\n%s", parts, strings.Join(h.records, "\n"))
		}
	}
}

func (h *logRecorder) count(parts ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if containsAll(r, parts) {
			n++
		}
	}
	return n
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// watchFixture runs a Watcher on a configuration file in a temporary
// directory.
type watchFixture struct {
	path    string
	getter  *Getter
	logs    *logRecorder
	changes chan *Config
	done    chan error
	cancel  context.CancelFunc
}

// startWatch writes initial to a file, loads it into a Getter and starts
// a Watcher configured by configure on it; the test's cleanup stops it.
func startWatch(t *testing.T, initial string, configure func(*Watcher)) *watchFixture {
	t.Helper()
	dir := t.TempDir()
	f := &watchFixture{
		path:    filepath.Join(dir, "lockstep.yaml"),
		logs:    newLogRecorder(),
		changes: make(chan *Config, 100),
		done:    make(chan error, 1),
	}
	writeFile(t, f.path, initial)
	c, err := Load(f.path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	f.startWith(t, c, configure)
	return f
}

func (f *watchFixture) startWith(t *testing.T, c *Config, configure func(*Watcher)) {
	t.Helper()
	f.getter = NewGetter(c)
	f.getter.OnChange(func(c *Config) { f.changes <- c })
	w := &Watcher{Path: f.path, Getter: f.getter, Logger: slog.New(f.logs)}
	if configure != nil {
		configure(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("Watcher.Run returned %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Watcher.Run did not return after cancel")
		}
	})
	f.logs.waitFor(t, "watching config")
}

// waitForJob waits until the Getter's configuration has the job
// acme/widget name, running run.
func (f *watchFixture) waitForJob(t *testing.T, name, run string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		if j, ok := f.getter.Get().Job("acme/widget", name); ok && j.Run == run {
			return
		}
		select {
		case <-f.changes:
		case <-deadline:
			t.Fatalf("the configuration never got job %s running %q", name, run)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile replaces path atomically, by renaming a new file over it.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func jobConfig(name, run string) string {
	return fmt.Sprintf("repos:\n  acme/widget:\n    presubmits:\n      - name: %s\n        run: %s\n", name, run)
}

func TestWatchReloads(t *testing.T) {
	t.Parallel()
	f := startWatch(t, jobConfig("unit", "make v1"), nil)

	writeFile(t, f.path, jobConfig("unit", "make v2"))
	f.waitForJob(t, "unit", "make v2")
	f.logs.waitFor(t, "INFO config reloaded")

	// A broken file is logged with every problem and changes nothing.
	writeFile(t, f.path, `repos:
  acme/widget:
    presubmits:
      - name: unit
        run: make v3
        timeout: 3x
        colour: blue
`)
	rec := f.logs.waitFor(t, "ERROR config reload failed", `invalid duration "3x"`)
	for _, want := range []string{
		f.path + `:6:9: repos["acme/widget"].presubmits[0].timeout: invalid duration "3x"`,
		f.path + `:7:9: repos["acme/widget"].presubmits[0].colour: unknown field "colour"`,
	} {
		if !strings.Contains(rec, want) {
			t.Errorf("error log %q lacks %q", rec, want)
		}
	}
	if j, _ := f.getter.Get().Job("acme/widget", "unit"); j.Run != "make v2" {
		t.Errorf("after a broken file the job runs %q, want the previous %q", j.Run, "make v2")
	}

	writeFile(t, f.path, jobConfig("unit", "make v4"))
	f.waitForJob(t, "unit", "make v4")

	// Replacing the file by renaming another over it, as editors do.
	replaceFile(t, f.path, jobConfig("unit", "make v5"))
	f.waitForJob(t, "unit", "make v5")

	// An empty file (what a file being rewritten looks like) is refused.
	writeFile(t, f.path, "")
	f.logs.waitFor(t, "ERROR config reload failed", "the file is empty")
	writeFile(t, f.path, jobConfig("unit", "make v6"))
	f.waitForJob(t, "unit", "make v6")
}

func TestWatchBrokenFileLoggedOnce(t *testing.T) {
	t.Parallel()
	f := startWatch(t, jobConfig("unit", "make v1"), nil)
	replaceFile(t, f.path, jobConfig("unit", "make v2")+"        timeout: 3x\n")
	f.logs.waitFor(t, "ERROR config reload failed", "3x")
	// Touching the file without changing it logs nothing new; a later
	// valid change proves the watcher saw the touch first.
	now := time.Now()
	if err := os.Chtimes(f.path, now, now); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, f.path, jobConfig("unit", "make v3"))
	f.waitForJob(t, "unit", "make v3")
	if n := f.logs.count("ERROR config reload failed"); n != 1 {
		t.Errorf("the broken file was logged %d times, want 1", n)
	}
}

// TestWatchConfigMapSwap replaces the file the way a Kubernetes ConfigMap
// volume does: the file is a symbolic link through ..data, a link to a
// timestamped directory, and an update swaps ..data atomically.
func TestWatchConfigMapSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	publish := func(version, content string) {
		t.Helper()
		ts := filepath.Join(dir, "..2026_"+version)
		if err := os.Mkdir(ts, 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(ts, "lockstep.yaml"), content)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("a", jobConfig("unit", "make v1"))
	path := filepath.Join(dir, "lockstep.yaml")
	if err := os.Symlink(filepath.Join("..data", "lockstep.yaml"), path); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &watchFixture{path: path, logs: newLogRecorder(), changes: make(chan *Config, 100), done: make(chan error, 1)}
	f.startWith(t, c, nil)

	publish("b", jobConfig("unit", "make v2"))
	if err := os.RemoveAll(filepath.Join(dir, "..2026_a")); err != nil {
		t.Fatal(err)
	}
	f.waitForJob(t, "unit", "make v2")

	publish("c", jobConfig("unit", "make v3"))
	if err := os.RemoveAll(filepath.Join(dir, "..2026_b")); err != nil {
		t.Fatal(err)
	}
	f.waitForJob(t, "unit", "make v3")
}

// TestWatchSymlinkTarget edits the target of a symbolic link that lives in
// another directory.
func TestWatchSymlinkTarget(t *testing.T) {
	t.Parallel()
	target := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, target, jobConfig("unit", "make v1"))
	path := filepath.Join(t.TempDir(), "lockstep.yaml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &watchFixture{path: path, logs: newLogRecorder(), changes: make(chan *Config, 100), done: make(chan error, 1)}
	f.startWith(t, c, nil)
	writeFile(t, target, jobConfig("unit", "make v2"))
	f.waitForJob(t, "unit", "make v2")
}

func TestWatchCatchesUpAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := &watchFixture{path: filepath.Join(dir, "lockstep.yaml"), logs: newLogRecorder(),
		changes: make(chan *Config, 100), done: make(chan error, 1)}
	writeFile(t, f.path, jobConfig("unit", "make v1"))
	f.startWith(t, Default(), nil) // the Getter does not hold the file's config yet
	f.waitForJob(t, "unit", "make v1")
}

func TestWatchUnchangedFileIsNotReloaded(t *testing.T) {
	t.Parallel()
	f := startWatch(t, jobConfig("unit", "make v1"), nil)
	// Replacing the file by the same content, then a change to another
	// file in the directory, reload nothing; a real change afterwards is
	// the first reload.
	replaceFile(t, f.path, jobConfig("unit", "make v1"))
	writeFile(t, filepath.Join(filepath.Dir(f.path), "other.txt"), "x")
	replaceFile(t, f.path, jobConfig("unit", "make v2"))
	f.waitForJob(t, "unit", "make v2")
	f.logs.waitFor(t, "config reloaded")
	if n := f.logs.count("config reloaded"); n != 1 {
		t.Errorf("%d reloads logged, want 1", n)
	}
}

func TestWatchDelay(t *testing.T) {
	t.Parallel()
	const delay = time.Second
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f := startWatch(t, jobConfig("unit", "make v1"), func(w *Watcher) {
		w.Clock = clk
		w.Delay = delay
	})
	writeFile(t, f.path, jobConfig("unit", "make v2"))

	// The change arms the timer; until it fires, nothing is reloaded.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !clk.HasWaiters() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the watcher never armed its timer")
		}
	}
	if j, _ := f.getter.Get().Job("acme/widget", "unit"); j.Run != "make v1" {
		t.Fatalf("reloaded before the delay: job runs %q", j.Run)
	}

	// Step the clock whenever a timer waits (each event re-arms it) until
	// the new configuration arrives.
	for {
		if j, _ := f.getter.Get().Job("acme/widget", "unit"); j.Run == "make v2" {
			break
		}
		if clk.HasWaiters() {
			clk.Step(delay)
		}
		select {
		case <-f.changes:
		case <-tick.C:
		case <-deadline:
			t.Fatal("the configuration was not reloaded after the delay")
		}
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	t.Parallel()
	g := NewGetter(Default())
	err := Watch(context.Background(), filepath.Join(t.TempDir(), "no", "such", "lockstep.yaml"), g, nil)
	if err == nil {
		t.Fatalf("Watch on a missing directory returned nil, want an error")
	}
}
