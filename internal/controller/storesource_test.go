package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// flakyFeed is a feed of integer events whose watch fails after each
// event it delivers, the way a store's feed fails when its connection
// drops; its revision read fails the first time.
type flakyFeed struct {
	mu       sync.Mutex
	events   []int64
	revFails int
	watches  []int64 // the from of every watch
}

func (f *flakyFeed) feed() Feed[int64] {
	return Feed[int64]{
		Revision: func(ctx context.Context) (int64, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.revFails > 0 {
				f.revFails--
				return 0, errors.New("connection refused")
			}
			return 0, nil
		},
		Watch: func(ctx context.Context, from int64, fn func(int64) error) error {
			f.mu.Lock()
			f.watches = append(f.watches, from)
			var next []int64
			for _, ev := range f.events {
				if ev > from {
					next = append(next, ev)
				}
			}
			f.mu.Unlock()
			if len(next) == 0 {
				<-ctx.Done()
				return ctx.Err()
			}
			if err := fn(next[0]); err != nil {
				return err
			}
			return errors.New("connection reset by peer")
		},
		RevisionOf: func(ev int64) int64 { return ev },
	}
}

// TestStoreSourceResumesAfterErrors checks that a failing store costs the
// source retries, never the controller, and that every event is passed on
// once, resuming after the last one seen.
func TestStoreSourceResumesAfterErrors(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	f := &flakyFeed{events: []int64{1, 2, 3, 4, 5}, revFails: 2}
	src := NewStoreSource(f.feed(), func(ev int64, enqueue func(int64)) { enqueue(ev) }, clk, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	got := make(chan int64, 10)
	done := make(chan error, 1)
	go func() {
		if err := src.Start(ctx); err != nil {
			done <- err
			return
		}
		done <- src.Run(ctx, func(k int64) { got <- k })
	}()
	var keys []int64
	deadline := time.Now().Add(30 * time.Second)
	for len(keys) < 5 {
		select {
		case k := <-got:
			keys = append(keys, k)
		case err := <-done:
			t.Fatalf("source ended: %v", err)
		default:
			if time.Now().After(deadline) {
				t.Fatalf("got keys %v, want 1 to 5", keys)
			}
			// Let the retries' timers fire.
			if clk.HasWaiters() {
				clk.Step(maxFeedBackoff)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i, k := range keys {
		if k != int64(i+1) {
			t.Fatalf("keys: got %v, want 1 to 5 in order, once each", keys)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: got %v, want nil", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Each event came from a watch resumed after the one before; a sixth
	// watch, from 5, may or may not have started before the cancel.
	if want := []int64{0, 1, 2, 3, 4}; len(f.watches) < len(want) {
		t.Errorf("watches started from %v, want %v", f.watches, want)
	} else {
		for i := range want {
			if f.watches[i] != want[i] {
				t.Errorf("watches started from %v, want %v", f.watches, want)
				break
			}
		}
	}
}
