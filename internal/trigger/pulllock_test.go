package trigger

import (
	"fmt"
	"sync"
	"testing"
)

// TestPullLocksExcludeAndForget holds each key's lock from many goroutines
// at once: no two ever hold one key together, and once every lock is
// released the map is empty again, however many keys it saw.
func TestPullLocksExcludeAndForget(t *testing.T) {
	t.Parallel()
	var (
		locks   pullLocks
		holders [8]int // holders[k] counts who holds key k; guarded by key k's lock
		wg      sync.WaitGroup
		bad     sync.Map
	)
	for g := range 32 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % len(holders)
				unlock := locks.lock(fmt.Sprintf("o/r#%d", k))
				holders[k]++
				if holders[k] != 1 {
					bad.Store(k, holders[k])
				}
				holders[k]--
				unlock()
			}
		})
	}
	wg.Wait()
	bad.Range(func(k, n any) bool {
		t.Errorf("key %v held by %v at once, want 1", k, n)
		return true
	})
	if n := locks.len(); n != 0 {
		t.Errorf("map holds %d entries after every lock was released, want 0", n)
	}

	// Many pull requests, one after the other: the map never grows past
	// the one being handled.
	for i := range 1000 {
		unlock := locks.lock(fmt.Sprintf("o/r#%d", i))
		if n := locks.len(); n != 1 {
			t.Fatalf("map holds %d entries while one lock is held, want 1", n)
		}
		unlock()
	}
	if n := locks.len(); n != 0 {
		t.Errorf("map holds %d entries at the end, want 0", n)
	}
}
