// Package web serves lockstep's HTTP surface: health checks, the JSON API
// and, as it grows, the UI and /metrics. It reads the store; it never
// writes a run's state.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// Store is what the web server reads.
type Store interface {
	store.Runs
}

// Options configure a Server. Store is required.
type Options struct {
	Store  Store
	Logger *slog.Logger
	// Routes, if set, adds handlers to the server's mux (the webhook
	// intake, /metrics) before it starts serving.
	Routes func(mux *http.ServeMux)
}

// Server is lockstep's HTTP handler.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

// New returns a Server ready to serve.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /api/v1/runs", s.apiListRuns)
	s.mux.HandleFunc("GET /api/v1/runs/{id}", s.apiGetRun)
	s.mux.HandleFunc("GET /api/v1/runs/{id}/log", s.apiRunLog)
	if opts.Routes != nil {
		opts.Routes(s.mux)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// readyz answers 200 once the store answers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.opts.Store.Revision(ctx); err != nil {
		s.opts.Logger.Warn("not ready", "err", err)
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
