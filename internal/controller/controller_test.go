package controller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// start runs c in the background and returns a function that stops it and
// returns Run's error.
func start[K comparable](t *testing.T, c *Controller[K]) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func fastLimiter[K comparable]() workqueue.TypedRateLimiter[K] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[K](time.Microsecond, time.Millisecond)
}

func TestOneWorkerPerKey(t *testing.T) {
	t.Parallel()
	const keys, adds = 8, 2000
	var (
		mu       sync.Mutex
		inFlight = map[int]int{}
		overlap  atomic.Int32
		calls    atomic.Int32
	)
	c := New(Options[int]{
		Name:    "test",
		Workers: 16,
		Reconciler: ReconcilerFunc[int](func(ctx context.Context, key int) (Result, error) {
			mu.Lock()
			inFlight[key]++
			if inFlight[key] > 1 {
				overlap.Add(1)
			}
			mu.Unlock()
			calls.Add(1)
			for range 1000 { // give other workers a chance to collide
			}
			mu.Lock()
			inFlight[key]--
			mu.Unlock()
			return Result{}, nil
		}),
	})
	stop := start(t, c)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range adds / 8 {
				c.Add((g + i) % keys)
			}
		})
	}
	wg.Wait()
	waitFor(t, "queue to drain", func() bool { return c.Len() == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := overlap.Load(); got != 0 {
		t.Errorf("a key was reconciled by two workers at once %d times, want 0", got)
	}
	if got := calls.Load(); got == 0 || got > adds {
		t.Errorf("reconcile calls = %d, want between 1 and %d (adds are deduplicated)", got, adds)
	}
}

func TestErrorsRetryTerminalDoesNot(t *testing.T) {
	t.Parallel()
	var transient, terminal atomic.Int32
	var reported atomic.Int32
	c := New(Options[string]{
		Name:        "test",
		RateLimiter: fastLimiter[string](),
		OnError:     func(error) { reported.Add(1) },
		Reconciler: ReconcilerFunc[string](func(ctx context.Context, key string) (Result, error) {
			switch key {
			case "transient":
				if transient.Add(1) < 3 {
					return Result{}, errors.New("try again")
				}
			case "terminal":
				terminal.Add(1)
				return Result{}, Terminal(errors.New("hopeless"))
			}
			return Result{}, nil
		}),
	})
	stop := start(t, c)
	c.Add("transient")
	c.Add("terminal")
	waitFor(t, "transient key to succeed", func() bool { return transient.Load() == 3 })
	waitFor(t, "terminal key to be tried", func() bool { return terminal.Load() == 1 })
	waitFor(t, "queue to drain", func() bool { return c.Len() == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := terminal.Load(); got != 1 {
		t.Errorf("terminal key reconciled %d times, want 1", got)
	}
	if got := reported.Load(); got != 3 {
		t.Errorf("OnError called %d times, want 3 (2 transient + 1 terminal)", got)
	}
}

func TestRequeueAfterFollowsClock(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var calls atomic.Int32
	c := New(Options[string]{
		Name:  "test",
		Clock: clk,
		Reconciler: ReconcilerFunc[string](func(ctx context.Context, key string) (Result, error) {
			calls.Add(1)
			return Result{RequeueAfter: time.Minute}, nil
		}),
	})
	start(t, c)
	c.Add("k")
	waitFor(t, "first reconcile", func() bool { return calls.Load() == 1 })
	waitFor(t, "requeue timer", func() bool { return clk.HasWaiters() })
	clk.Step(59 * time.Second)
	if got := calls.Load(); got != 1 {
		t.Fatalf("reconciled %d times before RequeueAfter passed, want 1", got)
	}
	clk.Step(time.Second)
	waitFor(t, "second reconcile", func() bool { return calls.Load() == 2 })
}

func TestSourcesAndResync(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var lists atomic.Int32
	var mu sync.Mutex
	seen := map[string]int{}
	c := New(Options[string]{
		Name:   "test",
		Clock:  clk,
		Resync: time.Minute,
		Sources: []Source[string]{func(ctx context.Context, enqueue func(string)) error {
			enqueue("from-source")
			<-ctx.Done()
			return ctx.Err()
		}},
		List: func(ctx context.Context, enqueue func(string)) error {
			lists.Add(1)
			enqueue("from-list")
			return nil
		},
		Reconciler: ReconcilerFunc[string](func(ctx context.Context, key string) (Result, error) {
			mu.Lock()
			seen[key]++
			mu.Unlock()
			return Result{}, nil
		}),
	})
	stop := start(t, c)
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return seen[k] }
	waitFor(t, "source key", func() bool { return count("from-source") == 1 })
	waitFor(t, "initial listing", func() bool { return count("from-list") == 1 })
	waitFor(t, "resync ticker", func() bool { return clk.HasWaiters() })
	clk.Step(time.Minute)
	waitFor(t, "resync listing", func() bool { return count("from-list") == 2 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := lists.Load(); got != 2 {
		t.Errorf("List called %d times, want 2", got)
	}
}

func TestFailingSourceStopsRun(t *testing.T) {
	t.Parallel()
	c := New(Options[int]{
		Name: "test",
		Sources: []Source[int]{func(ctx context.Context, enqueue func(int)) error {
			return errors.New("feed broken")
		}},
		Reconciler: ReconcilerFunc[int](func(ctx context.Context, key int) (Result, error) { return Result{}, nil }),
	})
	err := c.Run(context.Background())
	if err == nil || err.Error() != "controller test: source: feed broken" {
		t.Fatalf("Run = %v, want the source's error", err)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("second Run succeeded, want an error")
	}
}

func TestPanicBecomesError(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	c := New(Options[int]{
		Name:        "test",
		RateLimiter: fastLimiter[int](),
		Reconciler: ReconcilerFunc[int](func(ctx context.Context, key int) (Result, error) {
			if calls.Add(1) == 1 {
				panic("boom")
			}
			return Result{}, nil
		}),
	})
	start(t, c)
	c.Add(1)
	waitFor(t, "retry after panic", func() bool { return calls.Load() == 2 })
}
