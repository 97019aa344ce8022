// Package leader elects one leader among the replicas sharing a store,
// through a lease in the store (store.Leases), and runs the components
// that must not run twice only on it, in the shape of controller-runtime's
// leader election: a replica that cannot renew the lease in time stops
// leading before the lease can pass to another, and every write it makes
// while leading carries the lease's term (store.WithFence), so that a
// leader that wakes up late (a GC pause, SIGSTOP) cannot write anymore.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// Defaults of the options.
const (
	DefaultLease         = "leader"
	DefaultLeaseDuration = 10 * time.Second
	DefaultRenewInterval = 2 * time.Second
)

// Options configure an Elector. Leases, Identity and Lead are required.
type Options struct {
	Leases store.Leases
	// Lease is the name of the lease; default DefaultLease.
	Lease string
	// Identity names this replica, uniquely among the replicas.
	Identity string
	// LeaseDuration is how long the lease lasts after each renewal;
	// RenewInterval how often the leader renews it and the others try to
	// take it. A leader that has not renewed for LeaseDuration minus
	// RenewInterval stops leading, so that it has stopped before the lease
	// expires. Defaults DefaultLeaseDuration and DefaultRenewInterval.
	LeaseDuration time.Duration
	RenewInterval time.Duration
	// Lead runs the leader's components until ctx is done, and returns.
	// ctx carries the term's fence. An error other than ctx's ends Run.
	Lead func(ctx context.Context) error
	// Clock times renewals; default the real clock. Registerer, if set,
	// gets the lockstep_leader gauge and lockstep_leader_changes_total.
	Clock      clock.Clock
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Status is what an Elector knows of the leadership.
type Status struct {
	// Identity is this replica's; Leader is the replica that held the
	// lease at the last look, Term its term, and Leading whether this
	// replica leads.
	Identity string    `json:"identity"`
	Leader   string    `json:"leader"`
	Term     int64     `json:"term"`
	Leading  bool      `json:"leading"`
	Expires  time.Time `json:"expires"`
}

// Elector takes part in the election of one store's replicas. Create it
// with New and call Run once; Status is safe for concurrent use.
type Elector struct {
	opts    Options
	log     *slog.Logger
	leading prometheus.Gauge
	changes prometheus.Counter

	// mu guards status.
	mu     sync.Mutex
	status Status
}

// New returns an Elector, registering its metrics.
func New(opts Options) (*Elector, error) {
	if opts.Leases == nil || opts.Identity == "" || opts.Lead == nil {
		return nil, errors.New("leader: Leases, Identity and Lead are required")
	}
	if opts.Lease == "" {
		opts.Lease = DefaultLease
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if opts.RenewInterval <= 0 {
		opts.RenewInterval = DefaultRenewInterval
	}
	if opts.RenewInterval*2 > opts.LeaseDuration {
		return nil, fmt.Errorf("leader: renew interval %v must be at most half the lease duration %v", opts.RenewInterval, opts.LeaseDuration)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Elector{
		opts: opts,
		log:  opts.Logger.With("replica", opts.Identity, "lease", opts.Lease),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockstep_leader",
			Help: "1 on the replica that leads (runs the controllers), 0 on the others.",
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockstep_leader_changes_total",
			Help: "Leader changes this replica saw: the lease passing to a new holder or term.",
		}),
		status: Status{Identity: opts.Identity},
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{e.leading, e.changes} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("leader: register metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Status returns what the Elector knows of the leadership now.
func (e *Elector) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// observe records the lease as last read, counting a change of holder or
// term.
func (e *Elector) observe(l *store.Lease, leading bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.Holder != e.status.Leader || l.Term != e.status.Term {
		e.changes.Inc()
		e.log.Info("leader changed", "leader", l.Holder, "term", l.Term, "leading", leading)
	}
	e.status.Leader, e.status.Term, e.status.Expires, e.status.Leading = l.Holder, l.Term, l.ExpiresAt, leading
	if leading {
		e.leading.Set(1)
	} else {
		e.leading.Set(0)
	}
}

// stepDown records that this replica no longer leads.
func (e *Elector) stepDown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status.Leading = false
	e.leading.Set(0)
}

// term is one leadership of this replica: its components run under ctx
// until cancel, and done is closed with err set when they have returned.
type term struct {
	lease  *store.Lease
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	// renewed is when the last successful renewal began, on the
	// Elector's clock.
	renewed time.Time
}

// Run campaigns for the lease and leads while it holds it, until ctx is
// done; it then stops leading and releases the lease. It returns nil when
// ctx is done, or the error Lead returned.
func (e *Elector) Run(ctx context.Context) error {
	var cur *term
	stop := func(why string) error {
		if cur == nil {
			return nil
		}
		cur.cancel()
		<-cur.done
		e.stepDown()
		e.log.Info("stopped leading", "term", cur.lease.Term, "why", why)
		err := cur.err
		cur = nil
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	}
	defer func() {
		if cur != nil {
			l := cur.lease
			_ = stop("shutting down")
			rctx, cancel := context.WithTimeout(context.Background(), e.opts.RenewInterval)
			defer cancel()
			if err := e.opts.Leases.ReleaseLease(rctx, e.opts.Lease, e.opts.Identity, l.Term); err != nil {
				e.log.Warn("release lease", "err", err)
			}
		}
	}()
	// The lease is given up from the last renewal's start on, leaving
	// one renewal interval for the components to stop before it expires.
	giveUp := e.opts.LeaseDuration - e.opts.RenewInterval
	for {
		began := e.opts.Clock.Now()
		actx, cancel := context.WithTimeout(ctx, e.opts.RenewInterval)
		l, err := e.opts.Leases.AcquireLease(actx, e.opts.Lease, e.opts.Identity, e.opts.LeaseDuration)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			e.log.Warn("lease renewal failed", "err", err)
			if cur != nil && e.opts.Clock.Since(cur.renewed) >= giveUp {
				if err := stop("could not renew the lease in time"); err != nil {
					return err
				}
			}
		case l.Holder == e.opts.Identity && cur != nil && l.Term == cur.lease.Term:
			cur.lease, cur.renewed = l, began
			e.observe(l, true)
		case l.Holder == e.opts.Identity:
			// A new term: the previous one, if any, lapsed.
			if err := stop("the lease lapsed"); err != nil {
				return err
			}
			e.observe(l, true)
			cur = e.lead(ctx, l, began)
			e.log.Info("leading", "term", l.Term)
		default:
			if err := stop("another replica holds the lease"); err != nil {
				return err
			}
			e.observe(l, false)
		}
		if cur != nil {
			select {
			case <-cur.done:
				// The components ended on their own: an error ends Run.
				if err := stop("the components stopped"); err != nil {
					return fmt.Errorf("leader components: %w", err)
				}
				continue
			default:
			}
		}
		wait := e.opts.RenewInterval
		if cur != nil {
			// Wake up in time to give the lease up, whatever renewals do.
			wait = min(wait, max(0, giveUp-e.opts.Clock.Since(cur.renewed)))
		}
		t := e.opts.Clock.NewTimer(wait)
		var done <-chan struct{}
		if cur != nil {
			done = cur.done
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-done:
		case <-t.C():
		}
		t.Stop()
		if cur != nil && e.opts.Clock.Since(cur.renewed) >= giveUp {
			if err := stop("could not renew the lease in time"); err != nil {
				return err
			}
		}
	}
}

// lead starts the components of a term.
func (e *Elector) lead(ctx context.Context, l *store.Lease, renewed time.Time) *term {
	lctx, cancel := context.WithCancel(store.WithFence(ctx, store.Fence{Lease: l.Name, Term: l.Term}))
	t := &term{lease: l, cancel: cancel, done: make(chan struct{}), renewed: renewed}
	go func() {
		defer close(t.done)
		t.err = e.opts.Lead(lctx)
		if t.err == nil && lctx.Err() == nil {
			t.err = errors.New("the leader's components returned")
		}
	}()
	return t
}
