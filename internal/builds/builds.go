// Package builds records the builds that jobs produce, moves markers when
// their gate jobs succeed on newer builds, and watches markers for
// staleness.
//
// A job with produces_build writes the version of what it built, and
// optionally artifact locations, to the file named by
// $LOCKSTEP_BUILD_FILE. When such a run succeeds, the Controller records a
// store.Build for it (once: builds are unique per run). A marker names one
// build of a branch; when a run of its gate job succeeds on a build newer
// than the marker's, the Controller moves the marker there, through a
// compare-and-swap the store refuses when it would go backward. The
// Controller also re-evaluates every marker's Stale condition, exports
// lockstep_marker_age_seconds and lockstep_marker_stale, logs a warning
// when a marker turns stale, and publishes each marker's version as a
// text file.
//
// Resolve is what the periodic scheduler calls to find the build a run
// tests and whether it is stale.
package builds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// ConditionStale is the type of a marker's staleness condition.
const ConditionStale = "Stale"

// Reasons of the Stale condition.
const (
	ReasonMaxAgeExceeded = "MaxAgeExceeded" // the marker named one build for longer than max_age
	ReasonGateFailing    = "GateFailing"    // newer builds exist and the gate keeps failing
	ReasonFresh          = "Fresh"          // neither
	ReasonNoBuild        = "NoBuild"        // the marker names no build yet
)

// Store is what the Controller reads and writes.
type Store interface {
	store.Runs
	store.Builds
	store.Markers
}

// Options configure a Controller. Store and Config are required.
type Options struct {
	Store Store
	// Config returns the current configuration.
	Config func() *config.Config
	Clock  clock.WithTicker
	Logger *slog.Logger
	// Registerer, if set, receives the marker gauges.
	Registerer prometheus.Registerer
	// MarkerDir, if set, is where every marker is published as NAME.txt,
	// holding its version; a marker's publish_path is written too.
	MarkerDir string
	// Workers is how many keys are reconciled at once; default 4.
	Workers int
	// Resync is how often every marker is re-evaluated and the recent
	// successful runs of build and gate jobs are looked at again;
	// default five minutes.
	Resync time.Duration
}

// Controller records builds, moves markers and evaluates their
// staleness. Create it with New and call Run once.
type Controller struct {
	opts    Options
	ctrl    *controller.Controller[Key]
	log     *slog.Logger
	metrics *markerMetrics
	roles   atomic.Pointer[roleIndex]
}

// Key is what the Controller reconciles: a finished run, or a marker.
type Key struct {
	Run    run.ID
	Marker string
}

// String returns "run N" or "marker NAME".
func (k Key) String() string {
	if k.Marker != "" {
		return "marker " + k.Marker
	}
	return "run " + k.Run.String()
}

// New returns a Controller, registering its gauges on opts.Registerer.
func New(opts Options) (*Controller, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Resync <= 0 {
		opts.Resync = 5 * time.Minute
	}
	c := &Controller{
		opts:    opts,
		log:     opts.Logger.With("controller", "builds"),
		metrics: newMarkerMetrics(opts.Clock),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(c.metrics); err != nil {
			return nil, fmt.Errorf("register marker metrics: %w", err)
		}
	}
	c.ctrl = controller.New(controller.Options[Key]{
		Name:       "builds",
		Reconciler: c,
		Workers:    opts.Workers,
		Clock:      opts.Clock,
		Resync:     opts.Resync,
		Logger:     opts.Logger,
		Watches:    []controller.Watch[Key]{controller.NewStoreSource(controller.RunFeed(opts.Store), c.keysOf, opts.Clock, opts.Logger)},
		List:       c.list,
	})
	return c, nil
}

// Run reconciles until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	return c.ctrl.Run(ctx)
}

// roleIndex says, for one configuration, which jobs produce builds and
// which markers each job gates.
type roleIndex struct {
	cfg      *config.Config
	produces map[string]bool     // "repo/job"
	gates    map[string][]string // "repo/job" → marker names
}

