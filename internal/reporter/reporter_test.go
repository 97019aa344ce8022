package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sync/errgroup"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// checkQuiet fails the test if the reporter met errors or anything logged
// a warning or worse.
func checkQuiet(t *testing.T, e *env, in *instance) {
	t.Helper()
	if errs := in.tr.snapshot().errs; len(errs) > 0 {
		t.Errorf("reconcile errors: got %v, want none", errs)
	}
	if recs := e.logs.atLeast(slog.LevelWarn); len(recs) > 0 {
		t.Errorf("warnings and errors logged: got %+v, want none", recs)
	}
}

// TestNewestRunOfAContextWins replays kubespray #11490: an older pipeline
// of a context fails, a newer one succeeds, and the context must end
// success, with no write by the older one once the newer one exists.
func TestNewestRunOfAContextWins(t *testing.T) {
	t.Parallel()
	const old, nu = 0, 1
	type step struct {
		run   int
		state run.State // "" creates the run
	}
	type shown struct {
		run   int
		state string
	}
	tests := []struct {
		name string
		// startAt is how many steps happen before the reporter starts.
		startAt int
		steps   []step
		want    []shown
	}{
		{
			name:  "old fails after new succeeds",
			steps: []step{{old, ""}, {old, run.Running}, {nu, ""}, {nu, run.Success}, {old, run.Failure}},
			want:  []shown{{old, "pending"}, {nu, "pending"}, {nu, "success"}},
		},
		{
			name:  "old fails while new runs",
			steps: []step{{old, ""}, {old, run.Running}, {nu, ""}, {nu, run.Running}, {old, run.Failure}, {nu, run.Success}},
			want:  []shown{{old, "pending"}, {nu, "pending"}, {nu, "success"}},
		},
		{
			name:  "a re-run after a failure goes back to pending",
			steps: []step{{old, ""}, {old, run.Running}, {old, run.Failure}, {nu, ""}, {nu, run.Running}, {nu, run.Success}},
			want:  []shown{{old, "pending"}, {old, "failure"}, {nu, "pending"}, {nu, "success"}},
		},
		{
			name:    "both finished before the reporter starts",
			startAt: 4,
			steps:   []step{{old, ""}, {nu, ""}, {nu, run.Success}, {old, run.Failure}},
			want:    []shown{{nu, "success"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, false, presubmit("e2e", "ci/e2e"))
			head := sha(1)
			var ids [2]run.ID
			var in *instance
			for i, s := range tt.steps {
				if i == tt.startAt {
					in = e.start(nil)
				}
				if s.state == "" {
					ids[s.run] = e.create("e2e", 1, head).ID
				} else {
					e.to(ids[s.run], s.state, "", "")
				}
				if in != nil {
					e.settle(in)
				}
			}
			if in == nil {
				in = e.start(nil)
			}
			e.resync(in)

			var got []shown
			for _, w := range e.writes() {
				idx := -1
				for i, id := range ids {
					if w.run() == id {
						idx = i
					}
				}
				if w.SHA != head || w.Context != "ci/e2e" || idx < 0 {
					t.Fatalf("unexpected write %+v", w)
				}
				got = append(got, shown{idx, w.State})
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(shown{})); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			final := e.shows(head, "ci/e2e")
			if final.State != "success" || final.TargetURL != TargetURL(testBase, ids[nu]) {
				t.Errorf("context shows %s %s, want success %s", final.State, final.TargetURL, TargetURL(testBase, ids[nu]))
			}
			if got := e.reported(ids[nu]); got != "success" {
				t.Errorf("newest run records %q, want success", got)
			}
			checkQuiet(t, e, in)
		})
	}
}

