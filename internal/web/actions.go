package web

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// LabelRerunOf is set on a re-run to the ID of the run it repeats.
const LabelRerunOf = "lockstep.dev/rerun-of"

// The requester of runs asked for with the admin token, and the reason of
// their aborts.
const (
	adminRequester = "admin"
	abortReason    = "ByUser"
)

// requestIDPattern is what a re-run request id may look like: it becomes
// part of a trigger key.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// errNotFinished and errFinished refuse actions that do not fit the run's
// state.
var (
	errNotFinished = errors.New("has not finished; abort it or wait for it to end before re-running it")
	errFinished    = errors.New("has already finished")
)

// rerun creates a run repeating run id, once per request: a second call
// with the same request returns the run the first created, and created
// false.
func (s *Server) rerun(ctx context.Context, id run.ID, request string) (rn *run.Run, created bool, err error) {
	orig, err := s.opts.Store.GetRun(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if !orig.Status.State.Terminal() {
		return nil, false, fmt.Errorf("run %d %w", id, errNotFinished)
	}
	spec := orig.Spec
	spec.Env = maps.Clone(orig.Spec.Env)
	if orig.Spec.Build != nil {
		b := *orig.Spec.Build
		spec.Build = &b
	}
	spec.Cause = run.CauseRerun
	spec.Requester = adminRequester
	spec.TriggerKey = run.RerunKey(id, request)
	rn, err = s.opts.Store.CreateRun(ctx, &run.Run{
		Meta: run.Meta{Labels: map[string]string{LabelRerunOf: id.String()}},
		Spec: spec,
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return rn, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("create re-run of run %d: %w", id, err)
	}
	s.log.Info("re-run created", "run", rn.ID, "rerun_of", id, "job", spec.Job, "repo", spec.Refs.Repo, "request", request)
	return rn, true, nil
}

// abort asks the runner to stop run id. It reports requested false when
// an abort was already asked for.
func (s *Server) abort(ctx context.Context, id run.ID, message string) (rn *run.Run, requested bool, err error) {
	err = store.RetryOnConflict(ctx, func() error {
		cur, err := s.opts.Store.GetRun(ctx, id)
		if err != nil {
			return err
		}
		if cur.Status.State.Terminal() {
			return fmt.Errorf("run %d %w (%s)", id, errFinished, cur.Status.State)
		}
		if !cur.RequestAbort(abortReason, message) {
			rn, requested = cur, false
			return nil
		}
		rn, err = s.opts.Store.UpdateRun(ctx, cur)
		requested = err == nil
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if requested {
		s.log.Info("abort requested", "run", id, "job", rn.Spec.Job, "repo", rn.Spec.Refs.Repo)
	}
	return rn, requested, nil
}

// actionStatus returns the HTTP status that answers err from rerun or
// abort, and whether err is the server's own failure.
func actionStatus(err error) (status int, internal bool) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, false
	case errors.Is(err, errNotFinished), errors.Is(err, errFinished):
		return http.StatusConflict, false
	case errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest, false
	}
	return http.StatusInternalServerError, true
}

// apiAuthorized answers the request itself, with 401 or 403, unless it
// carries the admin token as a bearer token.
func (s *Server) apiAuthorized(w http.ResponseWriter, r *http.Request, action string) bool {
	if !s.auth.enabled() {
		writeError(w, http.StatusForbidden, fmt.Errorf("%s refused: lockstep was started without an admin token, so nobody may %s runs", action, action))
		return false
	}
	token, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lockstep"`)
		writeError(w, http.StatusUnauthorized, fmt.Errorf("%s refused: it needs the admin token, sent as \"Authorization: Bearer TOKEN\" (lockstep serve keeps it in DATA_DIR/%s)", action, AdminTokenFile))
		return false
	}
	if !s.auth.validToken(token) {
		s.auth.refused(r, failAPIToken, action+" refused: wrong bearer token")
		writeError(w, http.StatusForbidden, fmt.Errorf("%s refused: the bearer token is not the admin token", action))
		return false
	}
	return true
}

// apiRerun is POST /api/v1/runs/{id}/rerun. The request id, from the
// Idempotency-Key header or the request parameter, makes retries of one
// request create one run; without one every call creates a run.
func (s *Server) apiRerun(w http.ResponseWriter, r *http.Request) {
	if !s.apiAuthorized(w, r, "re-run") {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	request := r.Header.Get("Idempotency-Key")
	if request == "" {
		request = r.URL.Query().Get("request")
	}
	if request == "" {
		request = randomID()
	}
	if !requestIDPattern.MatchString(request) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request id %q: want 1 to 64 letters, digits, - or _", request))
		return
	}
	rn, created, err := s.rerun(r.Context(), id, request)
	if err != nil {
		s.actionError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/runs/%d", rn.ID))
	writeJSON(w, status, NewAPIRun(rn))
}

// apiAbort is POST /api/v1/runs/{id}/abort. It answers 202: the runner
// stops the run soon after.
func (s *Server) apiAbort(w http.ResponseWriter, r *http.Request) {
	if !s.apiAuthorized(w, r, "abort") {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	rn, _, err := s.abort(r.Context(), id, "aborted by the administrator through the API")
	if err != nil {
		s.actionError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, NewAPIRun(rn))
}

func (s *Server) actionError(w http.ResponseWriter, r *http.Request, err error) {
	status, internal := actionStatus(err)
	if internal {
		s.internalError(w, r, err)
		return
	}
	writeError(w, status, err)
}

// formAuthorized answers a form post itself unless it carries a valid
// CSRF token and a session cookie.
func (s *Server) formAuthorized(w http.ResponseWriter, r *http.Request, action, next string) bool {
	if !s.auth.checkCSRF(r) {
		s.pages.errorPage(w, r, http.StatusForbidden, action+" refused",
			"The form was not sent from this site's page, or has expired. Go back, reload the page and try again.")
		return false
	}
	if !s.auth.enabled() {
		s.pages.errorPage(w, r, http.StatusForbidden, action+" refused",
			"lockstep was started without an admin token, which "+action+" needs: nobody may use it.")
		return false
	}
	if !s.auth.signedIn(r) {
		s.pages.render(w, r, http.StatusUnauthorized, "error", &errorData{
			page:    page{Title: action + " refused"},
			Message: action + " needs the admin token. Sign in with it, then try again.",
			SignIn:  "/login?next=" + url.QueryEscape(next),
		})
		return false
	}
	return true
}

// rerunForm is POST /runs/{id}/rerun from the run page; it redirects to
// the new run.
func (s *Server) rerunForm(w http.ResponseWriter, r *http.Request) {
	if !s.formAuthorized(w, r, "Re-run", "/runs/"+r.PathValue("id")) {
		return
	}
	id, ok := s.pages.pathID(w, r)
	if !ok {
		return
	}
	request := r.PostFormValue("request")
	if !requestIDPattern.MatchString(request) {
		s.pages.errorPage(w, r, http.StatusBadRequest, "Re-run refused", "The form carries no valid request id. Reload the run page and try again.")
		return
	}
	rn, _, err := s.rerun(r.Context(), id, request)
	if err != nil {
		s.pages.actionError(w, r, "Re-run", err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/runs/%d", rn.ID), http.StatusSeeOther)
}

// abortForm is POST /runs/{id}/abort from the run page; it redirects back
// to the run.
func (s *Server) abortForm(w http.ResponseWriter, r *http.Request) {
	if !s.formAuthorized(w, r, "Abort", "/runs/"+r.PathValue("id")) {
		return
	}
	id, ok := s.pages.pathID(w, r)
	if !ok {
		return
	}
	if _, _, err := s.abort(r.Context(), id, "aborted by the administrator in the web UI"); err != nil {
		s.pages.actionError(w, r, "Abort", err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/runs/%d", id), http.StatusSeeOther)
}

// periodicFromPath reads the repository and job of a run-now path.
func periodicFromPath(r *http.Request) (repo, job string) {
	return r.PathValue("owner") + "/" + r.PathValue("repo"), r.PathValue("job")
}

// runNow starts periodic job of repo at once, logging it.
func (s *Server) runNow(ctx context.Context, repo, job, request string) (*run.Run, bool, error) {
	if s.opts.Periodics == nil {
		return nil, false, fmt.Errorf("periodic %s of %s: %w: this lockstep runs no periodics", job, repo, store.ErrNotFound)
	}
	rn, created, err := s.opts.Periodics.RunNow(ctx, repo, job, request)
	if err != nil {
		return nil, false, err
	}
	if created {
		s.log.Info("periodic run now", "run", rn.ID, "repo", repo, "job", job, "request", request)
	}
	return rn, created, nil
}

// apiRunNow is POST /api/v1/periodics/{owner}/{repo}/{job}/run: a run of
// the periodic now, outside its schedule. Like a re-run, the request id
// (Idempotency-Key or request) makes retries of one request one run.
func (s *Server) apiRunNow(w http.ResponseWriter, r *http.Request) {
	if !s.apiAuthorized(w, r, "run-now") {
		return
	}
	request := r.Header.Get("Idempotency-Key")
	if request == "" {
		request = r.URL.Query().Get("request")
	}
	if request == "" {
		request = randomID()
	}
	if !requestIDPattern.MatchString(request) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request id %q: want 1 to 64 letters, digits, - or _", request))
		return
	}
	repo, job := periodicFromPath(r)
	rn, created, err := s.runNow(r.Context(), repo, job, request)
	if err != nil {
		s.actionError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/runs/%d", rn.ID))
	writeJSON(w, status, NewAPIRun(rn))
}

// runNowForm is POST /periodics/{owner}/{repo}/{job}/run from the
// periodics page; it redirects to the new run.
func (s *Server) runNowForm(w http.ResponseWriter, r *http.Request) {
	if !s.formAuthorized(w, r, "Run now", "/periodics") {
		return
	}
	request := r.PostFormValue("request")
	if !requestIDPattern.MatchString(request) {
		s.pages.errorPage(w, r, http.StatusBadRequest, "Run now refused", "The form carries no valid request id. Reload the periodics page and try again.")
		return
	}
	repo, job := periodicFromPath(r)
	rn, _, err := s.runNow(r.Context(), repo, job, request)
	if err != nil {
		s.pages.actionError(w, r, "Run now", err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/runs/%d", rn.ID), http.StatusSeeOther)
}
