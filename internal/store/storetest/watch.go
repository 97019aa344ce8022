package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// waitLimit bounds every wait for a watcher, so that a store that fails to
// deliver fails the suite instead of hanging it.
const waitLimit = 30 * time.Second

// watcher is a WatchRuns running on its own goroutine, handing its events
// to the test through events.
type watcher struct {
	events chan store.RunEvent
	cancel context.CancelFunc
	done   chan error
}

// startWatch starts watching s from revision from. The watch is stopped at
// the end of the test, if the test did not stop it.
func startWatch(t *testing.T, s Store, from int64) *watcher {
	ctx, cancel := context.WithCancel(t.Context())
	w := &watcher{events: make(chan store.RunEvent), cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- s.WatchRuns(ctx, from, func(ev store.RunEvent) error {
			select {
			case w.events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// next returns the watcher's next event.
func (w *watcher) next(t *testing.T) store.RunEvent {
	t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case err := <-w.done:
		w.done <- err
		t.Fatalf("WatchRuns returned %v, want it to go on", err)
	case <-time.After(waitLimit):
		t.Fatalf("no event after %v", waitLimit)
	}
	return store.RunEvent{}
}

// stop cancels the watch and returns what WatchRuns returned.
func (w *watcher) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(waitLimit):
		t.Fatalf("WatchRuns still running %v after its context was canceled", waitLimit)
	}
	return nil
}

// history records the writes a test made, to check a change feed against.
type history struct {
	// byRevision holds every version written, by its revision.
	byRevision map[int64]*run.Run
	// final holds the revision of each run's last write.
	final map[run.ID]int64
}

func newHistory() *history {
	return &history{byRevision: map[int64]*run.Run{}, final: map[run.ID]int64{}}
}

func (h *history) add(r *run.Run) *run.Run {
	h.byRevision[r.ResourceVersion] = r
	h.final[r.ID] = r.ResourceVersion
	return r
}

// feed checks a change feed watched from revision from.
type feed struct {
	h    *history
	from int64
	last int64
	// seen holds the revision of the last event of each run.
	seen map[run.ID]int64
}

func newFeed(h *history, from int64) *feed {
	return &feed{h: h, from: from, last: from, seen: map[run.ID]int64{}}
}

// check checks the next event of the feed: it comes after the previous one
// and after from, carries its run's version, and is a version that was
// written.
func (f *feed) check(t *testing.T, ev store.RunEvent) {
	t.Helper()
	if ev.Run == nil {
		t.Fatalf("event at revision %d has no run", ev.Revision)
	}
	if ev.Revision <= f.last {
		t.Errorf("event revision: got %d after %d, want strictly increasing revisions after %d", ev.Revision, f.last, f.from)
	}
	if ev.Revision != ev.Run.ResourceVersion {
		t.Errorf("event revision %d differs from its run's ResourceVersion %d", ev.Revision, ev.Run.ResourceVersion)
	}
	want, ok := f.h.byRevision[ev.Revision]
	if !ok {
		t.Errorf("event at revision %d (run %d) matches no write", ev.Revision, ev.Run.ID)
	} else if diff := cmp.Diff(want, ev.Run); diff != "" {
		t.Errorf("event at revision %d differs from the version written (-written +event):\n%s", ev.Revision, diff)
	}
	f.last = max(f.last, ev.Revision)
	f.seen[ev.Run.ID] = ev.Revision
}

// caughtUp reports whether the feed has shown the last version of every
// run written after from.
func (f *feed) caughtUp() bool {
	for id, rv := range f.h.final {
		if rv > f.from && f.seen[id] != rv {
			return false
		}
	}
	return true
}

func (f *feed) missing() []string {
	var out []string
	for id, rv := range f.h.final {
		if rv > f.from && f.seen[id] != rv {
			out = append(out, fmt.Sprintf("run %d at %d (seen %d)", id, rv, f.seen[id]))
		}
	}
	slices.Sort(out)
	return out
}

// writeSome makes a mix of writes: creates, status changes, a label
// change, and a refused stale write, which must not show in the feed.
func writeSome(t *testing.T, s Store, h *history, prefix string) {
	t.Helper()
	a := h.add(mustCreate(t, s, newRun(prefix+"/a")))
	b := h.add(mustCreate(t, s, newRun(prefix+"/b")))
	a = h.add(setState(t, s, a, run.Scheduled))
	w := *b
	w.Labels = map[string]string{"watched": "yes"}
	b2 := h.add(mustUpdate(t, s, &w))
	a = h.add(setState(t, s, a, run.Running))
	h.add(mustCreate(t, s, newRun(prefix+"/c")))
	h.add(setState(t, s, a, run.Success))
	stale := *b
	stale.Status.State = run.Aborted
	if _, err := s.UpdateRunStatus(t.Context(), &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale UpdateRunStatus: got %v, want %v", err, store.ErrConflict)
	}
	h.add(setState(t, s, b2, run.Aborted))
}

func testWatchOrder(t *testing.T, s Store) {
	from := mustRevision(t, s)
	w := startWatch(t, s, from)
	h := newHistory()
	writeSome(t, s, h, "order")

	f := newFeed(h, from)
	for !f.caughtUp() {
		f.check(t, w.next(t))
	}
	if err := w.stop(t); !errors.Is(err, context.Canceled) {
		t.Errorf("WatchRuns after cancel: got %v, want %v", err, context.Canceled)
	}
}

func testWatchResume(t *testing.T, s Store) {
	errStop := errors.New("stop watching")
	start := mustRevision(t, s)
	h := newHistory()
	writeSome(t, s, h, "resume-1")
	writeSome(t, s, h, "resume-2")
	revs := slices.Sorted(func(yield func(int64) bool) {
		for rv := range h.byRevision {
			if !yield(rv) {
				return
			}
		}
	})
	lastRev := revs[len(revs)-1]

	for _, from := range []int64{start, revs[0], revs[3], revs[len(revs)/2], revs[len(revs)-2]} {
		t.Run(fmt.Sprintf("from %d", from), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			defer cancel()
			f := newFeed(h, from)
			err := s.WatchRuns(ctx, from, func(ev store.RunEvent) error {
				f.check(t, ev)
				if ev.Revision == lastRev {
					return errStop
				}
				return nil
			})
			if !errors.Is(err, errStop) {
				t.Fatalf("WatchRuns: got %v, want the callback's error %v", err, errStop)
			}
			if !f.caughtUp() {
				t.Errorf("resumed feed missed %v", f.missing())
			}
		})
	}
}

func testWatchFromCurrent(t *testing.T, s Store) {
	h := newHistory()
	writeSome(t, s, h, "before")
	from := mustRevision(t, s)
	w := startWatch(t, s, from)
	created := mustCreate(t, s, newRun("after"))
	ev := w.next(t)
	if diff := cmp.Diff(store.RunEvent{Revision: created.ResourceVersion, Run: created}, ev); diff != "" {
		t.Errorf("first event after revision %d (-want +got):\n%s", from, diff)
	}
}

func testWatchCancel(t *testing.T, s Store) {
	mustCreate(t, s, newRun("cancel"))

	t.Run("canceled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := s.WatchRuns(ctx, 0, func(store.RunEvent) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("WatchRuns: got %v, want %v", err, context.Canceled)
		}
	})
	t.Run("canceled while waiting", func(t *testing.T) {
		w := startWatch(t, s, mustRevision(t, s))
		if err := w.stop(t); !errors.Is(err, context.Canceled) {
			t.Errorf("WatchRuns: got %v, want %v", err, context.Canceled)
		}
	})
	t.Run("canceled by the callback", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		calls := 0
		err := s.WatchRuns(ctx, 0, func(store.RunEvent) error {
			calls++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("WatchRuns: got %v, want %v", err, context.Canceled)
		}
		if calls != 1 {
			t.Errorf("callback calls: got %d, want 1", calls)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		err := s.WatchRuns(ctx, mustRevision(t, s), func(store.RunEvent) error { return nil })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WatchRuns: got %v, want %v", err, context.DeadlineExceeded)
		}
	})
}