// TestSupersededHeadNeverReports checks invariant 3: once a new head
// supersedes a run, the run writes nothing, whatever it does next.
func TestSupersededHeadNeverReports(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false, presubmit("unit", ""))
	// A run superseded before lockstep ever reported it.
	early := e.create("unit", 1, sha(0))
	e.abort(early.ID, run.ReasonSuperseded)
	in := e.start(nil)

	a := e.create("unit", 1, sha(1))
	e.to(a.ID, run.Running, "", "")
	e.settle(in)
	e.waitReported(a.ID, "pending")
	// The pull request's head moves: the trigger asks a to abort and
	// creates b on the new head.
	e.abort(a.ID, run.ReasonSuperseded)
	b := e.create("unit", 1, sha(2))
	e.settle(in)
	e.to(a.ID, run.Aborted, run.ReasonSuperseded, "superseded by head "+sha(2)[:7])
	e.to(b.ID, run.Failure, "ScriptExited", "the job's script exited with status 1")
	e.to(early.ID, run.Aborted, run.ReasonSuperseded, "")
	e.settle(in)
	e.resync(in)

	type w struct{ SHA, State string }
	var got []w
	for _, x := range e.writes() {
		got = append(got, w{x.SHA, x.State})
	}
	want := []w{{sha(1), "pending"}, {sha(2), "pending"}, {sha(2), "failure"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if got := e.reported(a.ID); got != "pending" {
		t.Errorf("superseded run records %q, want pending (what it showed before it was superseded)", got)
	}
	if got := e.reported(early.ID); got != "" {
		t.Errorf("run superseded before reporting records %q, want nothing", got)
	}
	checkQuiet(t, e, in)
}

// TestHundredPresubmitRuns drives 100 runs of 10 jobs on 10 pull requests
// through their states concurrently, with latency on every GitHub call,
// and checks on the call log that each context got at most two writes,
// pending then final, and never the same state twice.
func TestHundredPresubmitRuns(t *testing.T) {
	t.Parallel()
	const pulls, jobs = 10, 10
	var cfgJobs []config.Presubmit
	for j := range jobs {
		p := presubmit(fmt.Sprintf("job-%d", j), fmt.Sprintf("ci/job-%d", j))
		p.Optional = j%3 == 0
		cfgJobs = append(cfgJobs, p)
	}
	e := newEnv(t, false, cfgJobs...)
	e.gh.SetLatency(2 * time.Millisecond)
	in := e.start(func(o *Options) { o.Workers = 8 })

	type final struct {
		state          run.State
		reason, msg    string
		forge, context string
		sha            string
	}
	finals := map[run.ID]final{}
	var order [pulls][]run.ID
	endings := []final{
		{state: run.Success, forge: "success"},
		{state: run.Failure, reason: "ScriptExited", msg: "the job's script exited with status 1", forge: "failure"},
		{state: run.Error, reason: "CloneFailed", msg: "git clone exited with status 128", forge: "error"},
		{state: run.Aborted, reason: "Timeout", msg: "the run exceeded its timeout of 1h0m0s and was stopped", forge: "error"},
		{state: run.Success, forge: "success"},
	}
	for p := range pulls {
		for j := range jobs {
			r := e.create(fmt.Sprintf("job-%d", j), p+1, sha(p))
			f := endings[(p*jobs+j)%len(endings)]
			f.context, f.sha = r.Spec.Context, sha(p)
			finals[r.ID] = f
			order[p] = append(order[p], r.ID)
		}
	}
	// One writer per pull request, each taking its runs through their
	// states step by step, interleaved with the others.
	g, ctx := errgroup.WithContext(t.Context())
	for p := range pulls {
		g.Go(func() error {
			for _, state := range []run.State{run.Scheduled, run.Running} {
				for _, id := range order[p] {
					if err := advance(ctx, e.st, id, state, "", ""); err != nil {
						return err
					}
				}
			}
			for _, id := range order[p] {
				f := finals[id]
				if err := advance(ctx, e.st, id, f.state, f.reason, f.msg); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for id, f := range finals {
		e.waitReported(id, f.forge)
	}
	e.settle(in)
	e.resync(in)

	type ctxKey struct{ sha, context string }
	byContext := map[ctxKey][]write{}
	writes := e.writes()
	for _, w := range writes {
		k := ctxKey{w.SHA, w.Context}
		byContext[k] = append(byContext[k], w)
	}
	if len(byContext) != pulls*jobs {
		t.Errorf("contexts written: got %d, want %d", len(byContext), pulls*jobs)
	}
	for id, f := range finals {
		ws := byContext[ctxKey{f.sha, f.context}]
		if len(ws) == 0 || len(ws) > 2 {
			t.Errorf("run %d: got %d writes, want 1 or 2", id, len(ws))
			continue
		}
		if len(ws) == 2 && ws[0].State != "pending" {
			t.Errorf("run %d: first of two writes is %s, want pending", id, ws[0].State)
		}
		last := ws[len(ws)-1]
		if last.State != f.forge || last.run() != id {
			t.Errorf("run %d: last write %s for run %d, want %s for run %d", id, last.State, last.run(), f.forge, id)
		}
		for i := 1; i < len(ws); i++ {
			if ws[i].State == ws[i-1].State {
				t.Errorf("run %d: redundant write of %s", id, ws[i].State)
			}
		}
		if shown := e.shows(f.sha, f.context); shown.State != f.forge {
			t.Errorf("run %d: context %s shows %q, want %s", id, f.context, shown.State, f.forge)
		}
	}
	t.Logf("%d runs, %d status writes", len(finals), len(writes))
	checkQuiet(t, e, in)
}

// TestRateLimitIsWaitedOut exhausts the rate limit with a reset 2 s ahead:
// the reporter waits for the reset and then reports everything, with no
// warning or error logged.
func TestRateLimitIsWaitedOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false, presubmit("unit", ""), presubmit("lint", ""))
	in := e.start(nil)
	reset := e.net.Now().Add(2 * time.Second)
	e.gh.SetRateLimitRemaining(0, reset)

	var ids []run.ID
	for p := 1; p <= 2; p++ {
		for _, job := range []string{"unit", "lint"} {
			r := e.create(job, p, sha(p))
			e.to(r.ID, run.Success, "", "")
			ids = append(ids, r.ID)
		}
	}
	e.waitFor("the reporter to wait for the reset", e.net.HasWaiters)
	if n := len(e.writes()); n != 0 {
		t.Fatalf("statuses written before the reset: got %d, want 0", n)
	}
	e.pump(e.net, time.Second)
	for _, id := range ids {
		e.waitReported(id, "success")
	}
	e.settle(in)

	for _, w := range e.writes() {
		if w.At.Before(reset) {
			t.Errorf("status %+v written at %v, before the reset at %v", w, w.At, reset)
		}
	}
	for p := 1; p <= 2; p++ {
		for _, c := range []string{"unit", "lint"} {
			if got := e.shows(sha(p), c).State; got != "success" {
				t.Errorf("%s on %s: got %q, want success", c, sha(p), got)
			}
		}
	}
	limited := 0
	for _, c := range e.gh.Calls() {
		if c.Status == http.StatusForbidden {
			limited++
		}
	}
	if limited == 0 {
		t.Error("the double answered no request 403: the rate limit was not exercised")
	}
	checkQuiet(t, e, in)
}

// TestTransientFailures checks that 5xx answers and secondary rate limits
// end in one accepted status, retried by the transport chain or, past its
// attempts, by the reporter's backoff.
func TestTransientFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		inject func(*githubtest.Server)
		// realCtrl: the reporter's own retries are needed, on the real
		// clock.
		realCtrl bool
		// quiet: nothing at warning level is expected.
		quiet     bool
		wantErrs  bool
		wantCalls func(calls []githubtest.Call) bool
	}{
		{name: "5xx retried by the transport", inject: func(s *githubtest.Server) { s.FailNext(2, http.StatusBadGateway) }},
		{name: "secondary rate limit waited out", quiet: true,
			inject: func(s *githubtest.Server) { s.SecondaryRateLimitNext(1, 3) }},
		{name: "5xx past the transport's attempts retried by the reporter", realCtrl: true, wantErrs: true,
			inject: func(s *githubtest.Server) { s.FailNext(6, http.StatusInternalServerError) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tt.realCtrl, presubmit("unit", ""))
			in := e.start(nil)
			e.pump(e.net, time.Second)
			tt.inject(e.gh)
			r := e.create("unit", 1, sha(1))
			e.to(r.ID, run.Success, "", "")
			e.waitReported(r.ID, "success")
			e.settle(in)

			ws := e.writes()
			if len(ws) == 0 || len(ws) > 2 || ws[len(ws)-1].State != "success" {
				t.Errorf("writes: got %+v, want at most pending then success", ws)
			}
			for i := 1; i < len(ws); i++ {
				if ws[i].State == ws[i-1].State {
					t.Errorf("redundant write of %s", ws[i].State)
				}
			}
			failed := 0
			for _, c := range e.gh.Calls() {
				if c.Status >= 400 {
					failed++
				}
			}
			if failed == 0 {
				t.Error("no call failed: the fault was not injected")
			}
			errs := in.tr.snapshot().errs
			if got := len(errs) > 0; got != tt.wantErrs {
				t.Errorf("reconcile errors: got %v, want errors: %v", errs, tt.wantErrs)
			}
			if recs := e.logs.atLeast(slog.LevelError); len(recs) > 0 {
				t.Errorf("errors logged: got %+v, want none", recs)
			}
			if tt.quiet {
				checkQuiet(t, e, in)
			}
		})
	}
}

