// Package reporter makes the forge show, for every commit and status
// context, the state of the newest run of that context: desired state,
// not an echo of events. Its unit of work is a Key (repository, commit,
// context). Reconciling a key re-reads every run of that commit and
// context from the store, picks the newest run whose job still reports,
// works out the status that run should show (StatusFor), and writes it to
// the forge only when it differs from what lockstep last showed for that
// run.
//
// What was shown is recorded on the run itself, in Status.Reported under
// the reporter's name (Prow's crier keeps PrevReportStates for the same
// purpose), so that a restart re-posts nothing and a run that is not the
// newest of its context never writes: a pipeline superseded by a newer one
// cannot leave its failure on a pull request after the newer one passed.
//
// Keys come from the store's run feed and from a periodic resync that
// lists unfinished and recently created runs, and the runs on the head
// commits of open pull requests, where the contexts of jobs removed from
// the configuration are retired (set to success, as Prow's
// status-reconciler does).
package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// DefaultName is the reporter's default name: its key in
// run.Status.Reported.
const DefaultName = "github"

// Forge is what the reporter needs from the forge: commit statuses, and
// the open pull requests, whose head commits are where the contexts of
// removed jobs are retired. Implementations are safe for concurrent use
// and wait out rate limits themselves (the transport chain does).
type Forge interface {
	forge.Statuses
	ListOpenPulls(ctx context.Context, repo string) ([]*forge.Pull, error)
}

// Options configure a Reporter. Store, Forge and Config are required.
type Options struct {
	Store store.Runs
	Forge Forge
	// Config returns the current configuration. Each reconcile reads it
	// once: which jobs exist, which skip reporting, and base_url for the
	// statuses' links.
	Config func() *config.Config
	// Clock drives resyncs and requeues; default the real clock.
	Clock  clock.WithTicker
	Logger *slog.Logger
	// Workers is how many keys are reconciled, and so how many statuses
	// written, at once; default 8.
	Workers int
	// Name is the reporter's key in run.Status.Reported; default
	// DefaultName.
	Name string
	// Resync is how often runs are listed again; default five minutes.
	Resync time.Duration
	// Recent bounds the finished runs a resync looks at: those created
	// within Recent (default 24 hours), at most MaxRecent of them
	// (default 10,000). Unfinished runs are always looked at.
	Recent    time.Duration
	MaxRecent int
	// OnError, if set, is called with every reconcile error (metrics).
	OnError func(error)
	// OnConflict, if set, is called for every write of Status.Reported
	// that met a conflict and is retried (metrics).
	OnConflict func()
	// MetricsProvider receives the workqueue's metrics; optional.
	MetricsProvider workqueue.MetricsProvider
}

// Key names one commit status: a context on a commit of a repository.
type Key struct {
	Repo    string
	SHA     string
	Context string
}

// String returns "owner/name@sha/context".
func (k Key) String() string { return k.Repo + "@" + k.SHA + "/" + k.Context }

// KeyOf returns the commit status run r reports under, and false for runs
// that never report: periodic and manual runs, and runs without a
// repository or commit.
func KeyOf(r *run.Run) (Key, bool) {
	if r.Spec.Type != run.Presubmit && r.Spec.Type != run.Postsubmit {
		return Key{}, false
	}
	k := Key{Repo: r.Spec.Refs.Repo, SHA: r.Spec.Refs.SHA(), Context: r.Spec.StatusContext()}
	if k.Repo == "" || k.SHA == "" || k.Context == "" {
		return Key{}, false
	}
	return k, true
}

// Reporter is the commit status reconciler. Create it with New and call
// Run once; Reconcile and Enqueue are safe for concurrent use.
type Reporter struct {
	opts  Options
	name  string
	ctrl  *controller.Controller[Key]
	log   *slog.Logger
	trace tracer

	mu sync.Mutex
	// mu guards openHeads: per repository, the head SHAs of its open pull
	// requests as of the last resync that could list them.
	openHeads map[string]map[string]bool
}

var _ controller.Reconciler[Key] = (*Reporter)(nil)

// New returns a Reporter; it does nothing until Run.
func New(opts Options) *Reporter {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.Recent <= 0 {
		opts.Recent = 24 * time.Hour
	}
	if opts.MaxRecent <= 0 {
		opts.MaxRecent = 10000
	}
	r := &Reporter{
		opts:      opts,
		name:      opts.Name,
		log:       opts.Logger.With("controller", "reporter", "reporter", opts.Name),
		trace:     noTrace{},
		openHeads: make(map[string]map[string]bool),
	}
	src := controller.NewStoreSource(controller.RunFeed(opts.Store), r.keysOf, opts.Clock, opts.Logger)
	src.OnEvent = func(rev int64) { r.trace.watched(rev) }
	r.ctrl = controller.New(controller.Options[Key]{
		Name:            "reporter",
		Reconciler:      r,
		Workers:         opts.Workers,
		Watches:         []controller.Watch[Key]{src},
		List:            r.list,
		Resync:          opts.Resync,
		Clock:           opts.Clock,
		OnError:         opts.OnError,
		MetricsProvider: opts.MetricsProvider,
		Logger:          opts.Logger,
	})
	return r
}

