package postgres

import (
	"errors"
	"testing"
	"time"

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