// TestMissingRepositoryRetriedAtResync: a repository the forge answers
// 404 for (deleted, or not visible to lockstep's credentials) is not
// retried with backoff, only at the next resync.
func TestMissingRepositoryRetriedAtResync(t *testing.T) {
	t.Parallel()
	const gone = "acme/gone"
	e := newEnv(t, false)
	e.cfg.Store(&config.Config{BaseURL: testBase, Repos: map[string]*config.Repo{
		gone: {Presubmits: []config.Presubmit{presubmit("unit", "")}},
	}})
	in := e.start(nil)
	e.createRun(&run.Run{Spec: run.Spec{Job: "unit", Type: run.Presubmit, Context: "unit",
		Refs: run.Refs{Repo: gone, Pull: 1, HeadSHA: sha(1)}}})
	e.settle(in)
	posts := func() int { return e.gh.CallCount(http.MethodPost, "/repos/"+gone+"/statuses/") }
	if got := posts(); got != 1 {
		t.Errorf("status posts: got %d, want 1", got)
	}
	errs := in.tr.snapshot().errs
	if len(errs) != 1 || !controller.IsTerminal(errs[0]) || !errors.Is(errs[0], forge.ErrNotFound) {
		t.Errorf("reconcile errors: got %v, want one terminal not-found error", errs)
	}
	e.resync(in)
	if got := posts(); got != 2 {
		t.Errorf("status posts after a resync: got %d, want 2", got)
	}
}

