package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/lockstep-ci/lockstep/internal/builds"
	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/leader"
	"github.com/lockstep-ci/lockstep/internal/metrics"
	"github.com/lockstep-ci/lockstep/internal/periodic"
	"github.com/lockstep-ci/lockstep/internal/redact"
	"github.com/lockstep-ci/lockstep/internal/reporter"
	runpkg "github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/trigger"
	"github.com/lockstep-ci/lockstep/internal/web"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

const defaultConfig = "lockstep.yaml"

// bodyReadTimeout bounds how long a client may take to send a request's
// body: a webhook delivery that drips in is cut rather than holding its
// connection.
const bodyReadTimeout = 10 * time.Second

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	configPath := fs.String("config", defaultConfig, "configuration file; reloaded when it changes")
	dataDir := fs.String("data-dir", "./lockstep-data", "where lockstep keeps its database, logs and workspaces")
	listen := fs.String("listen", "127.0.0.1:8080", "address the UI, API and webhook intake listen on")
	storeURL := fs.String("store", os.Getenv(storeEnv), "where lockstep keeps its state: empty for the SQLite file in the data directory, or a postgres:// URL shared by several replicas (default $"+storeEnv+")")
	replicaName := fs.String("replica", "", "this replica's name, unique among the replicas sharing a store; default HOSTNAME-PID")
	leaseDuration := fs.Duration("lease-duration", leader.DefaultLeaseDuration, "with a shared store: how long the leader's lease lasts after each renewal; a new leader takes over within it and one renewal interval after the leader dies")
	leaseRenew := fs.Duration("lease-renew", leader.DefaultRenewInterval, "with a shared store: how often the leader renews its lease and the other replicas try to take it; at most half of --lease-duration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	// lockstep's own log passes through a redactor that learns every
	// secret once it is read; only the admin token's creation, logged on
	// stderr directly, shows it once.
	logOut := redact.NewWriter(stderr, nil)
	log := slog.New(slog.NewTextHandler(logOut, nil))

	cfg, err := loadConfig(*configPath, fs, log)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	unlock, err := lockDataDir(*dataDir, *listen)
	if err != nil {
		return err
	}
	defer unlock()
	st, shared, err := openStore(ctx, *storeURL, *dataDir, log)
	if err != nil {
		return err
	}
	defer st.Close()

	getter := config.NewGetter(cfg)
	adminToken, err := web.LoadAdminToken(*dataDir, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return err
	}
	secrets := func() []string { return append(secretValues(getter.Get()), adminToken) }
	logOut.SetSecrets(secrets())
	getter.OnChange(func(*config.Config) { logOut.SetSecrets(secrets()) })
	execOpts, err := localOptions(cfg, *configPath, *dataDir)
	if err != nil {
		return err
	}
	execOpts.Secrets = secrets
	// Whether jobs can be sandboxed here is asked once, at start: every
	// term's executor answers the same.
	banner := local.New(execOpts).Sandbox().Warning()
	if banner != "" {
		log.Warn(banner)
	} else {
		log.Info("jobs run in a bubblewrap sandbox", "work_dir", execOpts.WorkDir)
	}
	// The metrics registry, and the admin token that authorizes re-runs
	// and aborts in the UI and the API.
	mets, err := metrics.New(metrics.Options{Runs: st, Deliveries: st, Logger: log})
	if err != nil {
		return err
	}
	reg := mets.Registerer()
	gh, err := newForge(getter, st, reg, log)
	if err != nil {
		return err
	}
	replica := *replicaName
	if replica == "" {
		replica = defaultReplicaName()
	}
	log = log.With("replica", replica)

	// The controllers that must not run twice run on the leader only,
	// made anew for each term (see runLeader).
	var wake atomic.Pointer[wakeFunc]
	getter.OnChange(func(*config.Config) {
		if w := wake.Load(); w != nil {
			w.fn()
		}
	})
	lead := func(ctx context.Context) error {
		return runLeader(ctx, leaderOptions{
			store: st, cfg: cfg, getter: getter, forge: gh, mets: mets, log: log,
			dataDir: *dataDir, replica: replica, wake: &wake, local: execOpts,
		})
	}
	var leadership func() web.Leadership
	var elector *leader.Elector
	if shared {
		elector, err = leader.New(leader.Options{
			Leases: st, Identity: replica, Lead: lead, Registerer: reg, Logger: log,
			LeaseDuration: *leaseDuration, RenewInterval: *leaseRenew,
		})
		if err != nil {
			return err
		}
		leadership = func() web.Leadership {
			s := elector.Status()
			return web.Leadership{Replica: replica, Leader: s.Leader, Term: s.Term, Leading: s.Leading}
		}
	}

	buildsAPI := builds.APIHandler(builds.APIOptions{Store: st, Config: getter.Get, Logger: log})
	periodicsAPI := periodic.APIHandler(periodic.APIOptions{Store: st, Config: getter.Get, Logger: log})
	refusals := webhook.NewRefusalRecorder(st, log)
	hook := webhook.NewHandler(webhook.HandlerOptions{
		Secret:  webhookSecret(getter, log),
		Sink:    trigger.Sink(st),
		Logger:  log,
		Refused: refusals.Record,
	})
	ui := web.New(web.Options{
		Store: st, Deliveries: st, Pulls: st, Builds: st, Refusals: st, PullList: st, Logger: log,
		AdminToken: adminToken, Metrics: mets.Handler(), Leadership: leadership, Logs: st,
		Periodics: web.PeriodicStarterFunc(func(ctx context.Context, repo, job, request string) (*runpkg.Run, bool, error) {
			return periodic.RunNow(ctx, st, getter.Get(), repo, job, request, time.Now())
		}),
		Registerer: reg, Banner: banner, Sessions: st,
		Routes: func(mux *http.ServeMux) {
			mux.Handle("POST /hook", hook)
			mux.Handle("POST /hook/gitlab", gitlabHook(getter, st, log))
			for _, p := range builds.APIPatterns() {
				mux.Handle(p, buildsAPI)
			}
			for _, p := range periodic.APIPatterns() {
				mux.Handle(p, periodicsAPI)
			}
		},
	})
	srv := &http.Server{Handler: web.BodyDeadline(ui, bodyReadTimeout), ReadHeaderTimeout: 10 * time.Second}
	// Live logs stream until the run ends: end them when shutting down.
	srv.RegisterOnShutdown(ui.CloseStreams)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("lockstep serving", "addr", "http://"+ln.Addr().String(), "data_dir", *dataDir, "config", *configPath, "version", version())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return mets.Run(gctx) })
	g.Go(func() error { return refusals.Run(gctx) })
	if elector != nil {
		g.Go(func() error { return elector.Run(gctx) })
	} else {
		// One process owns an embedded store (the data directory is
		// locked): it leads, with no lease to take.
		g.Go(func() error { return lead(gctx) })
	}
	if _, err := os.Stat(*configPath); err == nil {
		g.Go(func() error { return config.Watch(gctx, *configPath, getter, log) })
	}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutCtx)
	})
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("lockstep stopped")
	return nil
}

