package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// PullLister lists the pull requests lockstep has seen, for the pull
// request list and the repository pages.
type PullLister interface {
	ListPullStates(ctx context.Context, opts store.PullListOptions) ([]*store.PullState, error)
}

// pullsPageSize is how many pull requests a page lists.
const pullsPageSize = 200

// repoRunsLen is how many recent runs a repository page shows.
const repoRunsLen = 20

type pullsData struct {
	page
	Available bool
	// Repo is set on a repository's page.
	Repo         string
	State        string
	StateOptions []option
	Pulls        []*store.PullState
	Runs         []*run.Run
	Error        string
}

// listPulls reads the state filter of r and the pull requests of repo
// (all when empty) into d, answering the request itself when it cannot.
func (s *Server) listPulls(w http.ResponseWriter, r *http.Request, d *pullsData, name string) bool {
	d.Available = s.opts.PullList != nil
	d.State = r.URL.Query().Get("state")
	d.StateOptions = options(d.State, "", "Any", "open", "open", "closed", "closed")
	if !d.Available {
		return true
	}
	switch d.State {
	case "", "open", "closed":
	default:
		d.Error = fmt.Sprintf("state=%q: want open or closed", d.State)
		s.pages.render(w, r, http.StatusBadRequest, name, d)
		return false
	}
	pulls, err := s.opts.PullList.ListPullStates(r.Context(), store.PullListOptions{Repo: d.Repo, State: d.State, Limit: pullsPageSize})
	if err != nil {
		s.pages.internalError(w, r, err)
		return false
	}
	d.Pulls = pulls
	return true
}

// pullsPage lists the pull requests lockstep has seen, the most recently
// changed first.
func (s *Server) pullsPage(w http.ResponseWriter, r *http.Request) {
	d := &pullsData{page: page{Title: "Pull requests", Nav: "pulls"}}
	if s.listPulls(w, r, d, "pulls") {
		s.pages.render(w, r, http.StatusOK, "pulls", d)
	}
}

// repoPage shows a repository: its pull requests and its recent runs.
func (s *Server) repoPage(w http.ResponseWriter, r *http.Request) {
	repo := r.PathValue("owner") + "/" + r.PathValue("repo")
	d := &pullsData{page: page{Title: repo, Nav: "pulls"}, Repo: repo}
	if !s.listPulls(w, r, d, "repo") {
		return
	}
	pg, err := s.opts.Store.ListRuns(r.Context(), store.ListOptions{Repo: repo, Limit: repoRunsLen})
	if err != nil {
		s.pages.internalError(w, r, err)
		return
	}
	d.Runs = pg.Runs
	if len(d.Pulls) == 0 && len(d.Runs) == 0 && d.State == "" {
		s.pages.errorPage(w, r, http.StatusNotFound, "No such repository",
			fmt.Sprintf("lockstep has no runs of %s and has seen no pull request of it. If it should have, look at the deliveries page.", repo))
		return
	}
	s.pages.render(w, r, http.StatusOK, "repo", d)
}

// APIPull is the JSON form of a pull request in lockstep's HTTP API.
// Field names are part of the user-facing contract.
type APIPull struct {
	Repo      string    `json:"repo"`
	Number    int       `json:"number"`
	Title     string    `json:"title"`
	State     string    `json:"state"`
	Draft     bool      `json:"draft,omitempty"`
	Author    string    `json:"author"`
	HeadSHA   string    `json:"head_sha"`
	HeadRef   string    `json:"head_ref,omitempty"`
	BaseRef   string    `json:"base_ref,omitempty"`
	Labels    []string  `json:"labels,omitempty"`
	Mergeable *bool     `json:"mergeable,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// RunsURL lists the pull request's runs.
	RunsURL string `json:"runs_url"`
}

// NewAPIPull converts p to its API form.
func NewAPIPull(p *store.PullState) APIPull {
	return APIPull{
		Repo: p.Repo, Number: p.Number, Title: p.Title, State: p.State, Draft: p.Draft, Author: p.Author,
		HeadSHA: p.HeadSHA, HeadRef: p.HeadRef, BaseRef: p.BaseRef, Labels: p.Labels, Mergeable: p.Mergeable,
		UpdatedAt: p.UpdatedAt,
		RunsURL:   fmt.Sprintf("/api/v1/runs?repo=%s&pr=%d", p.Repo, p.Number),
	}
}

// apiListPulls is GET /api/v1/pulls[?repo&state&limit]: the pull requests
// lockstep has seen, the most recently changed first.
func (s *Server) apiListPulls(w http.ResponseWriter, r *http.Request) {
	if s.opts.PullList == nil {
		writeError(w, http.StatusNotFound, errors.New("this lockstep keeps no pull requests"))
		return
	}
	q := r.URL.Query()
	opts := store.PullListOptions{Repo: q.Get("repo"), State: q.Get("state")}
	var problems []string
	switch opts.State {
	case "", "open", "closed":
	default:
		problems = append(problems, fmt.Sprintf("state=%q: want open or closed", opts.State))
	}
	if v := q.Get("limit"); v != "" {
		if _, err := fmt.Sscan(v, &opts.Limit); err != nil || opts.Limit <= 0 {
			problems = append(problems, fmt.Sprintf("limit=%q: want a positive number", v))
		}
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, errors.New("bad query: "+strings.Join(problems, "; ")))
		return
	}
	pulls, err := s.opts.PullList.ListPullStates(r.Context(), opts)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := struct {
		Pulls []APIPull `json:"pulls"`
	}{Pulls: make([]APIPull, 0, len(pulls))}
	for _, p := range pulls {
		out.Pulls = append(out.Pulls, NewAPIPull(p))
	}
	writeJSON(w, http.StatusOK, out)
}
