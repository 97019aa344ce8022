package periodic

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// APIStore is what the API reads.
type APIStore interface {
	ListSchedules(ctx context.Context) ([]*store.Schedule, error)
}

// APIOptions configure the API handler. Store and Config are required.
type APIOptions struct {
	Store  APIStore
	Config func() *config.Config
	Logger *slog.Logger
}

// APIPatterns returns the patterns APIHandler serves, to mount it on a
// mux.
func APIPatterns() []string {
	return []string{"GET /api/v1/periodics"}
}

// APIHandler returns the handler of GET /api/v1/periodics: every
// configured periodic with its schedule, its next and last due times, its
// last run and its recent skips (missed, forbidden, stale build), in
// repository and job order.
func APIHandler(opts APIOptions) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/periodics", func(w http.ResponseWriter, r *http.Request) {
		scheds, err := opts.Store.ListSchedules(r.Context())
		if err != nil {
			opts.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": errors.New("internal error; see lockstep's log").Error()})
			return
		}
		byKey := make(map[jobKey]*store.Schedule, len(scheds))
		for _, sc := range scheds {
			byKey[jobKey{sc.Repo, sc.Job}] = sc
		}
		cfg := opts.Config()
		out := struct {
			Periodics []APIPeriodic `json:"periodics"`
		}{Periodics: []APIPeriodic{}}
		for _, name := range slices.Sorted(maps.Keys(cfg.Repos)) {
			repo := cfg.Repos[name]
			if repo == nil {
				continue
			}
			for _, p := range repo.Periodics {
				out.Periodics = append(out.Periodics, NewAPIPeriodic(name, p, byKey[jobKey{name, p.Name}]))
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

// APIPeriodic is the JSON form of a periodic and its schedule. Field
// names are part of the user-facing contract.
type APIPeriodic struct {
	Repo string `json:"repo"`
	Job  string `json:"job"`
	// Schedule is "interval 1h0m0s" or "cron 0 3 * * * Europe/Paris".
	Schedule          string       `json:"schedule"`
	ConcurrencyPolicy string       `json:"concurrency_policy"`
	Branch            string       `json:"branch,omitempty"`
	ProducesBuild     bool         `json:"produces_build,omitempty"`
	Build             *APIBuild    `json:"build,omitempty"`
	Next              *time.Time   `json:"next,omitempty"`
	LastDue           *time.Time   `json:"last_due,omitempty"`
	LastRun           run.ID       `json:"last_run,omitempty"`
	Skips             []store.Skip `json:"skips,omitempty"`
}

// APIBuild is the JSON form of a periodic's build: setting.
type APIBuild struct {
	Marker  string `json:"marker,omitempty"`
	Branch  string `json:"branch,omitempty"`
	MaxAge  string `json:"max_age,omitempty"`
	OnStale string `json:"on_stale,omitempty"`
}

// NewAPIPeriodic returns the API form of periodic p of repo with stored
// schedule sc, nil when no scheduler has made it yet.
func NewAPIPeriodic(repo string, p config.Periodic, sc *store.Schedule) APIPeriodic {
	out := APIPeriodic{
		Repo: repo, Job: p.Name, Schedule: specOf(p),
		ConcurrencyPolicy: p.EffectiveConcurrencyPolicy(),
		Branch:            p.Branch, ProducesBuild: p.ProducesBuild,
	}
	if b := p.Build; b != nil {
		out.Build = &APIBuild{Marker: b.Marker, Branch: b.Branch}
		if b.Marker != "" {
			out.Build.OnStale = b.EffectiveOnStale()
		}
		if b.MaxAge.Duration > 0 {
			out.Build.MaxAge = b.MaxAge.Duration.String()
		}
	}
	if sc != nil {
		next := sc.Next
		out.Next, out.LastDue, out.LastRun, out.Skips = &next, sc.LastDue, sc.LastRun, sc.Skips
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
