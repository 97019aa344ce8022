package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lockstep-ci/lockstep/internal/builds"
	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/metrics"
	"github.com/lockstep-ci/lockstep/internal/periodic"
	"github.com/lockstep-ci/lockstep/internal/redact"
	"github.com/lockstep-ci/lockstep/internal/reporter"
	runpkg "github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
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
	st, err := sqlite.Open(ctx, filepath.Join(*dataDir, "lockstep.db"))
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
	execOpts.Logger, execOpts.Secrets = log, secrets
	exec := local.New(execOpts)
	sandbox := exec.Sandbox()
	banner := sandbox.Warning()
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
	// The GitLab executor wakes runs it follows again after a restart
	// through the runner, made just below.
	var rnr *runner.Runner
	gitlab, err := newGitLab(cfg.GitLab, st, *dataDir, func(id runpkg.ID) { rnr.Enqueue(id) }, log)
	if err != nil {
		return err
	}
	rnr = runner.New(runner.Options{
		Store:           st,
		Executor:        exec,
		Executors:       gitlab.executors(),
		Config:          getter.Get,
		Logger:          log,
		MetricsProvider: mets.WorkqueueProvider(),
		OnError:         mets.ReconcileErrors("runner"),
	})
	reg := mets.Registerer()
	gh, err := newForge(getter, st, reg, log)
	if err != nil {
		return err
	}
	trig := trigger.New(trigger.Options{Store: st, Forge: gh, Config: getter.Get, Logger: log})

	// Periodics, builds and markers: the scheduler fires periodic jobs
	// (once per due time, concurrency policies, builds under test); the
	// builds controller records builds, moves markers, watches them for
	// staleness and publishes them under DATA_DIR/markers.
	sched, err := periodic.New(periodic.Options{Store: st, Config: getter.Get, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	getter.OnChange(func(*config.Config) { sched.Wake() })
	bld, err := builds.New(builds.Options{
		Store: st, Config: getter.Get, Logger: log, Registerer: reg,
		MarkerDir: filepath.Join(*dataDir, "markers"),
	})
	if err != nil {
		return err
	}

	proc := trigger.NewProcessor(trigger.ProcessorOptions{
		Store: st, Trigger: trig, Logger: log,
		MetricsProvider: mets.WorkqueueProvider(), OnError: mets.ReconcileErrors("deliveries"),
	})
	// Offline, statuses are only logged: they are recorded under another
	// reporter name, so that the UI does not claim they were posted, and
	// a later start with credentials posts them.
	reporterName := reporter.DefaultName
	if !cfg.GitHub.Configured() {
		reporterName = web.ReporterOffline
	}
	rep := reporter.New(reporter.Options{
		Name:  reporterName,
		Store: st, Forge: gh, Config: getter.Get, Logger: log,
		MetricsProvider: mets.WorkqueueProvider(), OnError: mets.ReconcileErrors("reporter"),
		OnConflict: func() { mets.ConflictRetried("reporter") },
	})
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
		AdminToken: adminToken, Metrics: mets.Handler(),
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
	g.Go(func() error { return rnr.Run(gctx) })
	g.Go(func() error { return mets.Run(gctx) })
	g.Go(func() error { return proc.Run(gctx) })
	g.Go(func() error { return rep.Run(gctx) })
	g.Go(func() error { return trig.RunResync(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	g.Go(func() error { return bld.Run(gctx) })
	g.Go(func() error { return refusals.Run(gctx) })
	if gitlab != nil {
		g.Go(func() error { return gitlab.deliveries.Run(gctx) })
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
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := exec.Shutdown(shutCtx); serr != nil {
		log.Error("executor shutdown", "err", serr)
	}
	if gitlab != nil {
		if serr := gitlab.exec.Shutdown(shutCtx); serr != nil {
			log.Error("gitlab executor shutdown", "err", serr)
		}
	}
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
