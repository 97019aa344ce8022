package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// holdWrites makes the caller the leader of a batch that waits until the
// returned function is called, so that the writes started meanwhile queue
// for the next batch.
func holdWrites(t *testing.T, s *Store) (release func()) {
	t.Helper()
	held := make(chan struct{})
	unblock := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.inTx(context.Background(), func(*writeTx) (bool, error) {
			close(held)
			<-unblock
			return false, nil
		})
	}()
	<-held
	return func() {
		close(unblock)
		if err := <-done; err != nil {
			t.Errorf("held write: %v", err)
		}
	}
}

// waitPending waits until n writes are queued.
func waitPending(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		s.wmu.Lock()
		got := len(s.pending)
		s.wmu.Unlock()
		if got == n {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("pending writes: got %d, want %d", got, n)
		}
	}
}

// TestBatchIsolatesWrites checks that the writes of one batch succeed or
// fail alone: a failed write's changes, its revision included, are rolled
// back, and the others commit.
func TestBatchIsolatesWrites(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"), WithPollInterval(time.Hour))
	ctx := t.Context()
	release := holdWrites(t, s)

	type result struct {
		r   *run.Run
		err error
	}
	first := make(chan result, 1)
	go func() {
		r, err := s.CreateRun(ctx, testRun("batch/first"))
		first <- result{r, err}
	}()
	waitPending(t, s, 1)
	boom := errors.New("boom")
	failed := make(chan error, 1)
	go func() {
		failed <- s.inTx(ctx, func(tx *writeTx) (bool, error) {
			if _, err := nextRevision(tx); err != nil {
				return false, err
			}
			if _, err := tx.Exec(`UPDATE runs SET job = 'changed'`); err != nil {
				return false, err
			}
			return true, boom
		})
	}()
	waitPending(t, s, 2)
	last := make(chan result, 1)
	go func() {
		r, err := s.CreateRun(ctx, testRun("batch/last"))
		last <- result{r, err}
	}()
	waitPending(t, s, 3)
	release()

	a, b := <-first, <-last
	if a.err != nil || b.err != nil {
		t.Fatalf("CreateRun: got %v and %v, want no errors", a.err, b.err)
	}
	if err := <-failed; !errors.Is(err, boom) {
		t.Errorf("failed write: got %v, want %v", err, boom)
	}
	if b.r.ResourceVersion != a.r.ResourceVersion+1 {
		t.Errorf("versions of the writes around the failed one: got %d and %d, want consecutive", a.r.ResourceVersion, b.r.ResourceVersion)
	}
	got, err := s.GetRun(ctx, a.r.ID)
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	if got.Spec.Job != "unit" {
		t.Errorf("job of a run the failed write changed: got %q, want %q", got.Spec.Job, "unit")
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	if rev != b.r.ResourceVersion {
		t.Errorf("Revision: got %d, want %d", rev, b.r.ResourceVersion)
	}
}

// TestCanceledWriteIsNotRun checks that a write whose context ends while
// it waits for its batch returns the context's error and changes nothing.
func TestCanceledWriteIsNotRun(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"))
	release := holdWrites(t, s)

	ctx, cancel := context.WithCancel(t.Context())
	ran := false
	done := make(chan error, 1)
	go func() {
		done <- s.inTx(ctx, func(*writeTx) (bool, error) {
			ran = true
			return false, nil
		})
	}()
	waitPending(t, s, 1)
	cancel()
	release()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled write: got %v, want %v", err, context.Canceled)
	}
	if ran {
		t.Errorf("canceled write ran")
	}
	if _, err := s.CreateRun(t.Context(), testRun("after")); err != nil {
		t.Errorf("CreateRun after a canceled write: %v", err)
	}
}
