// Package periodic fires periodic jobs: it creates one run per due time of
// each periodic's schedule, applies its concurrency policy, and, for a job
// that tests builds, records which build each run tests.
//
// Each periodic has a store.Schedule holding its next due time. A
// Scheduler keeps every schedule in a heap ordered by due time and sleeps
// on one timer until the earliest is due; it does not start a goroutine
// per job. To handle a due time, a worker writes the schedule with a
// compare-and-swap on its ResourceVersion and, in the same transaction
// (store.Schedules.FireSchedule), creates the run under the trigger key
// run.PeriodicKey(repo, job, due). However many Schedulers share a store,
// and however often they restart, each due time is handled once: the
// losers of the compare-and-swap re-read the schedule and find it
// advanced, and a key that exists is never a second run.
//
// After downtime, a job that missed several due times fires once, for the
// latest of them, and the others are recorded on the schedule as Missed.
// A due time whose previous run is unfinished is skipped under
// concurrency_policy forbid (the default) and recorded as such; replace
// asks the runner to abort the previous run (the abort label) and fires;
// allow fires beside it. A run that hangs is aborted by the runner at its
// timeout, so it can silence a schedule for at most that long.
package periodic

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/builds"
	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Reasons recorded on skipped due times and on runs created failed.
const (
	ReasonMissed                = "Missed"                // no scheduler fired the due time in time (downtime)
	ReasonPreviousRunUnfinished = "PreviousRunUnfinished" // concurrency_policy forbid
	ReasonStaleBuild            = builds.ReasonStaleBuild // on_stale skip or fail
	ReasonNoBuild               = builds.ReasonNoBuild    // the job consumes builds and there is none
	// ReasonReplaced is the abort reason of a run replaced under
	// concurrency_policy replace.
	ReasonReplaced = "Replaced"
)

// Store is what a Scheduler reads and writes.
type Store interface {
	GetRun(ctx context.Context, id run.ID) (*run.Run, error)
	UpdateRun(ctx context.Context, r *run.Run) (*run.Run, error)
	store.Schedules
	builds.Reader
}

// Options configure a Scheduler. Store and Config are required.
type Options struct {
	Store Store
	// Config returns the current configuration; the Scheduler reads it at
	// every resync and whenever Wake is called.
	Config func() *config.Config
	Clock  clock.Clock
	Logger *slog.Logger
	// Registerer, if set, receives the Scheduler's metrics.
	Registerer prometheus.Registerer
	// Workers is how many due times are handled at once; default 128.
	// When many periodics share a due time (cron "0 * * * *"), their
	// writes are committed together, so more workers drain the burst
	// sooner: 128 fills the SQLite store's group commit.
	Workers int
	// Resync is how often the configuration and the stored schedules are
	// read again, to follow configuration changes and other schedulers'
	// progress; default one minute.
	Resync time.Duration
	// RetryDelay is how long a job whose due time could not be handled
	// (the store failed) waits before the next attempt; default five
	// seconds.
	RetryDelay time.Duration
}

// Scheduler fires periodic jobs. Create it with New and call Run once.
type Scheduler struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	// wake is signalled, without blocking, when the loop should look at
	// the heap again before its timer ends.
	wake chan struct{}

	// mu guards entries, due, jobs and cfg.
	mu      sync.Mutex
	entries map[jobKey]*entry
	due     entryHeap
	// jobs indexes the periodics of cfg.
	jobs map[jobKey]job
	cfg  *config.Config
}

// jobKey identifies a periodic.
type jobKey struct{ repo, job string }

func (k jobKey) String() string { return k.repo + "/" + k.job }

// job is a configured periodic and what firing it needs besides.
type job struct {
	periodic config.Periodic
	schedule config.Schedule
	spec     string
	cloneURL string
	// executorConfig is run.Spec.ExecutorConfig for the job's runs.
	executorConfig []byte
}