// TestUnprocessableIsNotRetried: a commit that is gone after a
// force-push is answered 422; the report is logged once and not sent
// again (test-infra #21987).
func TestUnprocessableIsNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false, presubmit("unit", ""))
	// Only the base commit exists: the pull request's head was
	// force-pushed away.
	e.gh.SetCommits(testRepo, baseSHA)
	in := e.start(nil)
	r := e.create("unit", 1, sha(1))
	e.waitReported(r.ID, "pending")
	e.settle(in)
	e.resync(in)
	e.resync(in)

	const refused = "the forge refused the commit status; not retrying it"
	if got := e.postCount(); got != 1 {
		t.Errorf("status posts: got %d, want 1", got)
	}
	if got := len(e.logs.withMessage(refused)); got != 1 {
		t.Errorf("refusals logged: got %d, want 1", got)
	}
	if errs := in.tr.snapshot().errs; len(errs) > 0 {
		t.Errorf("reconcile errors: got %v, want none", errs)
	}
	if recs := e.logs.atLeast(slog.LevelError); len(recs) > 0 {
		t.Errorf("errors logged: got %+v, want none", recs)
	}

	// A later state of the run is a new report: it is tried once too.
	e.to(r.ID, run.Failure, "ScriptExited", "")
	e.waitReported(r.ID, "failure")
	e.settle(in)
	e.resync(in)
	if got := e.postCount(); got != 2 {
		t.Errorf("status posts after the run failed: got %d, want 2", got)
	}
	if got := len(e.logs.withMessage(refused)); got != 2 {
		t.Errorf("refusals logged after the run failed: got %d, want 2", got)
	}
}

// conflictStore makes the reporter's writes of Status.Reported meet
// conflicts: before each of the first n, it writes the run itself, so the
// store rejects the reporter's version.
type conflictStore struct {
	store.Runs
	t *testing.T
	n atomic.Int32
}