// Run reports until ctx is done. It returns nil when ctx is canceled.
func (r *Reporter) Run(ctx context.Context) error {
	return r.ctrl.Run(ctx)
}

// Enqueue asks the reporter to look at key k soon.
func (r *Reporter) Enqueue(k Key) {
	r.trace.enqueued(k)
	r.ctrl.Add(k)
}

// keysOf feeds the reporter the keys of runs written from Run's start
// on.
func (r *Reporter) keysOf(ev store.RunEvent, enqueue func(Key)) {
	if k, ok := r.needsLook(r.opts.Config(), ev.Run); ok {
		r.trace.enqueued(k)
		enqueue(k)
	}
}

// list enqueues the keys of unfinished runs, of runs created within
// Recent, and of runs on the head commits of open pull requests, where
// their reports may differ from what should show.
func (r *Reporter) list(ctx context.Context, enqueue func(Key)) error {
	cfg := r.opts.Config()
	if cfg == nil {
		return nil
	}
	// The open heads come first: reconciles of the keys queued below
	// decide retirements on them.
	heads := r.refreshOpenHeads(ctx, cfg)
	seen := make(map[Key]bool)
	add := func(rn *run.Run) bool {
		if k, ok := r.needsLook(cfg, rn); ok && !seen[k] {
			seen[k] = true
			r.trace.enqueued(k)
			enqueue(k)
		}
		return true
	}
	unfinished := store.ListOptions{State: []run.State{run.Pending, run.Scheduled, run.Running}}
	if err := r.eachRun(ctx, unfinished, add); err != nil {
		return fmt.Errorf("list unfinished runs: %w", err)
	}
	cutoff := r.opts.Clock.Now().Add(-r.opts.Recent)
	n := 0
	err := r.eachRun(ctx, store.ListOptions{}, func(rn *run.Run) bool {
		if n >= r.opts.MaxRecent || rn.CreatedAt.Before(cutoff) {
			return false
		}
		n++
		return add(rn)
	})
	if err != nil {
		return fmt.Errorf("list recent runs: %w", err)
	}
	for _, repo := range slices.Sorted(maps.Keys(heads)) {
		for _, sha := range slices.Sorted(maps.Keys(heads[repo])) {
			if err := r.eachRun(ctx, store.ListOptions{Repo: repo, SHA: sha}, add); err != nil {
				return fmt.Errorf("list runs of %s@%s, the head of an open pull request: %w", repo, sha, err)
			}
		}
	}
	r.trace.listed()
	return nil
}

// refreshOpenHeads lists the open pull requests of every configured
// repository and records their head commits, which it returns. A
// repository whose pull requests cannot be listed keeps the heads of the
// last resync, and is logged; the next resync tries again.
func (r *Reporter) refreshOpenHeads(ctx context.Context, cfg *config.Config) map[string]map[string]bool {
	heads := make(map[string]map[string]bool, len(cfg.Repos))
	r.mu.Lock()
	for repo := range cfg.Repos {
		if old, ok := r.openHeads[repo]; ok {
			heads[repo] = old
		}
	}
	r.mu.Unlock()
	for _, repo := range slices.Sorted(maps.Keys(cfg.Repos)) {
		pulls, err := r.opts.Forge.ListOpenPulls(ctx, repo)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("list open pull requests to retire removed jobs' contexts; trying again at the next resync", "repo", repo, "err", err)
			}
			continue
		}
		shas := make(map[string]bool, len(pulls))
		for _, p := range pulls {
			if p.HeadSHA != "" {
				shas[p.HeadSHA] = true
			}
		}
		heads[repo] = shas
	}
	r.mu.Lock()
	r.openHeads = heads
	r.mu.Unlock()
	return heads
}

// isOpenHead reports whether sha was the head of an open pull request of
// repo at the last resync.
func (r *Reporter) isOpenHead(repo, sha string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.openHeads[repo][sha]
}