// rolesOf returns the role index of cfg, building it once per
// configuration.
func (c *Controller) rolesOf(cfg *config.Config) *roleIndex {
	if idx := c.roles.Load(); idx != nil && idx.cfg == cfg {
		return idx
	}
	idx := &roleIndex{cfg: cfg, produces: map[string]bool{}, gates: map[string][]string{}}
	for _, j := range cfg.Jobs() {
		if cfg.ProducesBuild(j.Repo, j.Name) {
			idx.produces[j.Repo+"/"+j.Name] = true
		}
	}
	for _, m := range cfg.Markers {
		k := m.Repo + "/" + m.Gate
		idx.gates[k] = append(idx.gates[k], m.Name)
	}
	c.roles.Store(idx)
	return idx
}

// interesting reports whether r's job produces builds or gates a marker.
func (idx *roleIndex) interesting(repo, job string) bool {
	k := repo + "/" + job
	return idx.produces[k] || len(idx.gates[k]) > 0
}

// keysOf feeds the Controller the runs that finish from Run's start on, of
// jobs that produce builds or gate markers.
func (c *Controller) keysOf(ev store.RunEvent, enqueue func(Key)) {
	r := ev.Run
	if r.Status.State.Terminal() && c.rolesOf(c.opts.Config()).interesting(r.Spec.Refs.Repo, r.Spec.Job) {
		enqueue(Key{Run: r.ID})
	}
}

// recentRuns is how many of the newest successful runs of each build and
// gate job a resync looks at, for runs that finished while no Controller
// was watching.
const recentRuns = 50

// list enqueues every configured marker and the recent successful runs
// of the jobs that produce builds or gate markers.
func (c *Controller) list(ctx context.Context, enqueue func(Key)) error {
	cfg := c.opts.Config()
	idx := c.rolesOf(cfg)
	for _, m := range cfg.Markers {
		enqueue(Key{Marker: m.Name})
	}
	for _, j := range cfg.Jobs() {
		if !idx.interesting(j.Repo, j.Name) {
			continue
		}
		page, err := c.opts.Store.ListRuns(ctx, store.ListOptions{
			Repo: j.Repo, Job: j.Name, State: []run.State{run.Success}, Limit: recentRuns,
		})
		if err != nil {
			return fmt.Errorf("list recent runs of %s/%s: %w", j.Repo, j.Name, err)
		}
		for _, r := range page.Runs {
			enqueue(Key{Run: r.ID})
		}
	}
	return nil
}

// Reconcile handles one key.
func (c *Controller) Reconcile(ctx context.Context, k Key) (controller.Result, error) {
	if k.Marker != "" {
		return c.reconcileMarker(ctx, k.Marker)
	}
	return controller.Result{}, c.reconcileRun(ctx, k.Run)
}

// reconcileRun records the build a finished run produced and moves the
// markers its job gates.
func (c *Controller) reconcileRun(ctx context.Context, id run.ID) error {
	r, err := c.opts.Store.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !r.Status.State.Terminal() {
		return nil
	}
	cfg := c.opts.Config()
	idx := c.rolesOf(cfg)
	repo, job := r.Spec.Refs.Repo, r.Spec.Job
	if r.Status.State == run.Success && idx.produces[repo+"/"+job] {
		if err := c.recordBuild(ctx, cfg, r); err != nil {
			return err
		}
	}
	for _, name := range idx.gates[repo+"/"+job] {
		if r.Status.State == run.Success && r.Spec.Build != nil {
			mc, _ := cfg.Marker(name)
			if err := c.advance(ctx, mc, r); err != nil {
				return err
			}
		}
		c.ctrl.Add(Key{Marker: name})
	}
	return nil
}

