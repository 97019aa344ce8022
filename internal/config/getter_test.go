package config

import (
	"sync"
	"testing"
)

func TestGetter(t *testing.T) {
	t.Parallel()
	a, b := Default(), Default()
	g := NewGetter(a)
	if g.Get() != a {
		t.Fatalf("Get() did not return the initial config")
	}
	var seen []*Config
	g.OnChange(func(c *Config) { seen = append(seen, c) })
	g.OnChange(func(c *Config) { seen = append(seen, c) })
	g.Set(b)
	if g.Get() != b {
		t.Errorf("Get() after Set did not return the new config")
	}
	if len(seen) != 2 || seen[0] != b || seen[1] != b {
		t.Errorf("subscribers saw %v, want the new config twice", seen)
	}
}

func TestNewGetterNil(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Errorf("NewGetter(nil) did not panic")
		}
	}()
	NewGetter(nil)
}

// TestGetterConcurrent gets, sets and subscribes from many goroutines;
// run with -race.
func TestGetterConcurrent(t *testing.T) {
	t.Parallel()
	g := NewGetter(Default())
	var mu sync.Mutex
	calls := 0
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if i%4 == 0 {
				g.OnChange(func(*Config) {
					mu.Lock()
					calls++
					mu.Unlock()
				})
			}
			for range 100 {
				if i%2 == 0 {
					g.Set(Default())
				}
				if g.Get() == nil {
					t.Errorf("Get() = nil")
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 {
		t.Errorf("no subscriber was called")
	}
}