func testWatchFnError(t *testing.T, s Store) {
	from := mustRevision(t, s)
	for i := range 3 {
		mustCreate(t, s, newRun(fmt.Sprintf("fn-error/%d", i)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	boom := errors.New("boom")
	calls := 0
	err := s.WatchRuns(ctx, from, func(store.RunEvent) error {
		calls++
		if calls == 2 {
			return fmt.Errorf("second event: %w", boom)
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("WatchRuns: got %v, want the callback's error %v", err, boom)
	}
	if calls != 2 {
		t.Errorf("callback calls: got %d, want 2", calls)
	}
}

func testWatchConcurrentWriters(t *testing.T, s Store) {
	const writers, runsEach = 4, 8
	from := mustRevision(t, s)
	w := startWatch(t, s, from)

	// The writers record what they wrote; the history is read only after
	// they are done.
	h := newHistory()
	var mu sync.Mutex
	record := func(r *run.Run) {
		mu.Lock()
		h.add(r)
		mu.Unlock()
	}
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			errs <- writeRuns(t.Context(), s, fmt.Sprintf("writer-%d", i), runsEach, record)
		})
	}
	writersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(writersDone)
	}()

	// Events are checked once the history is complete.
	var events []store.RunEvent
	var f *feed
	deadline := time.After(waitLimit)
	for f == nil || !f.caughtUp() {
		select {
		case ev := <-w.events:
			if f == nil {
				events = append(events, ev)
				continue
			}
			f.check(t, ev)
		case <-writersDone:
			writersDone = nil
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			f = newFeed(h, from)
			for _, ev := range events {
				f.check(t, ev)
			}
		case <-deadline:
			if f == nil {
				t.Fatalf("writers still writing after %v", waitLimit)
			}
			t.Fatalf("after %v, the watcher has not seen %v", waitLimit, f.missing())
		}
	}
	if got, want := len(h.final), writers*runsEach; got != want {
		t.Errorf("runs written: got %d, want %d", got, want)
	}
}

// writeRuns creates n runs and takes each through its life, handing every
// version written to record.
func writeRuns(ctx context.Context, s Store, prefix string, n int, record func(*run.Run)) error {
	for i := range n {
		r, err := s.CreateRun(ctx, newRun(fmt.Sprintf("%s/%d", prefix, i)))
		if err != nil {
			return fmt.Errorf("%s: create run %d: %w", prefix, i, err)
		}
		record(r)
		for _, state := range []run.State{run.Scheduled, run.Running, run.Success} {
			next := *r
			next.Status.State = state
			if r, err = s.UpdateRunStatus(ctx, &next); err != nil {
				return fmt.Errorf("%s: run %d to %s: %w", prefix, i, state, err)
			}
			record(r)
			if state == run.Running {
				next := *r
				next.Labels = map[string]string{"writer": prefix}
				if r, err = s.UpdateRun(ctx, &next); err != nil {
					return fmt.Errorf("%s: label run %d: %w", prefix, i, err)
				}
				record(r)
			}
		}
	}
	return nil
}

func testRevisionMonotonic(t *testing.T, s Store) {
	ctx := t.Context()
	prev := mustRevision(t, s)
	prevRV := int64(0)
	r := mustCreate(t, s, newRun("monotonic"))
	for _, state := range []run.State{run.Scheduled, run.Running, run.Success} {
		if r.ResourceVersion <= prevRV {
			t.Errorf("ResourceVersion: got %d after %d, want it to grow", r.ResourceVersion, prevRV)
		}
		rev := mustRevision(t, s)
		if rev < r.ResourceVersion || rev < prev {
			t.Errorf("Revision: got %d, want at least the last write's %d and the previous revision %d", rev, r.ResourceVersion, prev)
		}
		prev, prevRV = rev, r.ResourceVersion
		r = setState(t, s, r, state)
	}

	// Concurrent readers never see the revision go back, and a writer
	// always sees its own write.
	var writing atomic.Bool
	writing.Store(true)
	errs := make(chan error, 6)
	var writers, readers sync.WaitGroup
	for i := range 4 {
		writers.Go(func() {
			for j := range 20 {
				r, err := s.CreateRun(ctx, newRun(fmt.Sprintf("monotonic-%d/%d", i, j)))
				if err != nil {
					errs <- err
					return
				}
				rev, err := s.Revision(ctx)
				if err != nil {
					errs <- err
					return
				}
				if rev < r.ResourceVersion {
					errs <- fmt.Errorf("Revision after a write at %d: got %d, want at least %d", r.ResourceVersion, rev, r.ResourceVersion)
					return
				}
			}
		})
	}
	for range 2 {
		readers.Go(func() {
			last := int64(0)
			for writing.Load() {
				rev, err := s.Revision(ctx)
				if err != nil {
					errs <- err
					return
				}
				if rev < last {
					errs <- fmt.Errorf("Revision: got %d after %d, want it never to go back", rev, last)
					return
				}
				last = rev
			}
		})
	}
	writers.Wait()
	writing.Store(false)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testWatchOrderManyWriters holds the change feed to its promise under
// contention: 32 writers create runs at once while one watcher reads the
// feed, and the watcher must see every revision written, each exactly
// once, in increasing order. A store whose revisions are handed out in
// another order than its writes commit (a sequence read at insert time)
// lets the watcher pass a revision that commits later, and fails here.
func testWatchOrderManyWriters(t *testing.T, s Store) {
	const writers, runsEach = 32, 25
	ctx := t.Context()
	from := mustRevision(t, s)
	w := startWatch(t, s, from)

	written := make(chan int64, writers*runsEach)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range runsEach {
				r, err := s.CreateRun(ctx, newRun(fmt.Sprintf("order-%d/%d", i, j)))
				if err != nil {
					errs <- err
					return
				}
				written <- r.ResourceVersion
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	close(written)
	want := make(map[int64]bool, writers*runsEach)
	for rv := range written {
		want[rv] = true
	}

	last := from
	seen := make(map[int64]bool, len(want))
	for len(seen) < len(want) {
		ev := w.next(t)
		if ev.Revision <= last {
			t.Fatalf("watch: revision %d after %d, want revisions in increasing order", ev.Revision, last)
		}
		if !want[ev.Revision] {
			t.Fatalf("watch: revision %d was not written by any writer", ev.Revision)
		}
		last = ev.Revision
		seen[ev.Revision] = true
	}
	// Only creates ran, one revision each: the feed is dense.
	if got, wantLast := last, from+int64(len(want)); got != wantLast {
		t.Errorf("last revision seen: got %d, want %d (%d writes after %d)", got, wantLast, len(want), from)
	}
}
