package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
)

// TestFencedWrites checks that a write made under a leader term that has
// passed is refused with store.ErrFenced and changes nothing, while the
// current leader's writes go through.
func TestFencedWrites(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	u := pgtest.URL(t)
	a := openURL(t, u, WithClock(clk))
	b := openURL(t, u, WithClock(clk))
	ctx := t.Context()
	const ttl = 15 * time.Second

	la, err := a.AcquireLease(ctx, "leader", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	fencedA := store.WithFence(ctx, store.Fence{Lease: "leader", Term: la.Term})
	r, err := a.CreateRun(fencedA, testRun("fence/1"))
	if err != nil {
		t.Fatalf("write of the leader: %v", err)
	}

	// a stalls past its lease; b takes over.
	clk.Step(ttl + time.Second)
	lb, err := b.AcquireLease(ctx, "leader", "b", ttl)
	if err != nil || lb.Holder != "b" {
		t.Fatalf("takeover: got %+v, %v", lb, err)
	}
	before, err := a.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := *r
	next.Status.State = run.Scheduled
	if _, err := a.UpdateRunStatus(fencedA, &next); !errors.Is(err, store.ErrFenced) {
		t.Errorf("UpdateRunStatus of the deposed leader: got %v, want %v", err, store.ErrFenced)
	}
	if _, err := a.CreateRun(fencedA, testRun("fence/2")); !errors.Is(err, store.ErrFenced) {
		t.Errorf("CreateRun of the deposed leader: got %v, want %v", err, store.ErrFenced)
	}
	if after, err := a.Revision(ctx); err != nil || after != before {
		t.Errorf("Revision after refused writes: got %d, %v; want %d", after, err, before)
	}
	got, err := b.GetRun(ctx, r.ID)
	if err != nil || got.Status.State != run.Pending {
		t.Errorf("run after the refused update: got %+v, %v; want it pending", got, err)
	}
	fencedB := store.WithFence(ctx, store.Fence{Lease: "leader", Term: lb.Term})
	if _, err := b.UpdateRunStatus(fencedB, &next); err != nil {
		t.Errorf("UpdateRunStatus of the new leader: %v", err)
	}
	// A fence naming a lease nobody ever held is refused too.
	if _, err := b.CreateRun(store.WithFence(ctx, store.Fence{Lease: "other", Term: 1}), testRun("fence/3")); !errors.Is(err, store.ErrFenced) {
		t.Errorf("CreateRun under an unknown lease: got %v, want %v", err, store.ErrFenced)
	}
}

// TestPipelinedBatchIsolatesAFencedWrite runs, in one batch, a pipelined
// write under a term that has passed beside one under no fence: the first
// fails with store.ErrFenced and changes nothing, the second commits, as
// if each had had its own transaction.
func TestPipelinedBatchIsolatesAFencedWrite(t *testing.T) {
	s := openURL(t, pgtest.URL(t))
	ctx := t.Context()
	l, err := s.AcquireLease(ctx, "leader", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bump := func(ctx context.Context, changed *bool) *writeOp {
		return &writeOp{ctx: ctx, done: make(chan error, 1), stmt: &stmtWrite{
			sql: `UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING rev`,
			result: func(row pgx.Row) (bool, error) {
				var rev int64
				if err := row.Scan(&rev); err != nil {
					return false, err
				}
				*changed = true
				return true, nil
			},
		}, fn: func(tx *writeTx) (bool, error) {
			var rev int64
			if err := tx.QueryRow(`UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING rev`).Scan(&rev); err != nil {
				return false, err
			}
			*changed = true
			return true, nil
		}}
	}
	var staleRan, freeRan bool
	stale := bump(store.WithFence(ctx, store.Fence{Lease: "leader", Term: l.Term - 1}), &staleRan)
	free := bump(ctx, &freeRan)
	s.commitBatch([]*writeOp{stale, free})
	if err := <-stale.done; !errors.Is(err, store.ErrFenced) {
		t.Errorf("write of a passed term: got %v, want %v", err, store.ErrFenced)
	}
	if err := <-free.done; err != nil {
		t.Errorf("write with no fence: got %v, want it to commit", err)
	}
	after, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Errorf("revision went from %d to %d, want one write committed", before, after)
	}
	if !freeRan {
		t.Error("the write with no fence did not run")
	}
}