// eachRun calls fn with every run matching opts, newest first, until fn
// returns false.
func (r *Reporter) eachRun(ctx context.Context, opts store.ListOptions, fn func(*run.Run) bool) error {
	opts.Limit = store.MaxLimit
	for {
		page, err := r.opts.Store.ListRuns(ctx, opts)
		if err != nil {
			return err
		}
		for _, rn := range page.Runs {
			if !fn(rn) {
				return nil
			}
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// needsLook returns the key of rn and whether it may need a write: rn's
// job reports and what rn last showed differs from what it should show,
// or rn's job is gone and its context may need retiring. It is a cheap
// filter on one run; Reconcile decides on all runs of the key.
func (r *Reporter) needsLook(cfg *config.Config, rn *run.Run) (Key, bool) {
	k, ok := KeyOf(rn)
	if !ok || cfg == nil || cfg.Repos[k.Repo] == nil {
		return Key{}, false
	}
	reported := rn.Status.Reported[r.name]
	rep, ok := jobReporter(cfg.Repos[k.Repo], rn)
	if !ok {
		return k, retirable(reported)
	}
	if rep.SkipReport {
		return Key{}, false
	}
	want, ok := StatusFor(rn, cfg.BaseURL)
	return k, ok && reported != want.State
}

// jobReporter returns the reporting settings of rn's job in rc, and false
// when rc has no such job any more.
func jobReporter(rc *config.Repo, rn *run.Run) (config.Reporter, bool) {
	switch rn.Spec.Type {
	case run.Presubmit:
		j, ok := rc.Presubmit(rn.Spec.Job)
		return j.Reporter, ok
	case run.Postsubmit:
		j, ok := rc.Postsubmit(rn.Spec.Job)
		return j.Reporter, ok
	}
	return config.Reporter{}, false
}

// contextConfigured reports whether a presubmit or postsubmit of rc
// reports under context.
func contextConfigured(rc *config.Repo, context string) bool {
	for _, j := range rc.Presubmits {
		if j.StatusContext() == context {
			return true
		}
	}
	for _, j := range rc.Postsubmits {
		if j.StatusContext() == context {
			return true
		}
	}
	return false
}

// Reconcile makes the forge show, for key k, the status of the newest run
// of k whose job reports; or, when k's context belongs to no configured
// job any more, retires it.
func (r *Reporter) Reconcile(ctx context.Context, k Key) (res controller.Result, err error) {
	seq := r.trace.started(k)
	defer func() { r.trace.finished(k, seq, err) }()

	cfg := r.opts.Config()
	if cfg == nil || cfg.Repos[k.Repo] == nil {
		// A repository lockstep no longer serves is left as it is.
		return controller.Result{}, nil
	}
	rc := cfg.Repos[k.Repo]
	var winner *run.Run
	var gone []*run.Run // runs of jobs no longer configured, newest first
	err = r.eachRun(ctx, store.ListOptions{Repo: k.Repo, SHA: k.SHA}, func(rn *run.Run) bool {
		if rk, ok := KeyOf(rn); !ok || rk != k {
			return true
		}
		rep, ok := jobReporter(rc, rn)
		switch {
		case !ok:
			gone = append(gone, rn)
		case rep.SkipReport:
		default:
			winner = rn
			return false
		}
		return true
	})
	if err != nil {
		return controller.Result{}, fmt.Errorf("list runs of %s: %w", k, err)
	}
	if winner == nil {
		return controller.Result{}, r.retire(ctx, rc, k, gone)
	}
	return controller.Result{}, r.report(ctx, cfg, k, winner)
}

// report shows the status of rn, the newest reporting run of k, unless rn
// showed it already or reports nothing.
func (r *Reporter) report(ctx context.Context, cfg *config.Config, k Key, rn *run.Run) error {
	want, ok := StatusFor(rn, cfg.BaseURL)
	if !ok || rn.Status.Reported[r.name] == want.State {
		return nil
	}
	log := r.log.With("repo", k.Repo, "sha", k.SHA, "context", k.Context, "run", rn.ID, "job", rn.Spec.Job, "state", want.State)
	if err := r.opts.Forge.CreateStatus(ctx, k.Repo, k.SHA, want); err != nil {
		if !errors.Is(err, forge.ErrUnprocessable) {
			return r.forgeError(fmt.Errorf("report run %d as %s on %s: %w", rn.ID, want.State, k, err))
		}
		// A commit gone after a force-push, or a context at GitHub's
		// limit of statuses: sending again cannot help. Recording the
		// state keeps this state of this run from being sent again.
		log.Warn("the forge refused the commit status; not retrying it", "err", err)
	} else {
		log.Debug("commit status set")
	}
	return r.record(ctx, want.State, rn.ID)
}

// retire sets k's context to success when its jobs are all gone from the
// configuration, lockstep last showed a state that holds the pull request
// back, the forge still shows such a state, and k's commit is the head
// of an open pull request. The runs are then marked Retired.
func (r *Reporter) retire(ctx context.Context, rc *config.Repo, k Key, gone []*run.Run) error {
	if len(gone) == 0 || contextConfigured(rc, k.Context) {
		return nil
	}
	var last *run.Run // the newest run that showed something
	var marks []run.ID
	for _, rn := range gone {
		reported := rn.Status.Reported[r.name]
		if last == nil && reported != "" {
			last = rn
		}
		if retirable(reported) {
			marks = append(marks, rn.ID)
		}
	}
	if last == nil || !retirable(last.Status.Reported[r.name]) || !r.isOpenHead(k.Repo, k.SHA) {
		return nil
	}
	log := r.log.With("repo", k.Repo, "sha", k.SHA, "context", k.Context, "job", last.Spec.Job)
	shown, err := r.shown(ctx, k)
	if err != nil {
		return r.forgeError(err)
	}
	if retirable(shown) {
		st := forge.Status{
			Context:     k.Context,
			State:       forge.StatusSuccess,
			Description: fmt.Sprintf("Job %s no longer exists.", last.Spec.Job),
		}
		err := r.opts.Forge.CreateStatus(ctx, k.Repo, k.SHA, st)
		switch {
		case errors.Is(err, forge.ErrUnprocessable):
			log.Warn("the forge refused to retire the context; not retrying it", "err", err)
		case err != nil:
			return r.forgeError(fmt.Errorf("retire %s: %w", k, err))
		default:
			log.Info("retired the status context of a job that no longer exists", "was", shown)
		}
	}
	return r.record(ctx, Retired, marks...)
}

// shown returns the state the forge shows for k, or "" when it shows none
// or the commit is gone.
func (r *Reporter) shown(ctx context.Context, k Key) (string, error) {
	statuses, err := r.opts.Forge.ListStatuses(ctx, k.Repo, k.SHA)
	if errors.Is(err, forge.ErrUnprocessable) || errors.Is(err, forge.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read statuses of %s@%s: %w", k.Repo, k.SHA, err)
	}
	for _, st := range statuses {
		if st.Context == k.Context {
			return st.State, nil
		}
	}
	return "", nil
}

// forgeError classifies an error of the forge for the controller: a
// missing repository or commit is not retried with backoff, only at the
// next resync; anything else (connection errors, 5xx the transport gave
// up on) is.
func (r *Reporter) forgeError(err error) error {
	if errors.Is(err, forge.ErrNotFound) {
		return controller.Terminal(err)
	}
	return err
}

// conflictRounds is how many times record calls store.RetryOnConflict
// (five attempts each) before it gives up on a run.
const conflictRounds = 10

// record sets Status.Reported[name] to state on the runs ids. A conflict
// with another writer of a run (the runner) is re-read and retried; a run
// that no longer exists is skipped.
func (r *Reporter) record(ctx context.Context, state string, ids ...run.ID) error {
	for _, id := range ids {
		var err error
		for range conflictRounds {
			err = store.RetryOnConflict(ctx, func() error {
				cur, err := r.opts.Store.GetRun(ctx, id)
				if err != nil {
					return err
				}
				if cur.Status.Reported[r.name] == state {
					return nil
				}
				reported := maps.Clone(cur.Status.Reported)
				if reported == nil {
					reported = make(map[string]string, 1)
				}
				reported[r.name] = state
				cur.Status.Reported = reported
				_, err = r.opts.Store.UpdateRunStatus(ctx, cur)
				if errors.Is(err, store.ErrConflict) && r.opts.OnConflict != nil {
					r.opts.OnConflict()
				}
				return err
			})
			if !errors.Is(err, store.ErrConflict) {
				break
			}
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("record that run %d showed %s: %w", id, state, err)
		}
	}
	return nil
}

// tracer observes the reporter's work. Tests use it to tell when the
// reporter has caught up; otherwise it is noTrace.
type tracer interface {
	// enqueued is called before k is queued.
	enqueued(k Key)
	// watched is called when the feed has handled every write up to
	// revision rev (at Run, with the revision the feed starts after).
	watched(rev int64)
	// listed is called at the end of every listing.
	listed()
	// started is called when a reconcile of k starts; finished, with what
	// started returned, when it ends.
	started(k Key) int64
	finished(k Key, seq int64, err error)
}

type noTrace struct{}

func (noTrace) enqueued(Key)               {}
func (noTrace) watched(int64)              {}
func (noTrace) listed()                    {}
func (noTrace) started(Key) int64          { return 0 }
func (noTrace) finished(Key, int64, error) {}