func (s *conflictStore) UpdateRunStatus(ctx context.Context, r *run.Run) (*run.Run, error) {
	if s.n.Add(-1) >= 0 {
		err := update(ctx, s.Runs, r.ID, func(cur *run.Run) {
			cur.Status.SetCondition(run.Condition{Type: "Poked", Status: true, Message: fmt.Sprint(s.n.Load())})
		})
		if err != nil {
			s.t.Errorf("concurrent write: %v", err)
		}
	}
	return s.Runs.UpdateRunStatus(ctx, r)
}

// TestReportedConflictsAreRetried checks that conflicts on the run while
// recording what was reported are re-read and retried, never surfacing
// as errors or as a second write to GitHub (gatekeeper #3624).
func TestReportedConflictsAreRetried(t *testing.T) {
	t.Parallel()
	t.Run("injected", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, false, presubmit("unit", ""))
		cs := &conflictStore{Runs: e.st, t: t}
		var conflicts atomic.Int32
		in := e.start(func(o *Options) {
			o.Store = cs
			o.OnConflict = func() { conflicts.Add(1) }
		})
		// More conflicts than one store.RetryOnConflict takes.
		cs.n.Store(7)
		r := e.create("unit", 1, sha(1))
		e.waitReported(r.ID, "pending")
		e.settle(in)
		if got := conflicts.Load(); got != 7 {
			t.Errorf("conflicts met: got %d, want 7", got)
		}
		if got := e.postCount(); got != 1 {
			t.Errorf("status posts: got %d, want 1", got)
		}
		cond, ok := e.get(r.ID).Status.Condition("Poked")
		if !ok || !cond.Status {
			t.Errorf("the concurrent writes were lost: condition %+v, %v", cond, ok)
		}
		checkQuiet(t, e, in)
	})
	t.Run("many concurrent writers", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, false, presubmit("unit", ""), presubmit("lint", ""))
		in := e.start(nil)
		var ids []run.ID
		for _, job := range []string{"unit", "lint"} {
			ids = append(ids, e.create(job, 1, sha(1)).ID)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		var writes atomic.Int64
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pace := time.NewTicker(5 * time.Millisecond)
				defer pace.Stop()
				for n := 0; ctx.Err() == nil; n++ {
					select {
					case <-ctx.Done():
						return
					case <-pace.C:
					}
					id := ids[n%len(ids)]
					cur, err := e.st.GetRun(ctx, id)
					if err != nil {
						return
					}
					cur.Status.SetCondition(run.Condition{Type: fmt.Sprintf("Writer%d", w), Status: true, Message: fmt.Sprint(n)})
					if _, err := e.st.UpdateRunStatus(ctx, cur); err == nil {
						writes.Add(1)
					}
				}
			}()
		}
		for _, id := range ids {
			e.to(id, run.Running, "", "")
		}
		for _, id := range ids {
			e.waitReported(id, "pending")
		}
		for _, id := range ids {
			e.to(id, run.Success, "", "")
		}
		for _, id := range ids {
			e.waitReported(id, "success")
		}
		cancel()
		wg.Wait()
		e.settle(in)
		if writes.Load() == 0 {
			t.Error("the concurrent writers wrote nothing")
		}
		if got := e.postCount(); got > 4 {
			t.Errorf("status posts: got %d, want at most 4 (pending and success of two runs)", got)
		}
		for _, c := range []string{"unit", "lint"} {
			if got := e.shows(sha(1), c).State; got != "success" {
				t.Errorf("%s: got %q, want success", c, got)
			}
		}
		checkQuiet(t, e, in)
	})
}

