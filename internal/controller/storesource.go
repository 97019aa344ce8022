package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// Feed is one change feed of a store: its revision, and a watch that
// calls fn with every event after a revision, in revision order, until ctx
// is done or it fails.
type Feed[E any] struct {
	Revision func(ctx context.Context) (int64, error)
	Watch    func(ctx context.Context, from int64, fn func(E) error) error
	// RevisionOf returns the store revision of an event, where a watch
	// resumes after it.
	RevisionOf func(E) int64
}

// StoreSource feeds a controller the keys of a store's change feed. It is
// the one way controllers read a feed: Start reads the revision before the
// controller's first listing, so that every write is seen by the listing
// or the watch; the watch then resumes from the last revision it passed
// on whenever the store fails (a PostgreSQL connection blip, a busy
// SQLite file), after a backoff, and never stops the controller for it.
// Set it in Options.Watches; the controller calls Start and Run.
type StoreSource[K comparable, E any] struct {
	feed  Feed[E]
	keys  func(ev E, enqueue func(K))
	clock clock.Clock
	log   *slog.Logger
	// OnEvent, if set, is called with the revision Start read, then with
	// the revision of every event passed on, after its keys were enqueued.
	OnEvent func(rev int64)

	// from is the revision the watch resumes after.
	from atomic.Int64
}

// Backoff bounds of StoreSource's retries.
const (
	minFeedBackoff = 100 * time.Millisecond
	maxFeedBackoff = 30 * time.Second
)

// NewStoreSource returns a source of the keys keys finds in each event of
// feed. clk times the retries (the real clock when nil); log is told
// about them.
func NewStoreSource[K comparable, E any](feed Feed[E], keys func(ev E, enqueue func(K)), clk clock.Clock, log *slog.Logger) *StoreSource[K, E] {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &StoreSource[K, E]{feed: feed, keys: keys, clock: clk, log: log}
}

// Start reads the revision the watch starts after, retrying with backoff
// while the store fails, until ctx is done.
func (s *StoreSource[K, E]) Start(ctx context.Context) error {
	backoff := minFeedBackoff
	for {
		rev, err := s.feed.Revision(ctx)
		if err == nil {
			s.from.Store(rev)
			if s.OnEvent != nil {
				s.OnEvent(rev)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("read store revision failed; retrying", "err", err, "retry_in", backoff)
		if !s.sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, maxFeedBackoff)
	}
}

// From returns the revision the watch resumes after.
func (s *StoreSource[K, E]) From() int64 { return s.from.Load() }

// Run watches the feed from the revision Start read, enqueuing keys, until
// ctx is done; a failing watch is resumed where it stopped.
func (s *StoreSource[K, E]) Run(ctx context.Context, enqueue func(K)) error {
	backoff := minFeedBackoff
	for {
		passed := false
		err := s.feed.Watch(ctx, s.from.Load(), func(ev E) error {
			s.keys(ev, enqueue)
			rev := s.feed.RevisionOf(ev)
			s.from.Store(rev)
			if s.OnEvent != nil {
				s.OnEvent(rev)
			}
			passed = true
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		if passed {
			backoff = minFeedBackoff
		}
		s.log.Warn("store feed failed; resuming", "from", s.from.Load(), "err", err, "retry_in", backoff)
		if !s.sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, maxFeedBackoff)
	}
}

// sleep waits d on the source's clock, or until ctx is done; it reports
// whether d passed.
func (s *StoreSource[K, E]) sleep(ctx context.Context, d time.Duration) bool {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// Watch is a source the controller starts before its first listing: a
// StoreSource.
type Watch[K comparable] interface {
	Start(ctx context.Context) error
	Run(ctx context.Context, enqueue func(K)) error
}

var _ Watch[int] = (*StoreSource[int, struct{}])(nil)

// startWatches starts the controller's watches, in order.
func (c *Controller[K]) startWatches(ctx context.Context) error {
	for _, w := range c.opts.Watches {
		if err := w.Start(ctx); err != nil {
			return fmt.Errorf("controller %s: start watch: %w", c.opts.Name, err)
		}
	}
	return nil
}

// RunWatcher is the run feed of a store.
type RunWatcher interface {
	Revision(ctx context.Context) (int64, error)
	WatchRuns(ctx context.Context, from int64, fn func(store.RunEvent) error) error
}

// RunFeed returns the run feed of s.
func RunFeed(s RunWatcher) Feed[store.RunEvent] {
	return Feed[store.RunEvent]{
		Revision:   s.Revision,
		Watch:      s.WatchRuns,
		RevisionOf: func(ev store.RunEvent) int64 { return ev.Revision },
	}
}

// DeliveryWatcher is the delivery feed of a store.
type DeliveryWatcher interface {
	Revision(ctx context.Context) (int64, error)
	WatchDeliveries(ctx context.Context, from int64, fn func(*store.Delivery) error) error
}

// DeliveryFeed returns the delivery feed of s.
func DeliveryFeed(s DeliveryWatcher) Feed[*store.Delivery] {
	return Feed[*store.Delivery]{
		Revision:   s.Revision,
		Watch:      s.WatchDeliveries,
		RevisionOf: func(d *store.Delivery) int64 { return d.ResourceVersion },
	}
}