// recordBuild records the build r produced, if it wrote one.
func (c *Controller) recordBuild(ctx context.Context, cfg *config.Config, r *run.Run) error {
	log := c.log.With("run", r.ID, "job", r.Spec.Job, "repo", r.Spec.Refs.Repo)
	branch := BranchOf(r)
	out := ParseBuildOutput(r.Status.BuildOutput)
	switch {
	case branch == "":
		log.Warn("run produced a build but names no branch to record it under; set branch on the job")
		return nil
	case out.Version == "":
		log.Warn("job produces builds but its successful run wrote no version to $LOCKSTEP_BUILD_FILE; no build recorded")
		return nil
	}
	commit := r.Spec.Refs.SHA()
	if commit == "" {
		commit = out.Commit
	}
	b, err := c.opts.Store.CreateBuild(ctx, &store.Build{
		Repo: r.Spec.Refs.Repo, Branch: branch, Commit: commit, Version: out.Version,
		Artifacts: out.Artifacts, Job: r.Spec.Job, Run: r.ID,
	})
	switch {
	case errors.Is(err, store.ErrAlreadyExists):
		return nil
	case err != nil:
		return err
	}
	log.Info("build recorded", "build", b.ID, "version", b.Version, "branch", b.Branch, "commit", b.Commit)
	for _, m := range cfg.Markers {
		if m.Repo == b.Repo && m.Branch == b.Branch {
			c.ctrl.Add(Key{Marker: m.Name})
		}
	}
	return nil
}

// BranchOf returns the branch a build made by r is recorded under: its
// base ref, without refs/heads/.
func BranchOf(r *run.Run) string {
	return strings.TrimPrefix(r.Spec.Refs.BaseRef, "refs/heads/")
}

// BuildOutput is what a job wrote to $LOCKSTEP_BUILD_FILE.
type BuildOutput struct {
	// Version is the first non-empty line.
	Version string
	// Commit is the value of a "commit=SHA" line, for jobs whose run
	// does not name the commit it built (a periodic on a branch).
	Commit string
	// Artifacts are the other non-empty lines.
	Artifacts []string
}

// ParseBuildOutput reads what a job wrote to $LOCKSTEP_BUILD_FILE: the
// version on the first non-empty line, then artifact locations, one per
// line, and optionally a "commit=SHA" line. Surrounding spaces are
// ignored.
func ParseBuildOutput(s string) BuildOutput {
	var out BuildOutput
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case out.Version == "":
			out.Version = line
		case strings.HasPrefix(line, "commit="):
			out.Commit = strings.TrimSpace(strings.TrimPrefix(line, "commit="))
		default:
			out.Artifacts = append(out.Artifacts, line)
		}
	}
	return out
}

// advance moves the marker mc to the build gate run r tested, if that
// build is newer than the marker's.
func (c *Controller) advance(ctx context.Context, mc config.Marker, r *run.Run) error {
	want := r.Spec.Build.BuildID
	return store.RetryOnConflict(ctx, func() error {
		cur, err := c.ensureMarker(ctx, mc)
		if err != nil {
			return err
		}
		if want <= cur.BuildID {
			return nil
		}
		next := *cur
		next.BuildID, next.Run = want, r.ID
		got, err := c.opts.Store.UpdateMarker(ctx, &next)
		if errors.Is(err, store.ErrInvalid) {
			c.log.Warn("gate run succeeded on a build that cannot move the marker",
				"marker", mc.Name, "run", r.ID, "build", want, "err", err)
			return nil
		}
		if err != nil {
			return err
		}
		c.log.Info("marker moved", "marker", mc.Name, "from", cur.BuildID, "to", got.BuildID,
			"version", got.Version, "run", r.ID)
		return nil
	})
}

// ensureMarker returns the stored marker mc, creating it if needed.
func (c *Controller) ensureMarker(ctx context.Context, mc config.Marker) (*store.Marker, error) {
	m, err := c.opts.Store.GetMarker(ctx, mc.Name)
	if !errors.Is(err, store.ErrNotFound) {
		return m, err
	}
	m, err = c.opts.Store.CreateMarker(ctx, &store.Marker{Name: mc.Name, Repo: mc.Repo, Branch: mc.Branch})
	if errors.Is(err, store.ErrAlreadyExists) {
		return m, nil
	}
	return m, err
}

