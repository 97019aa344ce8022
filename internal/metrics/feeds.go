package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// RunFeed is the part of store.Runs the run metrics are computed from.
type RunFeed interface {
	ListRuns(ctx context.Context, opts store.ListOptions) (store.RunPage, error)
	WatchRuns(ctx context.Context, from int64, fn func(store.RunEvent) error) error
	Revision(ctx context.Context) (int64, error)
}

// DeliveryFeed is the part of the store lockstep_webhook_deliveries_total
// is computed from.
type DeliveryFeed interface {
	WatchDeliveries(ctx context.Context, from int64, fn func(*store.Delivery) error) error
	Revision(ctx context.Context) (int64, error)
}

// Run observes the change feeds of Options until ctx is done, and returns
// nil then. A feed that fails is watched again from where it stopped after
// Options.RetryDelay, so nothing is counted twice or missed.
//
// The run metrics count what happens after Run starts: a run is counted
// as created when it first appears with an ID above the newest one at
// start, and its duration is observed when it is first seen finished
// after having been seen unfinished or created. lockstep_runs holds the
// unfinished runs of every state, listed at start and kept up to date from
// the feed.
func (m *Metrics) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if m.opts.Runs != nil {
		g.Go(func() error { return m.watchRuns(ctx) })
	}
	if m.opts.Deliveries != nil {
		g.Go(func() error { return m.watchDeliveries(ctx) })
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}

