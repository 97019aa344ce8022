package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/storetest"
)

func openTest(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs every suite with a poll interval longer than the
// suite, so that its watchers depend on being woken by the writes.
func TestConformance(t *testing.T) {
	storetest.RunAll(t, func(t *testing.T, clk clock.Clock) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "lockstep.db"), WithPollInterval(time.Hour), WithClock(clk))
	})
}

func testRun(key string) *run.Run {
	return &run.Run{Spec: run.Spec{
		Job:        "unit",
		Type:       run.Presubmit,
		Refs:       run.Refs{Repo: "acme/widgets", Pull: 1, BaseSHA: "b0", HeadSHA: "h1"},
		Script:     "make test",
		TriggerKey: key,
	}}
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "lockstep.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	created, err := s.CreateRun(ctx, testRun("reopen/1"))
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	next := *created
	next.Status.State = run.Scheduled
	written, err := s.UpdateRunStatus(ctx, &next)
	if err != nil {
		t.Fatalf("UpdateRunStatus: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTest(t, path)
	got, err := s.GetRun(ctx, written.ID)
	if err != nil {
		t.Fatalf("GetRun after reopening: %v", err)
	}
	if diff := cmp.Diff(written, got); diff != "" {
		t.Errorf("run after reopening (-written +got):\n%s", diff)
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	if rev != written.ResourceVersion {
		t.Errorf("Revision after reopening: got %d, want %d", rev, written.ResourceVersion)
	}
	second, err := s.CreateRun(ctx, testRun("reopen/2"))
	if err != nil {
		t.Fatalf("CreateRun after reopening: %v", err)
	}
	if second.ResourceVersion <= written.ResourceVersion || second.ID <= written.ID {
		t.Errorf("run created after reopening: ID %d, version %d; want both above %d, %d", second.ID, second.ResourceVersion, written.ID, written.ResourceVersion)
	}
	if _, err := s.CreateRun(ctx, testRun("reopen/1")); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateRun with a key from before reopening: got %v, want %v", err, store.ErrAlreadyExists)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lockstep.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	future := len(migrations()) + 1
	if _, err := s.write.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, future)); err != nil {
		t.Fatalf("set user_version: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatalf("Open of a file with schema version %d: got nil error, want one", future)
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open error: got %q, want it to say the schema is newer", err)
	}
}

func TestSchemaVersion(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"))
	var version int
	if err := s.read.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		t.Fatalf("read user_version: %v", err)
	}
	if want := len(migrations()); version != want {
		t.Errorf("user_version: got %d, want %d", version, want)
	}
}

func TestPragmas(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"), WithBusyTimeout(3*time.Second))
	tests := []struct {
		pragma    string
		wantWrite string
		wantRead  string
	}{
		{"journal_mode", "wal", "wal"},
		{"synchronous", "1", "1"}, // NORMAL
		{"foreign_keys", "1", "1"},
		{"busy_timeout", "3000", "3000"},
		{"query_only", "0", "1"},
		{"wal_autocheckpoint", "0", "1000"},
		{"journal_size_limit", fmt.Sprint(walSizeLimit), "-1"},
		{"temp_store", "2", "0"}, // MEMORY, DEFAULT
	}
	for _, tt := range tests {
		t.Run(tt.pragma, func(t *testing.T) {
			for _, c := range []struct {
				name string
				get  func() (string, error)
				want string
			}{
				{"write", func() (v string, err error) {
					return v, s.write.QueryRow(`PRAGMA ` + tt.pragma).Scan(&v)
				}, tt.wantWrite},
				{"read", func() (v string, err error) {
					return v, s.read.QueryRow(`PRAGMA ` + tt.pragma).Scan(&v)
				}, tt.wantRead},
			} {
				got, err := c.get()
				if err != nil {
					t.Fatalf("%s connection: %v", c.name, err)
				}
				if got != c.want {
					t.Errorf("%s connection: got %s, want %s", c.name, got, c.want)
				}
			}
		})
	}
}

func TestReadPoolCannotWrite(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"))
	if _, err := s.read.Exec(`UPDATE revision SET rev = rev + 1`); err == nil {
		t.Errorf("write through the read pool: got nil error, want one")
	}
}

func TestPathNeedingEscapes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "odd ?name#%20.db")
	s := openTest(t, path)
	if _, err := s.CreateRun(t.Context(), testRun("escaped")); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("store file: %v", err)
	}
}

func TestInvalidMessages(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"))
	r := testRun("k")
	r.Spec.Job = ""
	r.Spec.Type = ""
	r.Spec.TriggerKey = ""
	_, err := s.CreateRun(t.Context(), r)
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("CreateRun: got %v, want %v", err, store.ErrInvalid)
	}
	for _, want := range []string{"spec.job", "spec.type", "spec.trigger_key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CreateRun error %q: want it to name %s", err, want)
		}
	}
}

