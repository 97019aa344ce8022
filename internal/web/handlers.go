package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// uiPageSize is how many runs or deliveries a page lists.
const uiPageSize = 50

// logTailBytes is how much of a log the run page shows; the raw log has
// the rest.
const logTailBytes = 256 << 10

type option struct {
	Value, Label string
	Selected     bool
}

func options(selected string, pairs ...string) []option {
	out := make([]option, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, option{Value: pairs[i], Label: pairs[i+1], Selected: pairs[i] == selected})
	}
	return out
}

type pager struct{ Newer, Older string }

// pagerFor returns the links of a listing at path with query q whose next
// page is continue token next.
func pagerFor(path string, q url.Values, next string) pager {
	var p pager
	keep := url.Values{}
	for k, vs := range q {
		if k != "continue" && len(vs) > 0 && vs[0] != "" {
			keep.Set(k, vs[0])
		}
	}
	if q.Get("continue") != "" {
		p.Newer = pageURL(path, keep)
	}
	if next != "" {
		older := url.Values{}
		for k, vs := range keep {
			older[k] = vs
		}
		older.Set("continue", next)
		p.Older = pageURL(path, older)
	}
	return p
}

type runsData struct {
	page
	Filter       struct{ Repo, PR, Job string }
	Filtered     bool // some filter is set: the form starts unfolded
	StateOptions []option
	TypeOptions  []option
	Runs         []runRow
	Pager        pager
	Error        string
}

// runsPage is the list of runs, newest first, filtered by the query (as
// GET /api/v1/runs is) and paged with continue tokens.
func (s *Server) runsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &runsData{page: page{Title: "Runs", Nav: "runs"}}
	d.Filter.Repo, d.Filter.PR, d.Filter.Job = q.Get("repo"), q.Get("pr"), q.Get("job")
	for _, k := range []string{"repo", "pr", "job", "state", "type", "sha"} {
		d.Filtered = d.Filtered || q.Get(k) != ""
	}
	stateOpts := []string{"", "Any",
		"pending,scheduled,running", "Unfinished",
		"failure,error", "Failed or error"}
	for _, st := range run.States {
		stateOpts = append(stateOpts, string(st), string(st))
	}
	d.StateOptions = options(q.Get("state"), stateOpts...)
	d.TypeOptions = options(q.Get("type"), "", "Any",
		string(run.Presubmit), "presubmit", string(run.Postsubmit), "postsubmit",
		string(run.Periodic), "periodic", string(run.Manual), "manual")
	opts, err := listOptions(r)
	if err != nil {
		d.Error = err.Error()
		s.pages.render(w, r, http.StatusBadRequest, "runs", d)
		return
	}
	if opts.Limit == 0 {
		opts.Limit = uiPageSize
	}
	pg, err := s.opts.Store.ListRuns(r.Context(), opts)
	if errors.Is(err, store.ErrInvalid) {
		d.Error = "This page link is not valid any more (" + err.Error() + "). Start again from the newest runs."
		s.pages.render(w, r, http.StatusBadRequest, "runs", d)
		return
	}
	if err != nil {
		s.pages.internalError(w, r, err)
		return
	}
	if d.Runs, err = s.runRows(r.Context(), pg.Runs); err != nil {
		s.pages.internalError(w, r, err)
		return
	}
	d.Pager = pagerFor("/runs", q, pg.Continue)
	s.pages.render(w, r, http.StatusOK, "runs", d)
}

// runRow is a run in a list, with the newest title of its pull request.
type runRow struct {
	*run.Run
	PRTitle string
}