// retry calls fn until it succeeds or ctx is done, waiting RetryDelay
// after each failure.
func (m *Metrics) retry(ctx context.Context, feed string, fn func() error) error {
	for {
		err := fn()
		if err == nil || ctx.Err() != nil {
			return ctx.Err()
		}
		m.feedErrors.WithLabelValues(feed).Inc()
		m.log.Warn("metrics feed failed; watching it again", "feed", feed, "err", err, "retry_in", m.opts.RetryDelay)
		t := m.opts.Clock.NewTimer(m.opts.RetryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

func (m *Metrics) watchRuns(ctx context.Context) error {
	feed := m.opts.Runs
	tr := &runTracker{m: m}
	var rev int64
	if err := m.retry(ctx, "runs", func() error {
		var err error
		rev, err = tr.start(ctx, feed)
		return err
	}); err != nil {
		return err
	}
	return m.retry(ctx, "runs", func() error {
		err := feed.WatchRuns(ctx, rev, func(ev store.RunEvent) error {
			tr.observe(ev.Run)
			rev = ev.Revision
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch runs from revision %d: %w", rev, err)
	})
}

func (m *Metrics) watchDeliveries(ctx context.Context) error {
	feed := m.opts.Deliveries
	var rev int64
	if err := m.retry(ctx, "deliveries", func() error {
		var err error
		rev, err = feed.Revision(ctx)
		return err
	}); err != nil {
		return err
	}
	return m.retry(ctx, "deliveries", func() error {
		err := feed.WatchDeliveries(ctx, rev, func(d *store.Delivery) error {
			if d.State == store.DeliveryDone || d.State == store.DeliveryFailed {
				m.deliveries.WithLabelValues(d.Event, DeliveryOutcome(d)).Inc()
			}
			rev = max(rev, d.ResourceVersion)
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch deliveries from revision %d: %w", rev, err)
	})
}

// DeliveryOutcome sums up what a processed delivery caused, as the outcome
// label of lockstep_webhook_deliveries_total: failed, stale, created (at
// least one run), aborted (runs, and none created), existing (every run it
// asked for existed already) or ignored.
func DeliveryOutcome(d *store.Delivery) string {
	o := d.Outcome
	switch {
	case d.State == store.DeliveryFailed:
		return "failed"
	case o.Stale:
		return "stale"
	case len(o.Runs) > 0:
		return "created"
	case len(o.Aborted) > 0:
		return "aborted"
	case len(o.Existing) > 0:
		return "existing"
	}
	return "ignored"
}

// maxGaps bounds how many run IDs below the newest seen the tracker keeps
// waiting for: IDs of runs whose creation reached the feed after a newer
// run's (writes folded by the feed), or never used (a store whose
// sequences have holes). The oldest are forgotten first.
const maxGaps = 4096

// runTracker turns the run feed into the run metrics. It is used by one
// goroutine; active is shared with the collector under its own lock.
type runTracker struct {
	m *Metrics
	// maxID is the newest run ID seen; gaps holds the IDs below it not
	// seen yet since it was set.
	maxID run.ID
	gaps  map[run.ID]struct{}
	// states holds every unfinished run seen and its state.
	states map[run.ID]run.State
}

// start records the newest run and lists the unfinished runs, and returns
// the revision to watch from.
func (t *runTracker) start(ctx context.Context, feed RunFeed) (int64, error) {
	newest, err := feed.ListRuns(ctx, store.ListOptions{Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("list newest run: %w", err)
	}
	rev, err := feed.Revision(ctx)
	if err != nil {
		return 0, fmt.Errorf("read store revision: %w", err)
	}
	t.gaps = make(map[run.ID]struct{})
	t.states = make(map[run.ID]run.State)
	if len(newest.Runs) > 0 {
		t.maxID = newest.Runs[0].ID
	}
	opts := store.ListOptions{State: []run.State{run.Pending, run.Scheduled, run.Running}, Limit: store.MaxLimit}
	for {
		page, err := feed.ListRuns(ctx, opts)
		if err != nil {
			return 0, fmt.Errorf("list unfinished runs: %w", err)
		}
		for _, r := range page.Runs {
			t.states[r.ID] = r.Status.State
		}
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	t.m.active.set(t.states)
	return rev, nil
}

// observe accounts for one event of the feed.
func (t *runTracker) observe(r *run.Run) {
	id := r.ID
	created := false
	switch {
	case id > t.maxID:
		from := max(t.maxID+1, id-maxGaps)
		for g := from; g < id; g++ {
			t.gaps[g] = struct{}{}
		}
		t.trimGaps()
		t.maxID = id
		created = true
	default:
		if _, ok := t.gaps[id]; ok {
			delete(t.gaps, id)
			created = true
		}
	}
	if created {
		t.m.runsCreated.WithLabelValues(string(r.Spec.Cause)).Inc()
	}
	prev, known := t.states[id]
	state := r.Status.State
	if !state.Terminal() {
		t.states[id] = state
		if !known || prev != state {
			t.m.active.move(prev, state)
		}
		return
	}
	if !known && !created {
		// Finished before lockstep started: a later write (a reporter
		// recording what it showed) is no new end.
		return
	}
	if known {
		delete(t.states, id)
		t.m.active.move(prev, "")
	}
	if s, f := r.Status.StartedAt, r.Status.FinishedAt; s != nil && f != nil && !f.Before(*s) {
		t.m.runDuration.WithLabelValues(r.Spec.Refs.Repo, r.Spec.Job, string(state)).Observe(f.Sub(*s).Seconds())
	}
}

// trimGaps forgets the oldest gaps beyond maxGaps.
func (t *runTracker) trimGaps() {
	for len(t.gaps) > maxGaps {
		oldest := t.maxID
		for g := range t.gaps {
			oldest = min(oldest, g)
		}
		delete(t.gaps, oldest)
	}
}

// activeRuns is the lockstep_runs collector: how many runs are in each
// unfinished state. It reports nothing until the first listing.
type activeRuns struct {
	desc *prometheus.Desc

	mu     sync.Mutex // mu guards counts and ready
	counts map[run.State]int
	ready  bool
}

func newActiveRuns() *activeRuns {
	return &activeRuns{
		desc: prometheus.NewDesc("lockstep_runs",
			"Runs that have not finished, by state (pending, scheduled, running).",
			[]string{"state"}, nil),
		counts: make(map[run.State]int),
	}
}

func (a *activeRuns) set(states map[run.ID]run.State) {
	counts := make(map[run.State]int)
	for _, s := range states {
		counts[s]++
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts = counts
	a.ready = true
}

// move counts one run out of state from and into state to; an empty state
// is none.
func (a *activeRuns) move(from, to run.State) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if from != "" {
		a.counts[from]--
	}
	if to != "" {
		a.counts[to]++
	}
}

// Describe implements prometheus.Collector.
func (a *activeRuns) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

// Collect implements prometheus.Collector.
func (a *activeRuns) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ready {
		return
	}
	for _, s := range []run.State{run.Pending, run.Scheduled, run.Running} {
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, float64(a.counts[s]), string(s))
	}
}