// TestRestartRepostsNothing: a new reporter on the same store writes
// nothing that the previous one showed, and only what changed while no
// reporter ran.
func TestRestartRepostsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false, presubmit("unit", ""), presubmit("lint", ""))
	first := e.start(nil)
	var ids []run.ID
	for p := 1; p <= 10; p++ {
		for _, job := range []string{"unit", "lint"} {
			ids = append(ids, e.create(job, p, sha(p)).ID)
		}
	}
	for i, id := range ids[1:] {
		state := run.Success
		if i%3 == 0 {
			state = run.Failure
		}
		e.to(id, state, "", "")
	}
	e.to(ids[0], run.Running, "", "")
	for _, id := range ids {
		r := e.get(id)
		want, _ := StatusFor(r, testBase)
		e.waitReported(id, want.State)
	}
	e.settle(first)
	first.stop()
	before := e.postCount()

	// Every key reconciled directly by a reporter that never ran.
	cold := New(Options{Store: e.st, Forge: e.gc, Config: e.cfg.Load, Logger: e.logger()})
	for _, id := range ids {
		k, _ := KeyOf(e.get(id))
		if _, err := cold.Reconcile(t.Context(), k); err != nil {
			t.Fatalf("reconcile %v: %v", k, err)
		}
	}
	if got := e.postCount(); got != before {
		t.Fatalf("status posts after reconciling every key again: got %d, want %d", got, before)
	}

	// The one unfinished run finishes while no reporter runs.
	e.to(ids[0], run.Success, "", "")
	second := e.start(nil)
	e.resync(second)
	ws := e.writes()
	if got := len(ws) - before; got != 1 {
		t.Fatalf("status posts after the restart: got %d, want 1", got)
	}
	if w := ws[len(ws)-1]; w.run() != ids[0] || w.State != "success" {
		t.Errorf("write after the restart: got %s for run %d, want success for run %d", w.State, w.run(), ids[0])
	}
	checkQuiet(t, e, second)
}

// TestRetireRemovedJobs: when jobs leave the configuration, their
// contexts on open pull requests' heads that hold the pull request back
// are set to success, once; other contexts and commits are left alone.
func TestRetireRemovedJobs(t *testing.T) {
	t.Parallel()
	all := []config.Presubmit{presubmit("unit", ""), presubmit("old", "ci/old"), presubmit("slow", ""), presubmit("fine", "")}
	e := newEnv(t, false, all...)
	open, closed := sha(1), sha(2)
	e.gh.AddPull(testRepo, githubtest.Pull{Number: 1, Author: "alice", HeadSHA: open, HeadRef: "topic", BaseRef: "main", BaseSHA: baseSHA})
	e.gh.AddPull(testRepo, githubtest.Pull{Number: 2, State: "closed", Author: "alice", HeadSHA: closed, HeadRef: "gone", BaseRef: "main", BaseSHA: baseSHA})
	in := e.start(nil)

	unit := e.create("unit", 1, open)
	old1 := e.create("old", 1, open)
	slow := e.create("slow", 1, open)
	fine := e.create("fine", 1, open)
	oldClosed := e.create("old", 2, closed)
	e.to(unit.ID, run.Failure, "", "")
	e.to(old1.ID, run.Failure, "", "")
	e.to(slow.ID, run.Running, "", "")
	e.to(fine.ID, run.Success, "", "")
	e.to(oldClosed.ID, run.Failure, "", "")
	for _, r := range []*run.Run{unit, old1, fine, oldClosed} {
		e.waitReported(r.ID, string(e.get(r.ID).Status.State))
	}
	// A re-run of old: the newest run of ci/old.
	old2 := e.create("old", 1, open)
	e.to(old2.ID, run.Failure, "", "")
	e.waitReported(old2.ID, "failure")
	e.waitReported(slow.ID, "pending")
	e.settle(in)
	before := len(e.writes())

	// old, slow and fine are removed.
	e.setConfig(all[0])
	e.resync(in)
	// slow finishes after its job was removed.
	e.to(slow.ID, run.Success, "", "")
	e.settle(in)
	e.resync(in)

	type w struct{ SHA, Context, State, Description string }
	var got []w
	for _, x := range e.writes()[before:] {
		got = append(got, w{x.SHA, x.Context, x.State, x.Description})
	}
	want := []w{
		{open, "ci/old", "success", "Job old no longer exists."},
		{open, "slow", "success", "Job slow no longer exists."},
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b w) bool { return a.Context < b.Context })); diff != "" {
		t.Errorf("writes after removing jobs (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		sha, context, state string
	}{{open, "unit", "failure"}, {open, "ci/old", "success"}, {open, "slow", "success"}, {open, "fine", "success"}, {closed, "ci/old", "failure"}} {
		if got := e.shows(c.sha, c.context).State; got != c.state {
			t.Errorf("%s on %s: got %q, want %s", c.context, c.sha[:7], got, c.state)
		}
	}
	for _, r := range []*run.Run{old1, old2, slow} {
		if got := e.reported(r.ID); got != Retired {
			t.Errorf("run %d of %s records %q, want %s", r.ID, r.Spec.Job, got, Retired)
		}
	}
	if got := e.gh.CallCount(http.MethodGet, "/repos/"+testRepo+"/commits/"); got != 2 {
		t.Errorf("status reads: got %d, want 2 (one per retired context)", got)
	}

	// old comes back: its newest run shows again.
	e.setConfig(all[0], all[1])
	e.resync(in)
	if got := e.shows(open, "ci/old"); got.State != "failure" || got.TargetURL != TargetURL(testBase, old2.ID) {
		t.Errorf("ci/old after the job came back: got %s %s, want failure %s", got.State, got.TargetURL, TargetURL(testBase, old2.ID))
	}
	checkQuiet(t, e, in)

	// old is removed again while lockstep is stopped: the first listing
	// of the next start retires it.
	in.stop()
	e.setConfig(all[0])
	next := e.start(nil)
	if got := e.shows(open, "ci/old"); got.State != "success" || got.Description != "Job old no longer exists." {
		t.Errorf("ci/old after a restart without the job: got %s %q, want success", got.State, got.Description)
	}
	checkQuiet(t, e, next)
}

