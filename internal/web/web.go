// Package web serves lockstep's HTTP surface: the UI (server-rendered
// pages, a live log over Server-Sent Events), the JSON API, health checks
// and /metrics. It reads the store; the only writes it makes are the ones
// a signed-in administrator asks for: a re-run or a periodic's run now
// creates a new run, and an abort sets the run's abort label for the
// runner to act on. It never writes a run's state.
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Store is what the web server reads, and writes for re-runs and aborts.
type Store interface {
	store.Runs
}

// DeliveryLister lists webhook deliveries for the deliveries page.
type DeliveryLister interface {
	ListDeliveries(ctx context.Context, opts store.DeliveryListOptions) (store.DeliveryPage, error)
}

// RefusalLister lists the deliveries the webhook intake refused.
type RefusalLister interface {
	ListRefusals(ctx context.Context, limit int, continueToken string) (store.RefusalPage, error)
}

// PeriodicStarter starts a run of a periodic job at once, for an
// administrator: once per request id, a second call with the same
// request returning the run the first created and created false. An
// unknown job is store.ErrNotFound; a job that cannot run now (it has no
// build to test) store.ErrInvalid.
type PeriodicStarter interface {
	RunNow(ctx context.Context, repo, job, request string) (r *run.Run, created bool, err error)
}

// PeriodicStarterFunc adapts a function to a PeriodicStarter.
type PeriodicStarterFunc func(ctx context.Context, repo, job, request string) (*run.Run, bool, error)

var _ PeriodicStarter = PeriodicStarterFunc(nil)

// RunNow calls f.
func (f PeriodicStarterFunc) RunNow(ctx context.Context, repo, job, request string) (*run.Run, bool, error) {
	return f(ctx, repo, job, request)
}

// PullStates returns the newest known state of a pull request, for the
// pull request page.
type PullStates interface {
	GetPullState(ctx context.Context, repo string, number int) (*store.PullState, error)
}

// Options configure a Server. Store is required.
type Options struct {
	Store Store
	// Deliveries and Pulls, when set, feed the deliveries page and the
	// pull request page's head and state; without them the deliveries
	// page says it has nothing to show and a pull request's head is its
	// newest run's SHA.
	Deliveries DeliveryLister
	Pulls      PullStates
	// Refusals, when set, feeds the deliveries page's list of deliveries
	// the intake refused.
	Refusals RefusalLister
	// Periodics, when set, starts periodic jobs at once for the periodics
	// page's "Run now" and POST /api/v1/periodics/{owner}/{repo}/{job}/run.
	Periodics PeriodicStarter
	// PullList, when set, feeds the pull request list, the repository
	// pages and GET /api/v1/pulls.
	PullList PullLister
	// Builds, when set, feeds the periodics and markers pages and their
	// JSON API.
	Builds BuildsReader
	Logger *slog.Logger
	// AdminToken authorizes re-runs and aborts: sent as
	// "Authorization: Bearer TOKEN" to the API, or entered once in the
	// sign-in form, which sets a session cookie. Empty refuses every
	// re-run and abort.
	AdminToken string
	// Metrics, if set, is served at GET /metrics. Registerer, if set,
	// receives the server's own metrics (refused credentials).
	Metrics    http.Handler
	Registerer prometheus.Registerer
	// Sessions records sign-ins and sign-outs, shared by every replica
	// (the store); nil keeps them in memory, so that a restart signs
	// everyone out.
	Sessions store.Effects
	// Banner, if set, is a warning shown on every page of the UI and in
	// /readyz's answer (the job sandbox is unavailable).
	Banner string
	// ForgeURL is the web address of the forge the runs' repositories
	// live on; default https://github.com.
	ForgeURL string
	// Clock is the time pages show ages against and live logs poll on;
	// default the real clock.
	Clock clock.WithTicker
	// LogPoll is how often a live log looks for new lines and for the end
	// of its run; default 250 ms.
	LogPoll time.Duration
	// Logs, if set, is where run logs are read first (the store), so
	// that every replica shows every run's log; a run whose log the store
	// lacks is read from the file its executor wrote, when on this disk.
	Logs store.Logs
	// Leadership, if set, tells which replica this is and which replica
	// leads, for /readyz and the footer of every page.
	Leadership func() Leadership
	// Routes, if set, adds handlers to the server's mux (the webhook
	// intake) before it starts serving.
	Routes func(mux *http.ServeMux)
}

