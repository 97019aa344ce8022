package periodic

import (
	"context"
	"fmt"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// jumpClock is a clock.Clock that, once resumed, runs at the speed of
// real time, and that a benchmark moves forward over idle stretches with
// JumpTo. Lateness measured on it is real: time passes while work is done,
// and only time in which nothing was due is skipped.
type jumpClock struct {
	// mu guards every field.
	mu      sync.Mutex
	base    time.Time // the clock's time at realRef
	realRef time.Time
	running bool
	timers  map[*jumpTimer]bool
}

var _ clock.Clock = (*jumpClock)(nil)

func newJumpClock(t time.Time) *jumpClock {
	return &jumpClock{base: t, timers: map[*jumpTimer]bool{}}
}

func (c *jumpClock) nowLocked() time.Time {
	if !c.running {
		return c.base
	}
	return c.base.Add(time.Since(c.realRef))
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *jumpClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Resume starts the clock running with real time.
func (c *jumpClock) Resume() {
	c.mu.Lock()
	c.base, c.realRef, c.running = c.nowLocked(), time.Now(), true
	due := c.rearmLocked()
	c.mu.Unlock()
	fireAll(due)
}

// JumpTo moves the clock to t, if t is ahead, firing the timers due.
func (c *jumpClock) JumpTo(t time.Time) {
	c.mu.Lock()
	if t.After(c.nowLocked()) {
		c.base, c.realRef = t, time.Now()
	}
	due := c.rearmLocked()
	c.mu.Unlock()
	fireAll(due)
}

// rearmLocked arms every timer for the time left to its deadline and
// returns those already due, removed from the clock.
func (c *jumpClock) rearmLocked() []*jumpTimer {
	var due []*jumpTimer
	now := c.nowLocked()
	for t := range c.timers {
		if t.real != nil {
			t.real.Stop()
			t.real = nil
		}
		if !t.deadline.After(now) {
			due = append(due, t)
			delete(c.timers, t)
			continue
		}
		if c.running {
			t.real = time.AfterFunc(t.deadline.Sub(now), t.expire)
		}
	}
	return due
}

func fireAll(ts []*jumpTimer) {
	for _, t := range ts {
		t.send()
	}
}

func (c *jumpClock) NewTimer(d time.Duration) clock.Timer {
	t := &jumpTimer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

func (c *jumpClock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }
func (c *jumpClock) Sleep(d time.Duration)                  { <-c.After(d) }
func (c *jumpClock) Tick(d time.Duration) <-chan time.Time {
	panic("jumpClock: Tick is not implemented")
}

// jumpTimer is a timer of a jumpClock.
type jumpTimer struct {
	c        *jumpClock
	ch       chan time.Time
	deadline time.Time
	real     *time.Timer
}

func (t *jumpTimer) C() <-chan time.Time { return t.ch }

func (t *jumpTimer) send() {
	select {
	case t.ch <- t.deadline:
	default:
	}
}

// expire is called by the real timer when the deadline should have come.
func (t *jumpTimer) expire() {
	c := t.c
	c.mu.Lock()
	if !c.timers[t] {
		c.mu.Unlock()
		return
	}
	if now := c.nowLocked(); now.Before(t.deadline) {
		t.real = time.AfterFunc(t.deadline.Sub(now), t.expire)
		c.mu.Unlock()
		return
	}
	delete(c.timers, t)
	c.mu.Unlock()
	t.send()
}

func (t *jumpTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	active := c.timers[t]
	delete(c.timers, t)
	if t.real != nil {
		t.real.Stop()
		t.real = nil
	}
	return active
}

func (t *jumpTimer) Reset(d time.Duration) bool {
	active := t.Stop()
	c := t.c
	c.mu.Lock()
	now := c.nowLocked()
	t.deadline = now.Add(d)
	if !t.deadline.After(now) {
		c.mu.Unlock()
		t.send()
		return active
	}
	c.timers[t] = true
	if c.running {
		t.real = time.AfterFunc(d, t.expire)
	}
	c.mu.Unlock()
	return active
}

// manyJobs returns a configuration of n periodics, 100 per repository,
// each with schedule (a YAML line).
func manyJobs(n int, schedule string) string {
	var b strings.Builder
	b.WriteString("repos:\n")
	for i := range n {
		if i%100 == 0 {
			fmt.Fprintf(&b, "  acme/repo-%d:\n    periodics:\n", i/100)
		}
		fmt.Fprintf(&b, "      - name: job-%d\n        %s\n        run: \"true\"\n        concurrency_policy: allow\n", i, schedule)
	}
	return b.String()
}

// BenchmarkTenThousandJobs fires 10,000 periodics with one-minute
// schedules, one simulated minute per iteration, against a real SQLite
// store. The clock runs at real speed and jumps only over time in which
// nothing is due, so lateness is what a real clock would see. It reports
// the process CPU time per simulated minute, and the lateness of the
// fires (the run's creation in the store minus its due time), p50, p99 and
// max. interval spreads the 10,000 due times over the minute; cron fires
// them all at the top of it.
//
//	go test -run '^$' -bench TenThousandJobs -benchtime 5x ./internal/periodic/
func BenchmarkTenThousandJobs(b *testing.B) {
	for _, bc := range []struct{ name, schedule string }{
		{"interval", "interval: 1m"},
		{"cron", `cron: "* * * * *"`},
	} {
		b.Run(bc.name, func(b *testing.B) { benchmarkJobs(b, 10_000, bc.schedule) })
	}
}

func benchmarkJobs(b *testing.B, jobs int, schedule string) {
	ctx := context.Background()
	cfg, err := config.Parse(strings.NewReader(manyJobs(jobs, schedule)), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	clk := newJumpClock(start)
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "lockstep.db"), sqlite.WithClock(clk), sqlite.WithPollInterval(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s, err := New(Options{
		Store: st, Config: func() *config.Config { return cfg }, Clock: clk,
		Logger: quietLogger(), Registerer: prometheus.NewRegistry(), Resync: 24 * time.Hour,
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()

	// The clock stands still while the schedules are created.
	var scheds []*store.Schedule
	waitFor(b, "the schedules", func() bool {
		scheds, err = st.ListSchedules(ctx)
		return err == nil && len(scheds) == jobs
	})
	var dues []time.Time
	dueOf := map[string]time.Time{}
	for _, sc := range scheds {
		for m := range b.N {
			due := sc.Next.Add(time.Duration(m) * time.Minute)
			dues = append(dues, due)
			dueOf[run.PeriodicKey(sc.Repo, sc.Job, due)] = due
		}
	}
	slices.SortFunc(dues, func(a, b time.Time) int { return a.Compare(b) })
	fired := func() int { return (&scheduler{Scheduler: s}).fired(outcomeRun) }

	cpu0, _ := processCPU()
	b.ResetTimer()
	clk.Resume()
	for i, d := range dues {
		if clk.Now().Before(d) {
			// Skip ahead only once every earlier due time has fired.
			waitFor(b, fmt.Sprintf("%d fires", i), func() bool { return fired() >= i })
			clk.JumpTo(d)
		}
	}
	waitFor(b, "the last fires", func() bool { return fired() >= len(dues) })
	b.StopTimer()
	cpu1, _ := processCPU()

	var late []time.Duration
	for r, err := range allRuns(ctx, st) {
		if err != nil {
			b.Fatal(err)
		}
		due, ok := dueOf[r.Spec.TriggerKey]
		if !ok {
			b.Fatalf("run %d has key %s, of no due time", r.ID, r.Spec.TriggerKey)
		}
		late = append(late, r.CreatedAt.Sub(due))
	}
	if len(late) != len(dues) {
		b.Fatalf("%d runs, want %d", len(late), len(dues))
	}
	slices.Sort(late)
	pct := func(p float64) float64 { return float64(late[int(p*float64(len(late)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(float64(cpu1-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/sim-min")
	b.ReportMetric(pct(0.50), "p50-late-ms")
	b.ReportMetric(pct(0.99), "p99-late-ms")
	b.ReportMetric(pct(1), "max-late-ms")
	b.ReportMetric(float64(len(dues))/float64(b.N), "fires/sim-min")
}

// allRuns yields every run of st, newest first.
func allRuns(ctx context.Context, st *sqlite.Store) iter.Seq2[*run.Run, error] {
	return func(yield func(*run.Run, error) bool) {
		opts := store.ListOptions{Limit: store.MaxLimit}
		for {
			page, err := st.ListRuns(ctx, opts)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, r := range page.Runs {
				if !yield(r, nil) {
					return
				}
			}
			if page.Continue == "" {
				return
			}
			opts.Continue = page.Continue
		}
	}
}