// TestWhichRunsReport: optional jobs and postsubmits report; skip_report
// jobs, periodic runs and runs of repositories lockstep does not serve
// never do.
func TestWhichRunsReport(t *testing.T) {
	t.Parallel()
	optional := presubmit("optional", "")
	optional.Optional = true
	quiet := presubmit("quiet", "ci/quiet")
	quiet.SkipReport = true
	var build config.Postsubmit
	build.Name, build.Context = "build", "post/build"
	var silentPost config.Postsubmit
	silentPost.Name, silentPost.SkipReport = "silent-post", true
	e := newEnv(t, false)
	e.setRepo(&config.Repo{
		Presubmits:  []config.Presubmit{presubmit("unit", ""), optional, quiet},
		Postsubmits: []config.Postsubmit{build, silentPost},
	})
	in := e.start(nil)

	var ids []run.ID
	for _, job := range []string{"unit", "optional", "quiet"} {
		ids = append(ids, e.create(job, 1, sha(1)).ID)
	}
	for _, job := range []string{"build", "silent-post"} {
		ids = append(ids, e.createRun(&run.Run{Spec: run.Spec{Job: job, Type: run.Postsubmit,
			Refs: run.Refs{Repo: testRepo, BaseRef: "main", BaseSHA: baseSHA}}}).ID)
	}
	ids = append(ids, e.createRun(&run.Run{Spec: run.Spec{Job: "nightly", Type: run.Periodic,
		Refs: run.Refs{Repo: testRepo, BaseRef: "main", BaseSHA: baseSHA}}}).ID)
	ids = append(ids, e.createRun(&run.Run{Spec: run.Spec{Job: "unit", Type: run.Presubmit,
		Refs: run.Refs{Repo: "acme/other", Pull: 1, HeadSHA: sha(9)}}}).ID)
	for _, id := range ids {
		e.to(id, run.Failure, "", "")
	}
	e.waitReported(ids[0], "failure")
	e.waitReported(ids[1], "failure")
	e.waitReported(ids[3], "failure")
	e.settle(in)
	e.resync(in)

	got := map[string]string{}
	for _, w := range e.writes() {
		got[w.SHA[:7]+" "+w.Context] = w.State
	}
	want := map[string]string{
		sha(1)[:7] + " unit":        "failure",
		sha(1)[:7] + " optional":    "failure",
		baseSHA[:7] + " post/build": "failure",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("final writes by context (-want +got):\n%s", diff)
	}
	if got := e.gh.CallCount(http.MethodPost, "/repos/acme/other/"); got != 0 {
		t.Errorf("posts for a repository lockstep does not serve: got %d, want 0", got)
	}
	for _, id := range []run.ID{ids[2], ids[4], ids[5], ids[6]} {
		if got := e.reported(id); got != "" {
			t.Errorf("run %d records %q, want nothing", id, got)
		}
	}
	checkQuiet(t, e, in)
}