// loadConfig loads the configuration file. A missing file is an error
// when the user named it; the default name may be absent, and lockstep
// then starts with no jobs.
func loadConfig(path string, fs *flag.FlagSet, log *slog.Logger) (*config.Config, error) {
	named := false
	fs.Visit(func(f *flag.Flag) { named = named || f.Name == "config" })
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && !named {
		log.Warn("no configuration file; starting with no jobs", "config", path)
		return config.Default(), nil
	}
	return config.Load(path)
}

// defaultReplicaName returns HOSTNAME-PID: unique among the processes of
// a host, and new at each start, since a restarted process has none of
// the executions of the one before.
func defaultReplicaName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "lockstep"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// wakeFunc is a function kept in an atomic.Pointer.
type wakeFunc struct{ fn func() }

// leaderOptions are what the leader's components are made of.
type leaderOptions struct {
	store   store.Store
	cfg     *config.Config // as loaded at start, for the GitLab token
	getter  *config.Getter
	forge   forge.Client
	mets    *metrics.Metrics
	log     *slog.Logger
	dataDir string
	replica string
	// local are the local executor's options but for its logger and log
	// sink, which each term sets.
	local local.Options
	// wake holds the Wake of the current term's scheduler, which a
	// configuration change calls.
	wake *atomic.Pointer[wakeFunc]
}

