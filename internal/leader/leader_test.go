package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/postgres"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
)

// partitionable is a store whose lease calls can be cut off, as a
// network partition cuts a replica off its database.
type partitionable struct {
	*postgres.Store
	cut atomic.Bool
}

var errCut = errors.New("connection refused")

func (p *partitionable) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (*store.Lease, error) {
	if p.cut.Load() {
		return nil, errCut
	}
	return p.Store.AcquireLease(ctx, name, holder, ttl)
}

// replica is one Elector, with what its Lead saw.
type replica struct {
	name    string
	st      *partitionable
	e       *Elector
	leading atomic.Bool
	// fence is the context of its current or last term.
	mu    sync.Mutex
	fence context.Context
	// stopped is when its last term's components returned.
	stopped time.Time
	cancel  context.CancelFunc
	done    chan error
}

func startReplica(t *testing.T, url, name string, ttl, renew time.Duration) *replica {
	t.Helper()
	st, err := postgres.Open(t.Context(), url, postgres.WithMaxConns(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &replica{name: name, st: &partitionable{Store: st}, done: make(chan error, 1)}
	r.e, err = New(Options{
		Leases: r.st, Identity: name, LeaseDuration: ttl, RenewInterval: renew,
		Lead: func(ctx context.Context) error {
			r.mu.Lock()
			r.fence = ctx
			r.mu.Unlock()
			r.leading.Store(true)
			<-ctx.Done()
			r.leading.Store(false)
			r.mu.Lock()
			r.stopped = time.Now()
			r.mu.Unlock()
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func leaders(rs []*replica) []string {
	var out []string
	for _, r := range rs {
		if r.leading.Load() {
			out = append(out, r.name)
		}
	}
	return out
}

// TestOneLeaderAndFencedTakeover runs three electors on one database:
// exactly one leads; when it is cut off the database, it stops leading
// before its lease expires, another takes over within the lease duration
// plus one renewal interval, and a write under the old term is refused.
func TestOneLeaderAndFencedTakeover(t *testing.T) {
	const ttl, renew = 1500 * time.Millisecond, 250 * time.Millisecond
	url := pgtest.URL(t)
	var rs []*replica
	for i := range 3 {
		rs = append(rs, startReplica(t, url, fmt.Sprintf("replica-%d", i), ttl, renew))
	}
	waitFor(t, "a leader", 10*time.Second, func() bool { return len(leaders(rs)) == 1 })
	// It stays one for a few renewals.
	for range 20 {
		if l := leaders(rs); len(l) > 1 {
			t.Fatalf("leaders %v, want one", l)
		}
		time.Sleep(renew / 4)
	}
	var old *replica
	for _, r := range rs {
		if r.leading.Load() {
			old = r
		}
	}
	st := old.e.Status()
	if !st.Leading || st.Leader != old.name || st.Term < 1 {
		t.Errorf("leader's status: got %+v", st)
	}
	for _, r := range rs {
		if r != old {
			if s := r.e.Status(); s.Leading || s.Leader != old.name {
				t.Errorf("%s's status: got %+v, want %s leading", r.name, s, old.name)
			}
		}
	}
	l, err := old.st.GetLease(t.Context(), DefaultLease)
	if err != nil {
		t.Fatal(err)
	}

	old.st.cut.Store(true)
	cutAt := time.Now()
	waitFor(t, "the cut-off leader to stop", ttl, func() bool { return !old.leading.Load() })
	old.mu.Lock()
	stopped, fence := old.stopped, old.fence
	old.mu.Unlock()
	if expires := l.ExpiresAt; !stopped.Before(expires.Add(renew)) {
		t.Errorf("the old leader stopped at %v, after its lease could expire at %v", stopped, expires)
	}
	took := waitFor(t, "a new leader", ttl+2*renew+time.Second, func() bool {
		l := leaders(rs)
		return len(l) == 1 && l[0] != old.name
	})
	if limit := ttl + renew + 250*time.Millisecond; time.Since(cutAt) > limit {
		t.Errorf("takeover took %v after the cut (waited %v), want at most the lease duration plus one renewal interval, %v", time.Since(cutAt), took, limit)
	}
	// The old leader's term is fenced off: a write of a component that
	// did not notice its context ended (a GC pause, SIGSTOP) is refused.
	_, err = old.st.CreateRun(context.WithoutCancel(fence), &run.Run{Spec: run.Spec{Job: "j", Type: run.Manual, TriggerKey: "late"}})
	if !errors.Is(err, store.ErrFenced) {
		t.Errorf("write under the old term: got %v, want %v", err, store.ErrFenced)
	}
	if got := old.e.Status(); got.Leading {
		t.Errorf("old leader's status: got %+v, want not leading", got)
	}

	// Back on the network, it follows.
	old.st.cut.Store(false)
	waitFor(t, "the old leader to see the new one", 5*time.Second, func() bool {
		s := old.e.Status()
		return !s.Leading && s.Leader != old.name && s.Leader != ""
	})
	if l := leaders(rs); len(l) != 1 {
		t.Errorf("leaders %v, want one", l)
	}
}

// TestShutdownReleasesLease checks that a leader that stops gives the
// lease up, so that the next takes over at once rather than after the
// lease duration.
func TestShutdownReleasesLease(t *testing.T) {
	const ttl, renew = 20 * time.Second, 200 * time.Millisecond
	url := pgtest.URL(t)
	a := startReplica(t, url, "a", ttl, renew)
	waitFor(t, "a to lead", 10*time.Second, a.leading.Load)
	b := startReplica(t, url, "b", ttl, renew)
	a.cancel()
	if err := <-a.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	a.done <- nil
	waitFor(t, "b to lead", 5*time.Second, b.leading.Load)
}