// reconcileMarker re-evaluates the staleness of marker name, records it,
// updates the gauges and publishes the marker.
func (c *Controller) reconcileMarker(ctx context.Context, name string) (controller.Result, error) {
	mc, ok := c.opts.Config().Marker(name)
	if !ok {
		c.metrics.forget(name)
		return controller.Result{}, nil
	}
	var m *store.Marker
	var ev evaluation
	err := store.RetryOnConflict(ctx, func() error {
		cur, err := c.ensureMarker(ctx, mc)
		if err != nil {
			return err
		}
		now := c.opts.Clock.Now()
		obs, err := c.observe(ctx, mc, cur)
		if err != nil {
			return err
		}
		ev = evaluate(mc, cur, obs, now)
		next := *cur
		next.Status = ev.status(cur.Status, now)
		was, _ := (&run.Status{Conditions: cur.Status.Conditions}).Condition(ConditionStale)
		m, err = c.opts.Store.UpdateMarker(ctx, &next)
		if err != nil {
			return err
		}
		if m.ResourceVersion != cur.ResourceVersion && was.Status != ev.stale {
			if ev.stale {
				c.log.Warn("marker is stale", "marker", name, "reason", ev.reason, "message", ev.message)
			} else if was.Type != "" {
				c.log.Info("marker is no longer stale", "marker", name, "reason", ev.reason, "message", ev.message)
			}
		}
		return nil
	})
	if err != nil {
		return controller.Result{}, fmt.Errorf("evaluate marker %s: %w", name, err)
	}
	c.metrics.set(name, m, ev.stale)
	if err := c.publish(mc, m); err != nil {
		return controller.Result{}, err
	}
	return controller.Result{RequeueAfter: ev.recheck}, nil
}

// gateRunsLooked caps how many of the gate job's finished runs are
// counted for GateFailures.
const gateRunsLooked = 1000

// observe gathers what the staleness of marker m depends on: the newer
// builds of its branch and the recent outcomes of its gate job.
func (c *Controller) observe(ctx context.Context, mc config.Marker, m *store.Marker) (observation, error) {
	var obs observation
	st := c.opts.Store
	if m.BuildID > 0 {
		b, err := st.GetBuild(ctx, m.BuildID)
		if err != nil {
			return obs, fmt.Errorf("read build %d: %w", m.BuildID, err)
		}
		obs.build = b
	}
	newer := store.BuildListOptions{Repo: m.Repo, Branch: m.Branch, AfterID: m.BuildID}
	n, err := st.CountBuilds(ctx, newer)
	if err != nil {
		return obs, err
	}
	obs.newer = n
	if n > 0 {
		newer.Limit = 1
		bs, err := st.ListBuilds(ctx, newer)
		if err != nil {
			return obs, err
		}
		if len(bs) > 0 {
			obs.newest = bs[0]
		}
	}
	opts := store.ListOptions{
		Repo: mc.Repo, Job: mc.Gate,
		State: []run.State{run.Success, run.Failure, run.Error, run.Aborted}, Limit: 200,
	}
	for looked := 0; looked < gateRunsLooked; {
		page, err := st.ListRuns(ctx, opts)
		if err != nil {
			return obs, fmt.Errorf("list runs of gate %s: %w", mc.Gate, err)
		}
		for _, r := range page.Runs {
			looked++
			obs.gateRuns++
			switch {
			case r.Status.State == run.Success:
				return obs, nil
			case r.Status.State == run.Aborted && r.Status.Reason != "Timeout":
				// Stopped on purpose (replaced, by a person): neither
				// passed nor failed.
			default:
				obs.gateFailures++
				t := r.CreatedAt
				obs.gateFailingSince = &t
			}
		}
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	return obs, nil
}