// TestSharedFile checks two Stores on one file, as two processes would
// have: their writes never collide, and a watcher sees the other's writes
// at its next poll.
func TestSharedFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "lockstep.db")
	a := openTest(t, path, WithPollInterval(10*time.Millisecond))
	b := openTest(t, path)

	from, err := a.Revision(ctx)
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	watchCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	seen := make(chan *run.Run, 1)
	done := make(chan error, 1)
	go func() {
		done <- a.WatchRuns(watchCtx, from, func(ev store.RunEvent) error {
			seen <- ev.Run
			return errors.New("seen")
		})
	}()

	const each = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for i, s := range []*Store{a, b} {
		wg.Go(func() {
			for j := range each {
				if _, err := s.CreateRun(ctx, testRun(fmt.Sprintf("shared/%d/%d", i, j))); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("CreateRun: %v", err)
	}
	page, err := a.ListRuns(ctx, store.ListOptions{Limit: store.MaxLimit})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	versions := map[int64]bool{}
	for _, r := range page.Runs {
		if versions[r.ResourceVersion] {
			t.Errorf("two runs at version %d", r.ResourceVersion)
		}
		versions[r.ResourceVersion] = true
	}
	if len(page.Runs) != 2*each {
		t.Errorf("runs: got %d, want %d", len(page.Runs), 2*each)
	}

	if err := <-done; err == nil || err.Error() != "seen" {
		t.Fatalf("WatchRuns: got %v, want the callback's error", err)
	}
	if r := <-seen; r.ResourceVersion != from+1 {
		t.Errorf("first event: version %d, want %d", r.ResourceVersion, from+1)
	}

	// A write through b wakes a watcher on a only by polling.
	from, err = a.Revision(ctx)
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	go func() {
		done <- a.WatchRuns(watchCtx, from, func(ev store.RunEvent) error {
			seen <- ev.Run
			return errors.New("seen")
		})
	}()
	created, err := b.CreateRun(ctx, testRun("shared/late"))
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	if err := <-done; err == nil || err.Error() != "seen" {
		t.Fatalf("WatchRuns: got %v, want the callback's error", err)
	}
	if diff := cmp.Diff(created, <-seen); diff != "" {
		t.Errorf("event from the other store (-created +seen):\n%s", diff)
	}
}

// TestListUsesIndexes checks that the listing queries walk an index, or
// the table, in id order and stop at the page's end, rather than sorting
// every matching run: with 100,000 runs, a page must cost its size.
func TestListUsesIndexes(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"))
	tests := []struct {
		name string
		opts store.ListOptions
		want []string
	}{
		{"none", store.ListOptions{}, []string{"SCAN runs"}},
		{"repo", store.ListOptions{Repo: "acme/widgets"}, []string{"USING INDEX runs_repo "}},
		{"repo and pull", store.ListOptions{Repo: "acme/widgets", Pull: 3}, []string{"USING INDEX runs_repo_pull"}},
		{"sha", store.ListOptions{SHA: "h1"}, []string{"USING INDEX runs_sha"}},
		{"job", store.ListOptions{Job: "unit"}, []string{"USING INDEX runs_job"}},
		{"type", store.ListOptions{Type: run.Periodic}, []string{"SCAN runs"}},
		{"state", store.ListOptions{State: []run.State{run.Pending}}, []string{"USING INDEX runs_state"}},
		{"job after a page", store.ListOptions{Job: "unit", Continue: encodeContinue(500)}, []string{"USING INDEX runs_job"}},
		{"repo, job and state", store.ListOptions{Repo: "acme/widgets", Job: "unit", State: []run.State{run.Running}}, []string{"USING INDEX"}},
		{"states", store.ListOptions{State: []run.State{run.Success, run.Failure, run.Error}}, []string{"MERGE (UNION ALL)", "USING INDEX runs_state"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, args, _, err := listQuery(tt.opts)
			if err != nil {
				t.Fatalf("listQuery: %v", err)
			}
			plan := queryPlan(t, s, q, args...)
			for _, want := range tt.want {
				if !strings.Contains(plan, want) {
					t.Errorf("plan of %s: got\n%s\nwant %q", q, plan, want)
				}
			}
			// A sort is fine only over a subquery's page.
			if sorts, pages := strings.Count(plan, "TEMP B-TREE"), strings.Count(plan, "SCAN (subquery"); sorts > pages {
				t.Errorf("plan of %s: got\n%s\nwant no sort of the runs table", q, plan)
			}
		})
	}
	plan := queryPlan(t, s, `SELECT `+runColumns+` FROM runs WHERE rv > ? ORDER BY rv LIMIT ?`, 0, watchBatch)
	if !strings.Contains(plan, "runs_rv") || strings.Contains(plan, "TEMP B-TREE") {
		t.Errorf("plan of the watch query: got\n%s\nwant a search of runs_rv", plan)
	}
}

func queryPlan(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.read.Query(`EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatalf("explain %s: %v", q, err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	return strings.Join(lines, "\n")
}

func TestContinueToken(t *testing.T) {
	for _, id := range []int64{1, 42, 1 << 40} {
		got, err := decodeContinue(encodeContinue(id))
		if err != nil || got != id {
			t.Errorf("decodeContinue(encodeContinue(%d)): got %d, %v, want %d", id, got, err, id)
		}
	}
	for _, token := range []string{"", "x", encodeContinue(0), "aWQ6LTE"} {
		if _, err := decodeContinue(token); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("decodeContinue(%q): got %v, want %v", token, err, store.ErrInvalid)
		}
	}
}

// TestWatchLeavesNoGoroutine checks that WatchRuns, once returned, leaves
// nothing running behind it.
func TestWatchLeavesNoGoroutine(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"), WithPollInterval(time.Millisecond))
	ctx := t.Context()
	before := runtime.NumGoroutine()

	watchCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	events := make(chan store.RunEvent)
	go func() {
		done <- s.WatchRuns(watchCtx, 0, func(ev store.RunEvent) error {
			events <- ev
			return nil
		})
	}()
	for i := range 3 {
		r, err := s.CreateRun(ctx, testRun(fmt.Sprintf("goroutines/%d", i)))
		if err != nil {
			t.Fatalf("CreateRun: %v", err)
		}
		if ev := <-events; ev.Revision != r.ResourceVersion {
			t.Fatalf("event revision: got %d, want %d", ev.Revision, r.ResourceVersion)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WatchRuns: got %v, want %v", err, context.Canceled)
	}

	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > before {
		select {
		case <-tick.C:
		case <-deadline:
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: got %d, want at most %d as before the watch:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}