// runRows returns runs with their pull requests' titles: the stored
// pull request's, which follows edits, or else the one the run was
// created with.
func (s *Server) runRows(ctx context.Context, runs []*run.Run) ([]runRow, error) {
	titles := map[string]string{}
	rows := make([]runRow, 0, len(runs))
	for _, rn := range runs {
		row := runRow{Run: rn, PRTitle: rn.Spec.Refs.Title}
		if ref := rn.Spec.Refs; ref.Pull != 0 && s.opts.Pulls != nil {
			k := fmt.Sprintf("%s#%d", ref.Repo, ref.Pull)
			t, ok := titles[k]
			if !ok {
				p, err := s.opts.Pulls.GetPullState(ctx, ref.Repo, ref.Pull)
				switch {
				case err == nil:
					t = p.Title
				case !errors.Is(err, store.ErrNotFound):
					return nil, err
				}
				titles[k] = t
			}
			if t != "" {
				row.PRTitle = t
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// timelineEntry is one line of a run's timeline.
type timelineEntry struct {
	Time    time.Time
	Kind    string // good, bad, error, run, warn or empty
	What    string
	Reason  string
	Message string
}

// timeline returns what happened to rn, in time order.
func timeline(rn *run.Run) []timelineEntry {
	var tl []timelineEntry
	created := "Created (" + string(rn.Spec.Cause)
	if rn.Spec.Requester != "" {
		created += ", asked for by " + rn.Spec.Requester
	}
	tl = append(tl, timelineEntry{Time: rn.CreatedAt, What: created + ")"})
	for _, c := range rn.Status.Conditions {
		e := timelineEntry{Time: c.Time, What: c.Type, Reason: c.Reason, Message: c.Message, Kind: "good"}
		if !c.Status {
			e.What += ": no"
			e.Kind = "warn"
		}
		tl = append(tl, e)
	}
	if t := rn.Status.StartedAt; t != nil {
		tl = append(tl, timelineEntry{Time: *t, What: "Started", Kind: "run"})
	}
	if t := rn.Status.FinishedAt; t != nil {
		e := timelineEntry{Time: *t, What: "Finished: " + string(rn.Status.State), Reason: rn.Status.Reason, Message: rn.Status.Message}
		switch rn.Status.State {
		case run.Success:
			e.Kind = "good"
		case run.Aborted:
			e.Kind = "warn"
		case run.Error:
			e.Kind = "error"
		default:
			e.Kind = "bad"
		}
		tl = append(tl, e)
	}
	sort.SliceStable(tl, func(i, j int) bool { return tl[i].Time.Before(tl[j].Time) })
	return tl
}

type runData struct {
	page
	Run            *run.Run
	Build          *run.BuildUnderTest
	Timeline       []timelineEntry
	Log            logTail
	Live           bool
	NoLogYet       bool
	CanRerun       bool
	CanAbort       bool
	AbortRequested string
	RerunRequest   string
	RerunOf        string
	// PullTitle is the title of the pull request the run tests.
	PullTitle string
	// FirstError is the first line of a failed run's log that says what
	// failed, shown above the log.
	FirstError *logLine
}

// runPage shows one run: what it tests, its timeline, its log (live while
// it runs) and the re-run and abort buttons.
func (s *Server) runPage(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pages.pathID(w, r)
	if !ok {
		return
	}
	rn, err := s.opts.Store.GetRun(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.pages.errorPage(w, r, http.StatusNotFound, "No such run", fmt.Sprintf("lockstep has no run %d.", id))
		return
	}
	if err != nil {
		s.pages.internalError(w, r, err)
		return
	}
	done := rn.Status.State.Terminal()
	d := &runData{
		page:         page{Title: fmt.Sprintf("Run %d %s", rn.ID, rn.Spec.Job), Nav: "runs"},
		Run:          rn,
		Build:        rn.Spec.Build,
		Timeline:     timeline(rn),
		Live:         !done,
		NoLogYet:     rn.Status.LogPath == "",
		CanRerun:     done,
		CanAbort:     !done,
		RerunRequest: randomID(),
		RerunOf:      rn.Labels[LabelRerunOf],
		PullTitle:    rn.Spec.Refs.Title,
	}
	if rn.Spec.Refs.Pull != 0 && s.opts.Pulls != nil {
		// The newest title, which may have been edited since.
		if p, err := s.opts.Pulls.GetPullState(r.Context(), rn.Spec.Refs.Repo, rn.Spec.Refs.Pull); err == nil && p.Title != "" {
			d.PullTitle = p.Title
		}
	}
	if reason, _, ok := rn.AbortRequested(); ok && !done {
		d.AbortRequested = reason
		d.CanAbort = false
	}
	if rn.Status.LogPath != "" {
		lf, lerr := s.openLog(r.Context(), rn)
		if d.Log, err = readLogTail(lf, lerr, logTailBytes, done); err != nil {
			s.pages.internalError(w, r, fmt.Errorf("run %d: %w", rn.ID, err))
			return
		}
		if st := rn.Status.State; st == run.Failure || st == run.Error {
			if l, ok := d.Log.FirstError(); ok {
				d.FirstError = &l
			}
		}
	}
	s.pages.render(w, r, http.StatusOK, "run", d)
}

// jobRuns is one job's runs on one commit, newest first.
type jobRuns struct {
	Latest  *run.Run
	Earlier []*run.Run
}

type shaRuns struct {
	SHA  string
	Runs []*run.Run
}

type pullData struct {
	page
	Repo      string
	Number    int
	Pull      *store.PullState
	Head      string
	HeadJobs  []jobRuns
	Summary   string
	Green     bool
	Warnings  []string
	History   []shaRuns
	Truncated bool
}

// pullPage shows a pull request: every job on its head commit with its
// newest run, why it is not green, and the runs of its earlier commits.
func (s *Server) pullPage(w http.ResponseWriter, r *http.Request) {
	repo := r.PathValue("owner") + "/" + r.PathValue("repo")
	number, err := strconv.Atoi(r.PathValue("number"))
	if err != nil || number <= 0 {
		s.pages.errorPage(w, r, http.StatusNotFound, "No such pull request", fmt.Sprintf("%q is not a pull request number.", r.PathValue("number")))
		return
	}
	ctx := r.Context()
	pg, err := s.opts.Store.ListRuns(ctx, store.ListOptions{Repo: repo, Pull: number, Limit: store.MaxLimit})
	if err != nil {
		s.pages.internalError(w, r, err)
		return
	}
	d := &pullData{
		page:   page{Title: fmt.Sprintf("%s PR #%d", repo, number), Nav: "pulls"},
		Repo:   repo,
		Number: number,
	}
	d.Truncated = pg.Continue != ""
	if s.opts.Pulls != nil {
		p, err := s.opts.Pulls.GetPullState(ctx, repo, number)
		switch {
		case err == nil:
			d.Pull = p
			d.Head = p.HeadSHA
			if p.Title != "" {
				d.page.Title += " " + p.Title
			}
		case !errors.Is(err, store.ErrNotFound):
			s.pages.internalError(w, r, err)
			return
		}
	}
	if d.Head == "" && len(pg.Runs) > 0 {
		d.Head = pg.Runs[0].Spec.Refs.SHA()
	}
	if d.Pull == nil && len(pg.Runs) == 0 {
		s.pages.errorPage(w, r, http.StatusNotFound, "No such pull request",
			fmt.Sprintf("lockstep has no runs of %s PR #%d and has seen no webhook about it. If it should have, look at the deliveries page.", repo, number))
		return
	}
	d.Warnings = pullWarnings(d.Pull)

	bySHA := make(map[string]int)
	for _, rn := range pg.Runs {
		sha := rn.Spec.Refs.SHA()
		i, ok := bySHA[sha]
		if !ok {
			i = len(d.History)
			bySHA[sha] = i
			d.History = append(d.History, shaRuns{SHA: sha})
		}
		d.History[i].Runs = append(d.History[i].Runs, rn)
	}
	if i, ok := bySHA[d.Head]; ok {
		d.HeadJobs = latestPerJob(d.History[i].Runs)
		d.History = slices.Delete(d.History, i, i+1)
	}
	d.Summary, d.Green = summarize(d.HeadJobs)
	s.pages.render(w, r, http.StatusOK, "pull", d)
}

// latestPerJob groups runs (newest first) by status context.
func latestPerJob(runs []*run.Run) []jobRuns {
	idx := make(map[string]int)
	var out []jobRuns
	for _, rn := range runs {
		c := rn.Spec.StatusContext()
		if i, ok := idx[c]; ok {
			out[i].Earlier = append(out[i].Earlier, rn)
			continue
		}
		idx[c] = len(out)
		out = append(out, jobRuns{Latest: rn})
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Latest.Spec.StatusContext() < out[j].Latest.Spec.StatusContext()
	})
	return out
}

// summarize says in one sentence whether the head is green and, if not,
// which jobs keep it from being so.
func summarize(jobs []jobRuns) (string, bool) {
	if len(jobs) == 0 {
		return "", false
	}
	var failed, unfinished []string
	for _, j := range jobs {
		st := j.Latest.Status.State
		name := j.Latest.Spec.StatusContext()
		switch {
		case st == run.Success:
		case st.Terminal():
			failed = append(failed, name+" "+string(st))
		default:
			unfinished = append(unfinished, name+" "+string(st))
		}
	}
	n := fmt.Sprintf("%d job", len(jobs))
	if len(jobs) != 1 {
		n += "s"
	}
	if len(failed) == 0 && len(unfinished) == 0 {
		return "Green: " + n + ", all passed.", true
	}
	var why []string
	if len(failed) > 0 {
		why = append(why, strings.Join(failed, ", "))
	}
	if len(unfinished) > 0 {
		why = append(why, "waiting for "+strings.Join(unfinished, ", "))
	}
	return "Not green (" + n + "): " + strings.Join(why, "; ") + ".", false
}

// pullWarnings explains the states of a pull request in which lockstep
// runs nothing, or not everything.
func pullWarnings(p *store.PullState) []string {
	if p == nil {
		return nil
	}
	var out []string
	if p.State == "closed" {
		out = append(out, "The pull request is closed: lockstep aborted its unfinished runs and starts no new ones.")
	}
	if p.Draft {
		out = append(out, "The pull request is a draft: lockstep starts only the jobs that run on drafts until it is marked ready for review.")
	}
	if p.Mergeable != nil && !*p.Mergeable {
		out = append(out, "GitHub reports the pull request as not mergeable (it conflicts with its base branch): lockstep starts no runs for it until the conflict is resolved.")
	}
	if slices.Contains(p.Labels, "needs-ok-to-test") && !slices.Contains(p.Labels, "ok-to-test") {
		out = append(out, "The author is not trusted: lockstep runs nothing until a trusted person comments /ok-to-test.")
	}
	return out
}

type deliveriesData struct {
	page
	Available    bool
	Event        string
	StateOptions []option
	Deliveries   []*store.Delivery
	Pager        pager
	Error        string
	// Refused lists deliveries the intake refused: all of them (paged)
	// when the state filter is "refused", otherwise the newest few, with
	// MoreRefused set when there are more.
	Refused     []*store.Refusal
	MoreRefused bool
	OnlyRefused bool
	// Filtered is set when a filter is: the form starts unfolded.
	Filtered bool
}

// refusedOnTop is how many refused deliveries the deliveries page shows
// above the accepted ones.
const refusedOnTop = 5

// deliveriesPage lists webhook deliveries, newest first, with what each
// caused.
func (s *Server) deliveriesPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &deliveriesData{
		page:      page{Title: "Deliveries", Nav: "deliveries"},
		Available: s.opts.Deliveries != nil,
		Event:     q.Get("event"),
		Filtered:  q.Get("event") != "" || q.Get("state") != "",
		StateOptions: options(q.Get("state"), "", "Any",
			string(store.DeliveryPending), "pending", string(store.DeliveryDone), "done", string(store.DeliveryFailed), "failed",
			"refused", "refused at intake"),
	}
	if !d.Available {
		s.pages.render(w, r, http.StatusOK, "deliveries", d)
		return
	}
	if q.Get("state") == "refused" {
		d.OnlyRefused = true
		if s.opts.Refusals == nil {
			s.pages.render(w, r, http.StatusOK, "deliveries", d)
			return
		}
		pg, err := s.opts.Refusals.ListRefusals(r.Context(), uiPageSize, q.Get("continue"))
		if errors.Is(err, store.ErrInvalid) {
			d.Error = "This page link is not valid any more (" + err.Error() + "). Start again from the newest deliveries."
			s.pages.render(w, r, http.StatusBadRequest, "deliveries", d)
			return
		}
		if err != nil {
			s.pages.internalError(w, r, err)
			return
		}
		d.Refused = pg.Refusals
		d.Pager = pagerFor("/deliveries", q, pg.Continue)
		s.pages.render(w, r, http.StatusOK, "deliveries", d)
		return
	}
	opts := store.DeliveryListOptions{
		Event:    d.Event,
		State:    store.DeliveryState(q.Get("state")),
		Limit:    uiPageSize,
		Continue: q.Get("continue"),
	}
	switch opts.State {
	case "", store.DeliveryPending, store.DeliveryDone, store.DeliveryFailed:
	default:
		d.Error = fmt.Sprintf("state=%q: want pending, done or failed", opts.State)
		s.pages.render(w, r, http.StatusBadRequest, "deliveries", d)
		return
	}
	pg, err := s.opts.Deliveries.ListDeliveries(r.Context(), opts)
	if errors.Is(err, store.ErrInvalid) {
		d.Error = "This page link is not valid any more (" + err.Error() + "). Start again from the newest deliveries."
		s.pages.render(w, r, http.StatusBadRequest, "deliveries", d)
		return
	}
	if err != nil {
		s.pages.internalError(w, r, err)
		return
	}
	d.Deliveries = pg.Deliveries
	d.Pager = pagerFor("/deliveries", q, pg.Continue)
	if s.opts.Refusals != nil && q.Get("continue") == "" && d.Event == "" && opts.State == "" {
		rp, err := s.opts.Refusals.ListRefusals(r.Context(), refusedOnTop, "")
		if err != nil {
			s.pages.internalError(w, r, err)
			return
		}
		d.Refused, d.MoreRefused = rp.Refusals, rp.Continue != ""
	}
	s.pages.render(w, r, http.StatusOK, "deliveries", d)
}

type loginData struct {
	page
	Enabled bool
	Next    string
	Error   string
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.pages.render(w, r, http.StatusOK, "login", &loginData{
		page:    page{Title: "Sign in"},
		Enabled: s.auth.enabled(),
		Next:    localPath(r.URL.Query().Get("next")),
	})
}

// login checks the admin token of the sign-in form and, when it is
// right, sets the session cookie and goes back to where the person was.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	d := &loginData{page: page{Title: "Sign in"}, Enabled: s.auth.enabled(), Next: localPath(r.PostFormValue("next"))}
	switch {
	case !s.auth.checkCSRF(r):
		d.Error = "The form was not sent from this site's page, or has expired. Try again."
		s.pages.render(w, r, http.StatusForbidden, "login", d)
	case !s.auth.enabled():
		d.Error = "This lockstep was started without an admin token: nobody can sign in."
		s.pages.render(w, r, http.StatusForbidden, "login", d)
	case !s.auth.validToken(strings.TrimSpace(r.PostFormValue("token"))):
		d.Error = "That is not the admin token."
		s.auth.refused(r, failSignIn, "sign-in refused: wrong admin token")
		s.pages.render(w, r, http.StatusForbidden, "login", d)
	default:
		if err := s.auth.signIn(w, r); err != nil {
			s.log.Error("sign-in failed", "err", err)
			d.Error = "lockstep could not record the sign-in; see its log, and try again."
			s.pages.render(w, r, http.StatusServiceUnavailable, "login", d)
			return
		}
		s.log.Info("signed in", "remote", r.RemoteAddr)
		http.Redirect(w, r, d.Next, http.StatusSeeOther)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !s.auth.checkCSRF(r) {
		s.pages.errorPage(w, r, http.StatusForbidden, "Sign-out refused", "The form was not sent from this site's page. Reload the page and try again.")
		return
	}
	if err := s.auth.signOut(w, r); err != nil {
		s.log.Error("sign-out failed", "err", err)
		s.pages.errorPage(w, r, http.StatusServiceUnavailable, "Sign-out failed", "lockstep could not end the session; see its log, and try again.")
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
