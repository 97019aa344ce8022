package config

import (
	"sync"
	"sync/atomic"
)

// Getter holds the current configuration. Get is cheap and safe for
// concurrent use; Watch replaces the configuration when its file changes.
// Callers Get once per unit of work (one reconcile, one request) and use
// that *Config throughout, so that a reload never mixes two
// configurations in one decision. The zero Getter is not usable: create
// one with NewGetter.
type Getter struct {
	cur atomic.Pointer[Config]

	// setMu serializes Set, so subscribers see configurations in the
	// order they were set.
	setMu sync.Mutex
	// mu guards subs.
	mu   sync.Mutex
	subs []func(*Config)
}

// NewGetter returns a Getter holding c, which must be a validated,
// non-nil configuration.
func NewGetter(c *Config) *Getter {
	if c == nil {
		panic("config: NewGetter called with a nil *Config")
	}
	g := &Getter{}
	g.cur.Store(c)
	return g
}

// Get returns the current configuration. It is shared: treat it as
// read-only.
func (g *Getter) Get() *Config {
	return g.cur.Load()
}

// Set makes c, which must be validated and non-nil, the current
// configuration, then calls every OnChange subscriber with it.
func (g *Getter) Set(c *Config) {
	if c == nil {
		panic("config: Getter.Set called with a nil *Config")
	}
	g.setMu.Lock()
	defer g.setMu.Unlock()
	g.cur.Store(c)
	g.mu.Lock()
	subs := g.subs
	g.mu.Unlock()
	for _, fn := range subs {
		fn(c)
	}
}

// OnChange registers fn to be called with each configuration Set after
// this call, in order, from the goroutine that calls Set (Watch's). fn
// must return quickly (for example by queueing work) and must not call
// Set.
func (g *Getter) OnChange(fn func(*Config)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.subs = append(g.subs[:len(g.subs):len(g.subs)], fn)
}