// runLeader runs the components that must not run twice until ctx is
// done: the runner and its executors, the delivery processors (GitHub's
// and GitLab's) and the resync, the reporter, the scheduler and the
// builds controller. They are made for each term, so that nothing of a
// term (the executors' executions, the runner's admission locks, the
// trigger's per-pull-request locks) outlives it; their metrics are
// unregistered at its end. Writes made with ctx carry the term's fence.
func runLeader(ctx context.Context, o leaderOptions) error {
	st, log := o.store, o.log
	reg := &termRegisterer{Registerer: o.mets.Registerer()}
	defer reg.unregisterAll()
	execOpts := o.local
	// Every byte of every run's log, whichever executor runs it, also goes
	// to the store, where the web of any replica reads it.
	sink := &executor.StoreLogs{Logs: st, Logger: log}
	execOpts.LogSink = sink
	execOpts.Logger = log
	exec := local.New(execOpts)
	// The GitLab executor wakes runs it follows again after a restart
	// through the runner, made just below.
	var rnr *runner.Runner
	gitlab, err := newGitLab(o.cfg.GitLab, st, sink, o.dataDir, func(id runpkg.ID) { rnr.Enqueue(id) }, log)
	if err != nil {
		return err
	}
	defer func() {
		// Executions end with the term: a new leader ends their runs as
		// interrupted, and must not find them still going here.
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := exec.Shutdown(shutCtx); err != nil {
			log.Error("executor shutdown", "err", err)
		}
		if gitlab != nil {
			if err := gitlab.exec.Shutdown(shutCtx); err != nil {
				log.Error("gitlab executor shutdown", "err", err)
			}
		}
	}()
	// The Kubernetes executor, if a job uses it: its Pods go on across
	// terms, and the next term's executor adopts them.
	kexec, err := newKube(o.cfg, o.dataDir, sink, reg, func(id runpkg.ID) { rnr.Enqueue(id) }, log)
	if err != nil {
		return err
	}
	executors := map[string]executor.Executor{}
	maps.Copy(executors, gitlab.executors())
	if kexec != nil {
		executors[config.ExecutorKubernetes] = kexec
	}
	rnr = runner.New(runner.Options{
		Store:           st,
		Executor:        exec,
		Executors:       executors,
		Config:          o.getter.Get,
		Replica:         o.replica,
		Logger:          log,
		MetricsProvider: o.mets.WorkqueueProvider(),
		OnError:         o.mets.ReconcileErrors("runner"),
	})
	trig := trigger.New(trigger.Options{Store: st, Forge: o.forge, Config: o.getter.Get, Logger: log})
	// Periodics, builds and markers: the scheduler fires periodic jobs
	// (once per due time, concurrency policies, builds under test); the
	// builds controller records builds, moves markers, watches them for
	// staleness and publishes them under DATA_DIR/markers.
	sched, err := periodic.New(periodic.Options{Store: st, Config: o.getter.Get, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	o.wake.Store(&wakeFunc{sched.Wake})
	defer o.wake.Store(nil)
	bld, err := builds.New(builds.Options{
		Store: st, Config: o.getter.Get, Logger: log, Registerer: reg,
		MarkerDir: filepath.Join(o.dataDir, "markers"),
	})
	if err != nil {
		return err
	}
	proc := trigger.NewProcessor(trigger.ProcessorOptions{
		Store: st, Trigger: trig, Logger: log,
		MetricsProvider: o.mets.WorkqueueProvider(), OnError: o.mets.ReconcileErrors("deliveries"),
	})
	// Offline, statuses are only logged: they are recorded under another
	// reporter name, so that the UI does not claim they were posted, and
	// a later start with credentials posts them.
	reporterName := reporter.DefaultName
	if !o.getter.Get().GitHub.Configured() {
		reporterName = web.ReporterOffline
	}
	rep := reporter.New(reporter.Options{
		Name:  reporterName,
		Store: st, Forge: o.forge, Config: o.getter.Get, Logger: log,
		MetricsProvider: o.mets.WorkqueueProvider(), OnError: o.mets.ReconcileErrors("reporter"),
		OnConflict: func() { o.mets.ConflictRetried("reporter") },
	})
	g, gctx := errgroup.WithContext(ctx)
	for _, e := range executors {
		if r, ok := e.(executor.Runnable); ok {
			g.Go(func() error { return r.Run(gctx) })
		}
	}
	g.Go(func() error { return rnr.Run(gctx) })
	g.Go(func() error { return proc.Run(gctx) })
	g.Go(func() error { return rep.Run(gctx) })
	g.Go(func() error { return trig.RunResync(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	g.Go(func() error { return bld.Run(gctx) })
	if gitlab != nil {
		g.Go(func() error { return gitlab.deliveries.Run(gctx) })
	}
	return g.Wait()
}

// termRegisterer registers metrics for one leader term, and unregisters
// them all at its end, so that the next term can register them again.
type termRegisterer struct {
	prometheus.Registerer
	mu sync.Mutex // mu guards cs
	cs []prometheus.Collector
}

// Register registers c and remembers it.
func (r *termRegisterer) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
	return nil
}

// MustRegister registers cs, panicking on failure.
func (r *termRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// unregisterAll unregisters what was registered through r.
func (r *termRegisterer) unregisterAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cs {
		r.Registerer.Unregister(c)
	}
	r.cs = nil
}
