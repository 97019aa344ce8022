package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// BuildsReader is what the periodics and markers pages, and their API,
// read.
type BuildsReader interface {
	ListSchedules(ctx context.Context) ([]*store.Schedule, error)
	ListMarkers(ctx context.Context) ([]*store.Marker, error)
	MarkerHistory(ctx context.Context, name string, limit int) ([]store.MarkerMove, error)
	ListBuilds(ctx context.Context, opts store.BuildListOptions) ([]*store.Build, error)
}

// ConditionStale is the marker condition that says a marker is stale.
const ConditionStale = "Stale"

// markerHistoryLen is how many moves of each marker the markers page
// shows.
const markerHistoryLen = 10

// overdueAfter is how long past its next fire a schedule may be before
// the periodics page calls it overdue: the scheduler is not running.
const overdueAfter = time.Minute

// staleCondition returns m's Stale condition when it holds.
func staleCondition(m *store.Marker) (run.Condition, bool) {
	for _, c := range m.Status.Conditions {
		if c.Type == ConditionStale && c.Status {
			return c, true
		}
	}
	return run.Condition{}, false
}

// markerView is a marker as the markers page shows it.
type markerView struct {
	*store.Marker
	Age         time.Duration
	IsStale     bool
	StaleReason string
	StaleText   string
	History     []store.MarkerMove
	// MoreHistory is set when History is not the whole history.
	MoreHistory bool
}

func newMarkerView(m *store.Marker, now time.Time) markerView {
	v := markerView{Marker: m, Age: m.Age(now)}
	c, stale := staleCondition(m)
	if !stale {
		return v
	}
	v.IsStale = true
	v.StaleReason = c.Reason
	if v.StaleReason == "" {
		v.StaleReason = "Stale"
	}
	v.StaleText = c.Message
	if v.StaleText == "" {
		v.StaleText = staleText(m, v.Age, now)
	}
	return v
}

// staleText describes a stale marker from its status, for a condition
// without a message.
func staleText(m *store.Marker, age time.Duration, now time.Time) string {
	var b strings.Builder
	if m.BuildID == 0 {
		b.WriteString("it names no build yet")
	} else {
		fmt.Fprintf(&b, "it has named build %s for %s", m.Version, formatDuration(age))
	}
	if n := m.Status.NewerBuilds; n > 0 {
		fmt.Fprintf(&b, "; %d newer build", n)
		if n != 1 {
			b.WriteString("s")
		}
		b.WriteString(" exist")
		if n == 1 {
			b.WriteString("s")
		}
		if m.Status.NewestVersion != "" {
			fmt.Fprintf(&b, ", the newest %s", m.Status.NewestVersion)
		}
		if t := m.Status.NewestAt; t != nil {
			fmt.Fprintf(&b, " made %s ago", formatDuration(now.Sub(*t)))
		}
	}
	if n := m.Status.GateFailures; n > 0 {
		fmt.Fprintf(&b, "; its gate job failed %d time", n)
		if n != 1 {
			b.WriteString("s")
		}
		if t := m.Status.GateFailingSince; t != nil {
			fmt.Fprintf(&b, " since %s", formatTime(*t))
		}
	}
	b.WriteString(".")
	return b.String()
}

type markersData struct {
	page
	Available bool
	Markers   []markerView
	Stale     []markerView
}

// markersPage shows every marker: its build, age, history and, above
// everything, the stale ones.
func (s *Server) markersPage(w http.ResponseWriter, r *http.Request) {
	d := &markersData{page: page{Title: "Markers", Nav: "markers"}, Available: s.opts.Builds != nil}
	if d.Available {
		ctx := r.Context()
		markers, err := s.opts.Builds.ListMarkers(ctx)
		if err != nil {
			s.pages.internalError(w, r, err)
			return
		}
		now := s.clock.Now()
		for _, m := range markers {
			v := newMarkerView(m, now)
			if v.History, err = s.opts.Builds.MarkerHistory(ctx, m.Name, markerHistoryLen+1); err != nil {
				s.pages.internalError(w, r, fmt.Errorf("history of marker %s: %w", m.Name, err))
				return
			}
			if len(v.History) > markerHistoryLen {
				v.History, v.MoreHistory = v.History[:markerHistoryLen], true
			}
			if v.IsStale {
				d.Stale = append(d.Stale, v)
			}
			d.Markers = append(d.Markers, v)
		}
		// Stale markers come first, in name order, as the rest.
		slices.SortStableFunc(d.Markers, func(a, b markerView) int {
			switch {
			case a.IsStale == b.IsStale:
				return 0
			case a.IsStale:
				return -1
			}
			return 1
		})
	}
	s.pages.render(w, r, http.StatusOK, "markers", d)
}

// periodicView is a schedule as the periodics page shows it.
type periodicView struct {
	*store.Schedule
	LastRun *run.Run
	Overdue bool
	// RunNowPath is where the "Run now" form posts, with Request as its
	// request id.
	RunNowPath string
	Request    string
}

type periodicsData struct {
	page
	Available bool
	CanRunNow bool
	Periodics []periodicView
}

// periodicsPage shows every periodic job's schedule, last and next fire.
func (s *Server) periodicsPage(w http.ResponseWriter, r *http.Request) {
	d := &periodicsData{page: page{Title: "Periodics", Nav: "periodics"}, Available: s.opts.Builds != nil, CanRunNow: s.opts.Periodics != nil}
	if d.Available {
		ctx := r.Context()
		schedules, err := s.opts.Builds.ListSchedules(ctx)
		if err != nil {
			s.pages.internalError(w, r, err)
			return
		}
		now := s.clock.Now()
		for _, sc := range schedules {
			v := periodicView{Schedule: sc, Overdue: !sc.Next.IsZero() && now.Sub(sc.Next) > overdueAfter,
				RunNowPath: runNowPath("", sc.Repo, sc.Job), Request: randomID()}
			if sc.LastRun != 0 {
				rn, err := s.opts.Store.GetRun(ctx, sc.LastRun)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					s.pages.internalError(w, r, err)
					return
				}
				v.LastRun = rn
			}
			d.Periodics = append(d.Periodics, v)
		}
	}
	s.pages.render(w, r, http.StatusOK, "periodics", d)
}

// runNowPath is the path of the run-now action of periodic job of repo,
// under prefix ("" for the form, "/api/v1" for the API).
func runNowPath(prefix, repo, job string) string {
	owner, name, _ := strings.Cut(repo, "/")
	return fmt.Sprintf("%s/periodics/%s/%s/%s/run", prefix, url.PathEscape(owner), url.PathEscape(name), url.PathEscape(job))
}
