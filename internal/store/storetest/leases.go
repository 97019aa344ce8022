package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// RunLeases runs the conformance tests of leases against the stores
// newStore makes.
func RunLeases(t *testing.T, newStore NewStore) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const ttl = 15 * time.Second
	t.Run("AcquireRenewExpire", func(t *testing.T) {
		t.Parallel()
		clk := clocktesting.NewFakeClock(t0)
		s := newStore(t, clk)
		ctx := t.Context()
		if _, err := s.GetLease(ctx, "leader"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetLease of no lease: got %v, want %v", err, store.ErrNotFound)
		}
		a, err := s.AcquireLease(ctx, "leader", "a", ttl)
		if err != nil {
			t.Fatal(err)
		}
		want := &store.Lease{Name: "leader", Holder: "a", Term: 1, AcquiredAt: t0, RenewedAt: t0, ExpiresAt: t0.Add(ttl)}
		if diff := cmp.Diff(want, a); diff != "" {
			t.Errorf("first acquire (-want +got):\n%s", diff)
		}
		// Another holder cannot take it before it expires.
		clk.Step(ttl - time.Second)
		b, err := s.AcquireLease(ctx, "leader", "b", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, b); diff != "" {
			t.Errorf("acquire of a held lease by another (-want +got):\n%s", diff)
		}
		// The holder renews it in the same term.
		a, err = s.AcquireLease(ctx, "leader", "a", ttl)
		if err != nil {
			t.Fatal(err)
		}
		renewed := clk.Now()
		want = &store.Lease{Name: "leader", Holder: "a", Term: 1, AcquiredAt: t0, RenewedAt: renewed, ExpiresAt: renewed.Add(ttl)}
		if diff := cmp.Diff(want, a); diff != "" {
			t.Errorf("renewal (-want +got):\n%s", diff)
		}
		// Once it expires, another takes it in the next term.
		clk.Step(ttl)
		b, err = s.AcquireLease(ctx, "leader", "b", ttl)
		if err != nil {
			t.Fatal(err)
		}
		now := clk.Now()
		want = &store.Lease{Name: "leader", Holder: "b", Term: 2, AcquiredAt: now, RenewedAt: now, ExpiresAt: now.Add(ttl)}
		if diff := cmp.Diff(want, b); diff != "" {
			t.Errorf("takeover (-want +got):\n%s", diff)
		}
		got, err := s.GetLease(ctx, "leader")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetLease (-want +got):\n%s", diff)
		}
		// The old holder, waking up, does not get it back.
		a, err = s.AcquireLease(ctx, "leader", "a", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if a.Holder != "b" || a.Term != 2 {
			t.Errorf("acquire by the old holder: got %s at term %d, want b at term 2", a.Holder, a.Term)
		}
	})
	t.Run("Release", func(t *testing.T) {
		t.Parallel()
		clk := clocktesting.NewFakeClock(t0)
		s := newStore(t, clk)
		ctx := t.Context()
		a, err := s.AcquireLease(ctx, "leader", "a", ttl)
		if err != nil {
			t.Fatal(err)
		}
		// A release by someone else, or of another term, does nothing.
		if err := s.ReleaseLease(ctx, "leader", "b", a.Term); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseLease(ctx, "leader", "a", a.Term+1); err != nil {
			t.Fatal(err)
		}
		if b, err := s.AcquireLease(ctx, "leader", "b", ttl); err != nil || b.Holder != "a" {
			t.Fatalf("acquire after releases that do not apply: got %+v, %v; want a to hold it", b, err)
		}
		if err := s.ReleaseLease(ctx, "leader", "a", a.Term); err != nil {
			t.Fatal(err)
		}
		b, err := s.AcquireLease(ctx, "leader", "b", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if b.Holder != "b" || b.Term != 2 {
			t.Errorf("acquire after release: got %s at term %d, want b at term 2", b.Holder, b.Term)
		}
	})
	t.Run("OneHolderUnderConcurrency", func(t *testing.T) {
		t.Parallel()
		clk := clocktesting.NewFakeClock(t0)
		s := newStore(t, clk)
		ctx := t.Context()
		for round := range 3 {
			var mu sync.Mutex
			holders := map[string]int64{}
			var wg sync.WaitGroup
			for i := range 16 {
				wg.Go(func() {
					me := fmt.Sprintf("replica-%d", i)
					l, err := s.AcquireLease(ctx, "leader", me, ttl)
					if err != nil {
						t.Error(err)
						return
					}
					if l.Holder == me {
						mu.Lock()
						holders[me] = l.Term
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(holders) != 1 {
				t.Fatalf("round %d: %d replicas got the lease (%v), want 1", round, len(holders), holders)
			}
			for _, term := range holders {
				if term != int64(round+1) {
					t.Errorf("round %d: term %d, want %d", round, term, round+1)
				}
			}
			clk.Step(ttl)
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, clocktesting.NewFakeClock(t0))
		for _, tt := range []struct {
			name, holder string
			ttl          time.Duration
		}{{"", "a", ttl}, {"leader", "", ttl}, {"leader", "a", 0}} {
			if _, err := s.AcquireLease(t.Context(), tt.name, tt.holder, tt.ttl); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("AcquireLease(%q, %q, %v): got %v, want %v", tt.name, tt.holder, tt.ttl, err, store.ErrInvalid)
			}
		}
	})
}