// Server is lockstep's HTTP handler. Create it with New. Before shutting
// down the http.Server that serves it, call CloseStreams (for example
// with http.Server.RegisterOnShutdown), or the live logs it is streaming
// keep their connections busy until the shutdown times out.
type Server struct {
	opts  Options
	mux   *http.ServeMux
	log   *slog.Logger
	clock clock.WithTicker
	pages *pages
	auth  *auth

	closeOnce sync.Once
	closing   chan struct{} // closed by CloseStreams
}

// New returns a Server ready to serve.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ForgeURL == "" {
		opts.ForgeURL = "https://github.com"
	}
	opts.ForgeURL = strings.TrimRight(opts.ForgeURL, "/")
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.LogPoll <= 0 {
		opts.LogPoll = 250 * time.Millisecond
	}
	s := &Server{
		opts:    opts,
		mux:     http.NewServeMux(),
		log:     opts.Logger,
		clock:   opts.Clock,
		auth:    newAuth(opts.AdminToken, opts.Clock, opts.Sessions, opts.Logger, opts.Registerer),
		closing: make(chan struct{}),
	}
	s.pages = newPages(s)
	m := s.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	m.HandleFunc("GET /readyz", s.readyz)

	m.HandleFunc("GET /api/v1/runs", s.apiListRuns)
	m.HandleFunc("GET /api/v1/runs/{id}", s.apiGetRun)
	m.HandleFunc("GET /api/v1/runs/{id}/log", s.apiRunLog)
	m.HandleFunc("GET /api/v1/runs/{id}/log/stream", s.apiRunLogStream)
	m.HandleFunc("POST /api/v1/runs/{id}/rerun", s.apiRerun)
	m.HandleFunc("POST /api/v1/runs/{id}/abort", s.apiAbort)
	m.HandleFunc("GET /api/v1/pulls", s.apiListPulls)
	m.HandleFunc("POST /api/v1/periodics/{owner}/{repo}/{job}/run", s.apiRunNow)

	m.HandleFunc("GET /{$}", s.runsPage)
	m.HandleFunc("GET /runs", s.runsPage)
	m.HandleFunc("GET /runs/{id}", s.runPage)
	m.HandleFunc("POST /runs/{id}/rerun", s.rerunForm)
	m.HandleFunc("POST /runs/{id}/abort", s.abortForm)
	m.HandleFunc("GET /repos/{owner}/{repo}/pulls/{number}", s.pullPage)
	m.HandleFunc("GET /repos/{owner}/{repo}", s.repoPage)
	m.HandleFunc("GET /pulls", s.pullsPage)
	m.HandleFunc("GET /deliveries", s.deliveriesPage)
	m.HandleFunc("GET /periodics", s.periodicsPage)
	m.HandleFunc("POST /periodics/{owner}/{repo}/{job}/run", s.runNowForm)
	m.HandleFunc("GET /markers", s.markersPage)
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.logout)
	m.Handle("GET /static/", s.pages.static())
	if opts.Metrics != nil {
		m.Handle("GET /metrics", opts.Metrics)
	}
	if opts.Routes != nil {
		opts.Routes(m)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	s.mux.ServeHTTP(w, withAuthMemo(r))
}

// CloseStreams ends every live log stream, now and from now on, so that
// an http.Server serving s can shut down. Safe to call more than once.
func (s *Server) CloseStreams() {
	s.closeOnce.Do(func() { close(s.closing) })
}

// readyz answers 200 once the store answers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.opts.Store.Revision(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
	if s.opts.Banner != "" {
		_, _ = w.Write([]byte("warning: " + s.opts.Banner + "\n"))
	}
	if s.opts.Leadership == nil {
		return
	}
	l := s.opts.Leadership()
	_, _ = fmt.Fprintf(w, "replica: %s\nleader: %s\nterm: %d\nleading: %t\n", l.Replica, l.Leader, l.Term, l.Leading)
}

// Leadership is which replica answers, and which one leads (runs the
// controllers) as of its last look at the lease.
type Leadership struct {
	Replica string
	Leader  string
	Term    int64
	Leading bool
}

// randomID returns a random 128-bit identifier in hex.
func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on the systems lockstep supports.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}
