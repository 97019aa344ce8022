package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// APIRun is the JSON form of a run in lockstep's HTTP API. Field names are
// part of the user-facing contract.
type APIRun struct {
	ID              int64               `json:"id"`
	ResourceVersion int64               `json:"resource_version"`
	Job             string              `json:"job"`
	Type            run.Type            `json:"type"`
	Repo            string              `json:"repo"`
	PR              int                 `json:"pr,omitempty"`
	PRTitle         string              `json:"pr_title,omitempty"`
	SHA             string              `json:"sha"`
	BaseRef         string              `json:"base_ref,omitempty"`
	BaseSHA         string              `json:"base_sha,omitempty"`
	HeadRef         string              `json:"head_ref,omitempty"`
	Author          string              `json:"author,omitempty"`
	Context         string              `json:"context"`
	TriggerKey      string              `json:"trigger_key"`
	Cause           run.Cause           `json:"cause"`
	Requester       string              `json:"requester,omitempty"`
	State           run.State           `json:"state"`
	Reason          string              `json:"reason,omitempty"`
	Message         string              `json:"message,omitempty"`
	Conditions      []run.Condition     `json:"conditions,omitempty"`
	Labels          map[string]string   `json:"labels,omitempty"`
	Build           *run.BuildUnderTest `json:"build,omitempty"`
	CreatedAt       time.Time           `json:"created_at"`
	StartedAt       *time.Time          `json:"started_at,omitempty"`
	FinishedAt      *time.Time          `json:"finished_at,omitempty"`
	LogURL          string              `json:"log_url"`
	Reported        map[string]string   `json:"reported,omitempty"`
}

// NewAPIRun converts r to its API form.
func NewAPIRun(r *run.Run) APIRun {
	return APIRun{
		ID:              int64(r.ID),
		ResourceVersion: r.ResourceVersion,
		Job:             r.Spec.Job,
		Type:            r.Spec.Type,
		Repo:            r.Spec.Refs.Repo,
		PR:              r.Spec.Refs.Pull,
		PRTitle:         r.Spec.Refs.Title,
		SHA:             r.Spec.Refs.SHA(),
		BaseRef:         r.Spec.Refs.BaseRef,
		BaseSHA:         r.Spec.Refs.BaseSHA,
		HeadRef:         r.Spec.Refs.HeadRef,
		Author:          r.Spec.Refs.Author,
		Context:         r.Spec.StatusContext(),
		TriggerKey:      r.Spec.TriggerKey,
		Cause:           r.Spec.Cause,
		Requester:       r.Spec.Requester,
		State:           r.Status.State,
		Reason:          r.Status.Reason,
		Message:         r.Status.Message,
		Conditions:      r.Status.Conditions,
		Labels:          r.Labels,
		Build:           r.Spec.Build,
		CreatedAt:       r.CreatedAt,
		StartedAt:       r.Status.StartedAt,
		FinishedAt:      r.Status.FinishedAt,
		LogURL:          fmt.Sprintf("/api/v1/runs/%d/log", r.ID),
		Reported:        r.Status.Reported,
	}
}

// listOptions reads run filters from a query string: repo, pr, sha, job,
// type, state (comma-separated, any of), limit, continue.
func listOptions(r *http.Request) (store.ListOptions, error) {
	q := r.URL.Query()
	opts := store.ListOptions{
		Repo:     q.Get("repo"),
		SHA:      q.Get("sha"),
		Job:      q.Get("job"),
		Continue: q.Get("continue"),
	}
	var problems []string
	if v := q.Get("pr"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			problems = append(problems, fmt.Sprintf("pr=%q: want a pull request number", v))
		}
		opts.Pull = n
	}
	if v := q.Get("type"); v != "" {
		opts.Type = run.Type(v)
		if !opts.Type.Valid() {
			problems = append(problems, fmt.Sprintf("type=%q: want presubmit, postsubmit, periodic or manual", v))
		}
	}
	if v := q.Get("state"); v != "" {
		for _, s := range strings.Split(v, ",") {
			st := run.State(strings.TrimSpace(s))
			if !st.Valid() {
				problems = append(problems, fmt.Sprintf("state=%q: want one of %v", s, run.States))
				continue
			}
			opts.State = append(opts.State, st)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			problems = append(problems, fmt.Sprintf("limit=%q: want a positive number", v))
		}
		opts.Limit = n
	}
	if len(problems) > 0 {
		return opts, errors.New("bad query: " + strings.Join(problems, "; "))
	}
	return opts, nil
}

func (s *Server) apiListRuns(w http.ResponseWriter, r *http.Request) {
	opts, err := listOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	page, err := s.opts.Store.ListRuns(r.Context(), opts)
	if errors.Is(err, store.ErrInvalid) {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := struct {
		Runs     []APIRun `json:"runs"`
		Continue string   `json:"continue,omitempty"`
	}{Runs: make([]APIRun, 0, len(page.Runs)), Continue: page.Continue}
	for _, rn := range page.Runs {
		out.Runs = append(out.Runs, NewAPIRun(rn))
	}
	writeJSON(w, http.StatusOK, out)
}

// pathID reads the {id} path value, answering the request itself when it
// is not a run ID.
func pathID(w http.ResponseWriter, r *http.Request) (run.ID, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("run id %q is not a positive number", r.PathValue("id")))
		return 0, false
	}
	return run.ID(id), true
}

// runFromPath loads the run named by the {id} path value, answering the
// request itself when it cannot.
func (s *Server) runFromPath(w http.ResponseWriter, r *http.Request) (*run.Run, bool) {
	id, ok := pathID(w, r)
	if !ok {
		return nil, false
	}
	rn, err := s.opts.Store.GetRun(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("run %d not found", id))
		return nil, false
	}
	if err != nil {
		s.internalError(w, r, err)
		return nil, false
	}
	return rn, true
}

func (s *Server) apiGetRun(w http.ResponseWriter, r *http.Request) {
	rn, ok := s.runFromPath(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, NewAPIRun(rn))
}

func (s *Server) apiRunLog(w http.ResponseWriter, r *http.Request) {
	rn, ok := s.runFromPath(w, r)
	if !ok {
		return
	}
	if rn.Status.LogPath == "" {
		writeError(w, http.StatusNotFound, fmt.Errorf("run %d has no log yet (state %s)", rn.ID, rn.Status.State))
		return
	}
	f, err := s.openLog(r.Context(), rn)
	if errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusNotFound, fmt.Errorf("log of run %d is gone", rn.ID))
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Lockstep-Run-State", string(rn.Status.State))
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(f, 0, size))
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

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, errors.New("internal error; see lockstep's log"))
}
