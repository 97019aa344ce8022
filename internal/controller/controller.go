// Package controller is lockstep's reconcile-loop runtime: keys go into
// client-go's rate-limited workqueue, which dedupes them and never hands one
// key to two workers at once, and workers call a level-based Reconciler for
// each. Keys come from Sources (a store's change feed) and from a periodic
// resync that lists everything again, so a lost notification only delays
// work.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Reconciler brings the world in line with the object named by key. It
// re-reads what it needs by key and never trusts the event that woke it,
// so calling it twice, or late, is harmless. The controller never calls
// it concurrently for one key.
type Reconciler[K comparable] interface {
	Reconcile(ctx context.Context, key K) (Result, error)
}

// ReconcilerFunc adapts a function to Reconciler.
type ReconcilerFunc[K comparable] func(ctx context.Context, key K) (Result, error)

// Reconcile calls f(ctx, key).
func (f ReconcilerFunc[K]) Reconcile(ctx context.Context, key K) (Result, error) {
	return f(ctx, key)
}

// Result tells the controller when to look at a key again without an
// event: after RequeueAfter, or never when it is zero.
type Result struct {
	RequeueAfter time.Duration
}

// terminalError marks an error that retrying cannot fix.
type terminalError struct{ err error }

func (e terminalError) Error() string { return e.err.Error() }
func (e terminalError) Unwrap() error { return e.err }

// Terminal wraps err so that the controller logs it and drops the key
// instead of retrying it with backoff.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return terminalError{err}
}

// IsTerminal reports whether err was wrapped by Terminal.
func IsTerminal(err error) bool {
	var t terminalError
	return errors.As(err, &t)
}

// Source feeds keys to a controller until ctx is done. It returns nil or
// ctx.Err() when ctx is done; any other error stops the controller.
//
// A source that watches a store must start from a revision read before
// the controller's first List (read it before calling Run): a write that
// lands between a listing and a watch's start would otherwise be seen by
// neither until the next resync.
type Source[K comparable] func(ctx context.Context, enqueue func(K)) error

// Lister enqueues every key the controller is responsible for; the
// controller calls it at start and at every resync.
type Lister[K comparable] func(ctx context.Context, enqueue func(K)) error

// Options configure a Controller. Name and Reconciler are required.
type Options[K comparable] struct {
	Name       string
	Reconciler Reconciler[K]
	// Workers is how many keys are reconciled at once; default 4.
	Workers int
	// Sources run for the controller's lifetime.
	Sources []Source[K]
	// Watches are the store feeds the controller follows; Run starts each
	// (reads its revision) before the first listing, then runs it for the
	// controller's lifetime.
	Watches []Watch[K]
	// List, if set, is called at start and then every Resync (default
	// five minutes).
	List   Lister[K]
	Resync time.Duration
	// Clock drives requeues and resyncs; default the real clock.
	Clock clock.WithTicker
	// RateLimiter spaces out retries of a failing key; default exponential
	// from 5 ms to 5 minutes.
	RateLimiter workqueue.TypedRateLimiter[K]
	// MetricsProvider receives the workqueue's metrics; optional.
	MetricsProvider workqueue.MetricsProvider
	// OnError, if set, is called with every reconcile error (for metrics).
	OnError func(err error)
	Logger  *slog.Logger
}

// Controller runs a Reconciler over a workqueue of keys. Create it with
// New, feed it with Add or Sources, and call Run once.
type Controller[K comparable] struct {
	opts  Options[K]
	queue workqueue.TypedRateLimitingInterface[K]
	log   *slog.Logger

	mu      sync.Mutex // mu guards started
	started bool
}

// New returns a controller; it does nothing until Run.
func New[K comparable](opts Options[K]) *Controller[K] {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Resync <= 0 {
		opts.Resync = 5 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.RateLimiter == nil {
		opts.RateLimiter = workqueue.NewTypedItemExponentialFailureRateLimiter[K](5*time.Millisecond, 5*time.Minute)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg := workqueue.TypedRateLimitingQueueConfig[K]{Clock: opts.Clock}
	if opts.MetricsProvider != nil {
		cfg.Name = opts.Name
		cfg.MetricsProvider = opts.MetricsProvider
	}
	return &Controller[K]{
		opts:  opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(opts.RateLimiter, cfg),
		log:   opts.Logger.With("controller", opts.Name),
	}
}

// Add queues key for reconciliation. Safe to call at any time, from any
// goroutine; a key already waiting is not queued twice.
func (c *Controller[K]) Add(key K) { c.queue.Add(key) }

// AddAfter queues key once d has passed on the controller's clock.
func (c *Controller[K]) AddAfter(key K, d time.Duration) { c.queue.AddAfter(key, d) }

// Len returns how many keys wait in the queue.
func (c *Controller[K]) Len() int { return c.queue.Len() }

// Run starts the sources, the resync and the workers, and blocks until ctx
// is done or a source fails. It shuts the queue down and waits for every
// goroutine it started before returning. Run may be called only once.
func (c *Controller[K]) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return fmt.Errorf("controller %s: Run called twice", c.opts.Name)
	}
	c.started = true
	c.mu.Unlock()
	if err := c.startWatches(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	// The queue must shut down when ctx is done so that workers blocked in
	// Get return; the errgroup's context covers a failing source too.
	g.Go(func() error {
		<-ctx.Done()
		c.queue.ShutDown()
		return nil
	})
	for _, src := range c.opts.Sources {
		g.Go(func() error {
			if err := src(ctx, c.Add); err != nil && ctx.Err() == nil {
				return fmt.Errorf("controller %s: source: %w", c.opts.Name, err)
			}
			return nil
		})
	}
	for _, w := range c.opts.Watches {
		g.Go(func() error { return w.Run(ctx, c.Add) })
	}
	if c.opts.List != nil {
		g.Go(func() error { return c.resync(ctx) })
	}
	for range c.opts.Workers {
		g.Go(func() error {
			for c.processNext(ctx) {
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (c *Controller[K]) resync(ctx context.Context) error {
	t := c.opts.Clock.NewTicker(c.opts.Resync)
	defer t.Stop()
	for {
		if err := c.opts.List(ctx, c.Add); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A failed listing is retried at the next tick: it only delays
			// work that the sources normally bring anyway.
			c.log.Error("resync failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

func (c *Controller[K]) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	res, err := c.reconcile(ctx, key)
	switch {
	case err != nil && ctx.Err() != nil:
		// Shutting down: the key will be found again by the next start's
		// listing.
		c.queue.Forget(key)
	case err != nil && IsTerminal(err):
		c.queue.Forget(key)
		c.log.Error("reconcile failed; not retrying", "key", key, "err", err)
		c.onError(err)
	case err != nil:
		c.queue.AddRateLimited(key)
		c.log.Warn("reconcile failed; will retry", "key", key, "err", err, "retries", c.queue.NumRequeues(key))
		c.onError(err)
	case res.RequeueAfter > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, res.RequeueAfter)
	default:
		c.queue.Forget(key)
	}
	return true
}

func (c *Controller[K]) onError(err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(err)
	}
}

// reconcile calls the reconciler, turning a panic into an error so that
// one bad object cannot stop the controller.
func (c *Controller[K]) reconcile(ctx context.Context, key K) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in reconcile of %v: %v", key, p)
		}
	}()
	return c.opts.Reconciler.Reconcile(ctx, key)
}
