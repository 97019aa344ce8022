package trigger

import "sync"

// pullLocks serializes the handling of each pull request. An entry lives
// only while someone holds or waits for its lock, so the map is as large
// as the number of pull requests being handled at once, however many a
// leader sees in its term. The zero value is ready to use.
type pullLocks struct {
	// mu guards m and the refs of its entries.
	mu sync.Mutex
	m  map[string]*pullLock
}

// pullLock is one pull request's lock.
type pullLock struct {
	mu sync.Mutex
	// refs counts who holds or waits for mu; guarded by pullLocks.mu.
	refs int
}

// lock takes key's lock, waiting for its holder, and returns the function
// that releases it.
func (p *pullLocks) lock(key string) (unlock func()) {
	p.mu.Lock()
	if p.m == nil {
		p.m = make(map[string]*pullLock)
	}
	l := p.m[key]
	if l == nil {
		l = new(pullLock)
		p.m[key] = l
	}
	l.refs++
	p.mu.Unlock()

	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(p.m, key)
		}
		p.mu.Unlock()
	}
}

// len returns how many entries the map holds.
func (p *pullLocks) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}