// jobOf returns the job of periodic p of repository repo in cfg, but for
// its schedule: everything its runs are made of, whether the schedule
// fires them or an administrator runs the job now.
func jobOf(cfg *config.Config, repo string, p config.Periodic) job {
	return job{periodic: p, spec: specOf(p), cloneURL: cfg.Repos[repo].EffectiveCloneURL(repo),
		executorConfig: p.ExecutorConfig(cfg.GitLab)}
}

// entry is a periodic's place in the heap. While in the heap (index ≥ 0)
// the loop owns it; while in flight a worker does.
type entry struct {
	key   jobKey
	next  time.Time
	sched *store.Schedule
	index int
	// inflight is true while a worker handles the entry; gone marks an
	// entry removed from the configuration meanwhile.
	inflight, gone bool
}

// New returns a Scheduler, registering its metrics on opts.Registerer.
func New(opts Options) (*Scheduler, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = 128
	}
	if opts.Resync <= 0 {
		opts.Resync = time.Minute
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 5 * time.Second
	}
	s := &Scheduler{
		opts:    opts,
		log:     opts.Logger.With("controller", "periodic"),
		metrics: newMetrics(),
		wake:    make(chan struct{}, 1),
		entries: map[jobKey]*entry{},
	}
	if opts.Registerer != nil {
		if err := s.metrics.register(opts.Registerer); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Wake makes the Scheduler read the configuration again soon; call it
// when the configuration changes. It never blocks.
func (s *Scheduler) Wake() {
	s.mu.Lock()
	s.cfg = nil // forces a sync
	s.mu.Unlock()
	s.signal()
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run fires periodics until ctx is done. It returns nil when ctx is
// canceled; every goroutine it starts has ended when it returns.
func (s *Scheduler) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan *entry)
	for range s.opts.Workers {
		g.Go(func() error {
			for e := range work {
				s.handle(ctx, e)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(work)
		return s.loop(ctx, work)
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// loop hands due entries to the workers and sleeps until the next is due.
func (s *Scheduler) loop(ctx context.Context, work chan<- *entry) error {
	clk := s.opts.Clock
	var nextSync time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := clk.Now()
		s.mu.Lock()
		stale := s.cfg != s.opts.Config()
		s.mu.Unlock()
		if stale || !now.Before(nextSync) {
			if err := s.sync(ctx, now); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.log.Error("sync schedules", "err", err)
			}
			nextSync = now.Add(s.opts.Resync)
		}
		due := s.popDue(now)
		for _, e := range due {
			select {
			case work <- e:
			case <-ctx.Done():
				return nil
			}
		}
		if len(due) > 0 {
			continue
		}
		wakeAt := nextSync
		s.mu.Lock()
		if len(s.due) > 0 && s.due[0].next.Before(wakeAt) {
			wakeAt = s.due[0].next
		}
		s.mu.Unlock()
		timer := clk.NewTimer(wakeAt.Sub(now))
		// The clock may have passed wakeAt while the timer was armed
		// from an earlier reading.
		if !clk.Now().Before(wakeAt) {
			timer.Stop()
			continue
		}
		select {
		case <-ctx.Done():
		case <-timer.C():
		case <-s.wake:
		}
		timer.Stop()
	}
}

// popDue removes the entries due at now from the heap and marks them in
// flight.
func (s *Scheduler) popDue(now time.Time) []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*entry
	for len(s.due) > 0 && !s.due[0].next.After(now) {
		e := heap.Pop(&s.due).(*entry)
		e.inflight = true
		out = append(out, e)
	}
	return out
}

// handle handles entry e's due time on a worker, then puts it back in
// the heap.
func (s *Scheduler) handle(ctx context.Context, e *entry) {
	if ctx.Err() == nil {
		s.fire(ctx, e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.inflight = false
	if e.gone {
		delete(s.entries, e.key)
		return
	}
	heap.Push(&s.due, e)
	s.signal()
}

// sync brings the entries in line with the configuration and the stored
// schedules: new periodics get a schedule (created if no scheduler made
// one yet), removed ones leave the heap, and schedules advanced by
// another scheduler are taken as they are stored.
func (s *Scheduler) sync(ctx context.Context, now time.Time) error {
	cfg := s.opts.Config()
	jobs := map[jobKey]job{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Repos)) {
		r := cfg.Repos[name]
		if r == nil {
			continue
		}
		for _, p := range r.Periodics {
			sched, err := p.Schedule()
			if err != nil {
				s.log.Error("periodic has no valid schedule", "repo", name, "job", p.Name, "err", err)
				continue
			}
			j := jobOf(cfg, name, p)
			j.schedule = sched
			jobs[jobKey{name, p.Name}] = j
		}
	}
	stored, err := s.opts.Store.ListSchedules(ctx)
	if err != nil {
		return fmt.Errorf("list schedules: %w", err)
	}
	byKey := make(map[jobKey]*store.Schedule, len(stored))
	for _, sc := range stored {
		byKey[jobKey{sc.Repo, sc.Job}] = sc
	}

	s.mu.Lock()
	s.cfg, s.jobs = cfg, jobs
	var missing []jobKey
	for k, j := range jobs {
		e, ok := s.entries[k]
		if !ok {
			if sc := byKey[k]; sc != nil {
				s.add(k, sc)
			} else {
				missing = append(missing, k)
			}
			continue
		}
		e.gone = false
		if e.inflight {
			continue
		}
		if sc := byKey[k]; sc != nil && sc.ResourceVersion > e.sched.ResourceVersion {
			e.sched, e.next = sc, sc.Next
		}
		if e.sched.Spec != j.spec {
			e.next = now // a worker plans it again
		}
		heap.Fix(&s.due, e.index)
	}
	for k, e := range s.entries {
		if _, ok := jobs[k]; ok {
			continue
		}
		if e.inflight {
			e.gone = true
			continue
		}
		heap.Remove(&s.due, e.index)
		delete(s.entries, k)
	}
	s.mu.Unlock()

	slices.SortFunc(missing, func(a, b jobKey) int {
		return cmp.Or(cmp.Compare(a.repo, b.repo), cmp.Compare(a.job, b.job))
	})
	for _, k := range missing {
		j := jobs[k]
		sc, err := s.opts.Store.CreateSchedule(ctx, &store.Schedule{
			Repo: k.repo, Job: k.job, Spec: j.spec, Next: firstDue(k, j, now),
		})
		if err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return fmt.Errorf("create schedule of %s: %w", k, err)
		}
		s.mu.Lock()
		if _, ok := s.entries[k]; !ok {
			s.add(k, sc)
		}
		s.mu.Unlock()
	}
	return nil
}

// add puts a new entry for schedule sc in the heap. s.mu must be held.
func (s *Scheduler) add(k jobKey, sc *store.Schedule) {
	e := &entry{key: k, sched: sc, next: sc.Next}
	s.entries[k] = e
	heap.Push(&s.due, e)
}

// specOf returns how p's schedule is written in its store.Schedule.
func specOf(p config.Periodic) string {
	if p.Cron != "" {
		tz := p.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		return "cron " + p.Cron + " " + tz
	}
	return "interval " + p.Interval.Duration.String()
}

// firstDue returns the first due time after now of periodic j, new or
// with a changed schedule. An interval periodic's due times fall at a
// phase within the interval derived from its name, so that periodics
// sharing an interval do not all fire at once; a cron periodic's are the
// times its expression names.
func firstDue(k jobKey, j job, now time.Time) time.Time {
	if iv := j.periodic.Interval.Duration; j.periodic.Cron == "" && iv > 0 {
		h := fnv.New64a()
		h.Write([]byte(k.String()))
		// Whole seconds: due times are keyed by the second.
		phase := time.Duration(h.Sum64() % uint64(iv))
		if iv >= time.Second {
			phase = phase.Truncate(time.Second)
		}
		t := now.Truncate(iv).Add(phase)
		for !t.After(now) {
			t = t.Add(iv)
		}
		return t
	}
	return j.schedule.Next(now)
}

// entryHeap orders entries by due time.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
