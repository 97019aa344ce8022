package builds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// APIStore is what the API reads.
type APIStore interface {
	store.Builds
	GetMarker(ctx context.Context, name string) (*store.Marker, error)
	MarkerHistory(ctx context.Context, name string, limit int) ([]store.MarkerMove, error)
}

// APIOptions configure the API handler. Store and Config are required.
type APIOptions struct {
	Store  APIStore
	Config func() *config.Config
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// APIPatterns returns the patterns APIHandler serves, to mount it on a
// mux.
func APIPatterns() []string {
	return []string{
		"GET /api/v1/markers",
		"GET /api/v1/markers/{name}",
		"GET /api/v1/builds",
		"GET /api/v1/builds/{id}",
		"GET /markers/{file}",
	}
}

// APIHandler returns the handler of lockstep's marker and build API:
//
//	GET /api/v1/markers          every configured marker, with its staleness
//	GET /api/v1/markers/{name}   one marker and its history
//	GET /api/v1/builds           builds, newest first: ?repo, branch, limit, continue
//	GET /api/v1/builds/{id}      one build
//	GET /markers/NAME.txt        the marker's version, one line: what the
//	                             leader publishes to DATA_DIR/markers/NAME.txt,
//	                             read from the store, so any replica serves it
//
// Mount it with one mux.Handle per pattern of APIPatterns.
func APIHandler(opts APIOptions) http.Handler {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &api{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/markers", a.listMarkers)
	mux.HandleFunc("GET /api/v1/markers/{name}", a.getMarker)
	mux.HandleFunc("GET /api/v1/builds", a.listBuilds)
	mux.HandleFunc("GET /api/v1/builds/{id}", a.getBuild)
	mux.HandleFunc("GET /markers/{file}", a.getMarkerFile)
	return mux
}

type api struct {
	opts APIOptions
}

// APIMarker is the JSON form of a marker. Field names are part of the
// user-facing contract.
type APIMarker struct {
	Name   string `json:"name"`
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
	Gate   string `json:"gate"`
	// MaxAge is the configured max_age as a Go duration ("72h0m0s");
	// empty when not set.
	MaxAge          string     `json:"max_age,omitempty"`
	MaxGateFailures int        `json:"max_gate_failures"`
	BuildID         int64      `json:"build_id,omitempty"`
	Version         string     `json:"version,omitempty"`
	Commit          string     `json:"commit,omitempty"`
	MovedAt         *time.Time `json:"moved_at,omitempty"`
	MovedBy         run.ID     `json:"moved_by_run,omitempty"`
	AgeSeconds      float64    `json:"age_seconds"`
	// Stale, Reason and Message: see builds.MarkerStaleness.
	Stale            bool               `json:"stale"`
	Reason           string             `json:"reason"`
	Message          string             `json:"message,omitempty"`
	NewerBuilds      int                `json:"newer_builds"`
	NewestBuildID    int64              `json:"newest_build_id,omitempty"`
	NewestVersion    string             `json:"newest_version,omitempty"`
	NewestAt         *time.Time         `json:"newest_at,omitempty"`
	GateFailures     int                `json:"gate_failures"`
	GateFailingSince *time.Time         `json:"gate_failing_since,omitempty"`
	Conditions       []run.Condition    `json:"conditions,omitempty"`
	History          []store.MarkerMove `json:"history,omitempty"`
}

// NewAPIMarker returns the API form of marker m, configured as mc, at
// now. m may be nil for a marker not stored yet.
func NewAPIMarker(mc config.Marker, m *store.Marker, now time.Time) APIMarker {
	out := APIMarker{
		Name: mc.Name, Repo: mc.Repo, Branch: mc.Branch, Gate: mc.Gate,
		MaxGateFailures: mc.EffectiveMaxGateFailures(), Reason: ReasonNoBuild,
	}
	if mc.MaxAge.Duration > 0 {
		out.MaxAge = mc.MaxAge.Duration.String()
	}
	if m == nil {
		out.Message = fmt.Sprintf("marker %s names no build yet", mc.Name)
		return out
	}
	st := MarkerStaleness(mc, m, 0, now)
	out.BuildID, out.Version, out.Commit, out.MovedAt, out.MovedBy = m.BuildID, m.Version, m.Commit, m.MovedAt, m.Run
	out.AgeSeconds = st.Age.Seconds()
	out.Stale, out.Reason, out.Message = st.Stale, st.Reason, st.Message
	s := m.Status
	out.NewerBuilds, out.NewestBuildID, out.NewestVersion, out.NewestAt = s.NewerBuilds, s.NewestBuildID, s.NewestVersion, s.NewestAt
	out.GateFailures, out.GateFailingSince, out.Conditions = s.GateFailures, s.GateFailingSince, s.Conditions
	return out
}

// marker reads the stored marker mc, nil when it is not stored yet.
func (a *api) marker(r *http.Request, mc config.Marker) (*store.Marker, error) {
	m, err := a.opts.Store.GetMarker(r.Context(), mc.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return m, err
}

// getMarkerFile serves NAME.txt, the content publish writes to files:
// the version of the build marker NAME names, as one line. A marker that
// names no build yet has no file.
func (a *api) getMarkerFile(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".txt")
	if !ok {
		http.NotFound(w, r)
		return
	}
	mc, ok := a.opts.Config().Marker(name)
	if !ok {
		http.Error(w, fmt.Sprintf("no marker %q is configured", name), http.StatusNotFound)
		return
	}
	m, err := a.marker(r, mc)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	if m == nil || m.BuildID == 0 {
		http.Error(w, fmt.Sprintf("marker %q names no build yet", name), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	io.WriteString(w, markerContent(m))
}

func (a *api) listMarkers(w http.ResponseWriter, r *http.Request) {
	cfg := a.opts.Config()
	now := a.opts.Clock.Now()
	out := struct {
		Markers []APIMarker `json:"markers"`
	}{Markers: make([]APIMarker, 0, len(cfg.Markers))}
	for _, mc := range cfg.Markers {
		m, err := a.marker(r, mc)
		if err != nil {
			a.internalError(w, r, err)
			return
		}
		out.Markers = append(out.Markers, NewAPIMarker(mc, m, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getMarker(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	mc, ok := a.opts.Config().Marker(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no marker %q is configured", name))
		return
	}
	m, err := a.marker(r, mc)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	out := NewAPIMarker(mc, m, a.opts.Clock.Now())
	if m != nil {
		if out.History, err = a.opts.Store.MarkerHistory(r.Context(), name, store.DefaultLimit); err != nil {
			a.internalError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) listBuilds(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := store.BuildListOptions{Repo: q.Get("repo"), Branch: q.Get("branch")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad query: limit=%q: want a positive number", v))
			return
		}
		opts.Limit = n
	}
	if v := q.Get("continue"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad query: continue=%q was not returned by a build listing", v))
			return
		}
		opts.BeforeID = n
	}
	bs, err := a.opts.Store.ListBuilds(r.Context(), opts)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	out := struct {
		Builds   []*store.Build `json:"builds"`
		Continue string         `json:"continue,omitempty"`
	}{Builds: bs}
	if out.Builds == nil {
		out.Builds = []*store.Build{}
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	if len(bs) == min(limit, store.MaxLimit) && len(bs) > 0 {
		out.Continue = strconv.FormatInt(bs[len(bs)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getBuild(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("build id %q is not a positive number", r.PathValue("id")))
		return
	}
	b, err := a.opts.Store.GetBuild(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("build %d not found", id))
		return
	}
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (a *api) internalError(w http.ResponseWriter, r *http.Request, err error) {
	a.opts.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, errors.New("internal error; see lockstep's log"))
}
