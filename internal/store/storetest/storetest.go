// Package storetest is the conformance suite of lockstep's stores. Every
// store implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store {
//			s := open(t) // a new, empty store, closed by t.Cleanup
//			return s
//		})
//	}
//
// The suite checks the semantics package store documents: idempotent
// creation on the trigger key, compare-and-swap on ResourceVersion, an
// immutable spec, the state machine of package run, stable keyset pages,
// and an ordered, resumable change feed.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Store is what the suite tests. It grows with package store: when the
// store keeps more than runs, so does this interface.
type Store interface {
	store.Runs
}

// Run runs the conformance suite against the stores newStore makes.
// newStore must return a new, empty store and close it with t.Cleanup. The
// subtests run in parallel, each with its own store, so newStore is called
// concurrently.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"CreateKeepsGivenState", testCreateKeepsGivenState},
		{"CreateInvalid", testCreateInvalid},
		{"CreateIdempotentConcurrent", testCreateIdempotentConcurrent},
		{"ResultsAreCopies", testResultsAreCopies},
		{"UpdateNotFound", testUpdateNotFound},
		{"UpdateStatusConcurrentCAS", testUpdateStatusConcurrentCAS},
		{"StaleVersion", testStaleVersion},
		{"UpdateRunSpecImmutable", testUpdateRunSpecImmutable},
		{"UpdateRunLabels", testUpdateRunLabels},
		{"UpdateStatusIgnoresSpec", testUpdateStatusIgnoresSpec},
		{"NoOpUpdateKeepsVersion", testNoOpUpdateKeepsVersion},
		{"Transitions", testTransitions},
		{"InvalidState", testInvalidState},
		{"ListFilters", testListFilters},
		{"ListPages", testListPages},
		{"ListPagesFiltered", testListPagesFiltered},
		{"ListPagesStable", testListPagesStable},
		{"ListLimits", testListLimits},
		{"ListBadContinue", testListBadContinue},
		{"WatchOrder", testWatchOrder},
		{"WatchResume", testWatchResume},
		{"WatchFromCurrent", testWatchFromCurrent},
		{"WatchCancel", testWatchCancel},
		{"WatchFnError", testWatchFnError},
		{"WatchConcurrentWriters", testWatchConcurrentWriters},
		{"WatchOrderManyWriters", testWatchOrderManyWriters},
		{"RevisionMonotonic", testRevisionMonotonic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// newRun returns a valid run to create, with trigger key key.
func newRun(key string) *run.Run {
	return &run.Run{
		Meta: run.Meta{Labels: map[string]string{"team": "infra"}},
		Spec: run.Spec{
			Job:  "unit",
			Type: run.Presubmit,
			Refs: run.Refs{
				Repo:     "acme/widgets",
				CloneURL: "https://github.com/acme/widgets.git",
				BaseRef:  "main",
				BaseSHA:  "b0b0b0",
				Pull:     7,
				HeadSHA:  "a1a1a1",
				HeadRef:  "feature",
				Author:   "octocat",
			},
			Cause:      run.CauseEvent,
			Script:     "make test",
			Env:        map[string]string{"GOFLAGS": "-mod=mod"},
			Timeout:    time.Hour,
			TriggerKey: key,
		},
	}
}

func mustCreate(t *testing.T, s Store, r *run.Run) *run.Run {
	t.Helper()
	got, err := s.CreateRun(t.Context(), r)
	if err != nil {
		t.Fatalf("CreateRun(%s): %v", r.Spec.TriggerKey, err)
	}
	return got
}

func mustGet(t *testing.T, s Store, id run.ID) *run.Run {
	t.Helper()
	got, err := s.GetRun(t.Context(), id)
	if err != nil {
		t.Fatalf("GetRun(%d): %v", id, err)
	}
	return got
}

func mustRevision(t *testing.T, s Store) int64 {
	t.Helper()
	rev, err := s.Revision(t.Context())
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	return rev
}

// setState moves r to state through UpdateRunStatus and returns the run
// as stored.
func setState(t *testing.T, s Store, r *run.Run, state run.State) *run.Run {
	t.Helper()
	next := *r
	next.Status.State = state
	got, err := s.UpdateRunStatus(t.Context(), &next)
	if err != nil {
		t.Fatalf("UpdateRunStatus(%d, %s -> %s): %v", r.ID, r.Status.State, state, err)
	}
	return got
}

// pathTo lists the states a new run goes through to reach a state.
func pathTo(state run.State) []run.State {
	switch state {
	case run.Scheduled:
		return []run.State{run.Scheduled}
	case run.Running:
		return []run.State{run.Scheduled, run.Running}
	case run.Success, run.Failure:
		return []run.State{run.Scheduled, run.Running, state}
	case run.Error, run.Aborted:
		return []run.State{state}
	}
	return nil
}

// moveTo moves r to state along pathTo(state).
func moveTo(t *testing.T, s Store, r *run.Run, state run.State) *run.Run {
	t.Helper()
	for _, st := range pathTo(state) {
		r = setState(t, s, r, st)
	}
	return r
}

func keys(runs []*run.Run) []string {
	out := make([]string, 0, len(runs))
	for _, r := range runs {
		out = append(out, r.Spec.TriggerKey)
	}
	return out
}

func testCreateAndGet(t *testing.T, s Store) {
	ctx := t.Context()
	before := mustRevision(t, s)
	in := newRun("create")
	got, err := s.CreateRun(ctx, in)
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	if got.ID <= 0 {
		t.Errorf("ID: got %d, want > 0", got.ID)
	}
	if got.ResourceVersion <= before {
		t.Errorf("ResourceVersion: got %d, want > %d (the revision before the create)", got.ResourceVersion, before)
	}
	if got.CreatedAt.IsZero() {
		t.Errorf("CreatedAt: got zero, want the creation time")
	}
	if got.Status.State != run.Pending {
		t.Errorf("Status.State: got %q, want %q", got.Status.State, run.Pending)
	}
	if diff := cmp.Diff(in.Spec, got.Spec); diff != "" {
		t.Errorf("Spec as created (-given +got):\n%s", diff)
	}
	if diff := cmp.Diff(in.Labels, got.Labels); diff != "" {
		t.Errorf("Labels as created (-given +got):\n%s", diff)
	}
	if diff := cmp.Diff(got, mustGet(t, s, got.ID)); diff != "" {
		t.Errorf("GetRun differs from CreateRun's result (-created +got):\n%s", diff)
	}

	second := mustCreate(t, s, newRun("create-2"))
	if second.ID <= got.ID {
		t.Errorf("second run ID: got %d, want > %d", second.ID, got.ID)
	}
	if second.ResourceVersion <= got.ResourceVersion {
		t.Errorf("second run ResourceVersion: got %d, want > %d", second.ResourceVersion, got.ResourceVersion)
	}

	if _, err := s.GetRun(ctx, second.ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRun(unknown): got %v, want %v", err, store.ErrNotFound)
	}
}

func testCreateKeepsGivenState(t *testing.T, s Store) {
	in := newRun("given-state")
	in.Status = run.Status{State: run.Error, Reason: "StaleBuild", Message: "the build is stale"}
	got := mustCreate(t, s, in)
	if diff := cmp.Diff(in.Status, got.Status); diff != "" {
		t.Errorf("Status as created (-given +got):\n%s", diff)
	}
}

func testCreateInvalid(t *testing.T, s Store) {
	tests := []struct {
		name   string
		change func(r *run.Run)
	}{
		{"no job", func(r *run.Run) { r.Spec.Job = "" }},
		{"no type", func(r *run.Run) { r.Spec.Type = "" }},
		{"unknown type", func(r *run.Run) { r.Spec.Type = "nightly" }},
		{"no trigger key", func(r *run.Run) { r.Spec.TriggerKey = "" }},
		{"unknown state", func(r *run.Run) { r.Status.State = "sleeping" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRun("invalid/" + tt.name)
			tt.change(r)
			got, err := s.CreateRun(t.Context(), r)
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("CreateRun: got %v, want %v", err, store.ErrInvalid)
			}
			if got != nil {
				t.Errorf("CreateRun returned run %d, want none", got.ID)
			}
		})
	}
	page, err := s.ListRuns(t.Context(), store.ListOptions{})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	if len(page.Runs) != 0 {
		t.Errorf("runs stored: got %v, want none", keys(page.Runs))
	}
}

func testCreateIdempotentConcurrent(t *testing.T, s Store) {
	const n = 64
	type result struct {
		r   *run.Run
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			r := newRun("same-key")
			r.Labels = map[string]string{"attempt": strconv.Itoa(i)}
			got, err := s.CreateRun(t.Context(), r)
			results[i] = result{got, err}
		})
	}
	close(start)
	wg.Wait()

	var created *run.Run
	for i, res := range results {
		if res.err == nil {
			if created != nil {
				t.Fatalf("attempts %d and another both created a run (%d and %d)", i, created.ID, res.r.ID)
			}
			created = res.r
		}
	}
	if created == nil {
		t.Fatalf("no attempt created the run; first error: %v", results[0].err)
	}
	for i, res := range results {
		if res.err == nil {
			continue
		}
		if !errors.Is(res.err, store.ErrAlreadyExists) {
			t.Errorf("attempt %d: got %v, want %v", i, res.err, store.ErrAlreadyExists)
			continue
		}
		if res.r == nil {
			t.Errorf("attempt %d: got no run with ErrAlreadyExists, want run %d", i, created.ID)
			continue
		}
		if diff := cmp.Diff(created, res.r); diff != "" {
			t.Errorf("attempt %d: existing run differs from the created one (-created +got):\n%s", i, diff)
		}
	}
	page, err := s.ListRuns(t.Context(), store.ListOptions{})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	if len(page.Runs) != 1 {
		t.Errorf("runs stored: got %d, want 1", len(page.Runs))
	}
}

func testResultsAreCopies(t *testing.T, s Store) {
	in := newRun("copies")
	created := mustCreate(t, s, in)
	in.Labels["team"] = "changed"
	in.Spec.Env["GOFLAGS"] = "changed"
	created.Labels["team"] = "changed too"
	created.Spec.Env["GOFLAGS"] = "changed too"

	got := mustGet(t, s, created.ID)
	if got.Labels["team"] != "infra" || got.Spec.Env["GOFLAGS"] != "-mod=mod" {
		t.Errorf("stored run shares maps with the caller: labels %v, env %v", got.Labels, got.Spec.Env)
	}
}

func testUpdateNotFound(t *testing.T, s Store) {
	r := mustCreate(t, s, newRun("exists"))
	missing := *r
	missing.ID = r.ID + 1000
	if _, err := s.UpdateRunStatus(t.Context(), &missing); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRunStatus(unknown): got %v, want %v", err, store.ErrNotFound)
	}
	if _, err := s.UpdateRun(t.Context(), &missing); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRun(unknown): got %v, want %v", err, store.ErrNotFound)
	}
}

func testUpdateStatusConcurrentCAS(t *testing.T, s Store) {
	const n = 64
	const maxAttempts = 10000
	r := mustCreate(t, s, newRun("counter"))
	r.Status.Message = "0"
	r = mustUpdateStatus(t, s, r)

	errs := make(chan error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			errs <- increment(t.Context(), s, r.ID, maxAttempts)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got := mustGet(t, s, r.ID)
	if got.Status.Message != strconv.Itoa(n) {
		t.Errorf("counter: got %s, want %d", got.Status.Message, n)
	}
}

// increment adds one to the counter in run id's status message, re-reading
// and retrying on conflicts.
func increment(ctx context.Context, s Store, id run.ID, maxAttempts int) error {
	for range maxAttempts {
		r, err := s.GetRun(ctx, id)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(r.Status.Message)
		if err != nil {
			return fmt.Errorf("counter %q: %w", r.Status.Message, err)
		}
		r.Status.Message = strconv.Itoa(n + 1)
		_, err = s.UpdateRunStatus(ctx, r)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("UpdateRunStatus: got %w, want nil or %w", err, store.ErrConflict)
		}
	}
	return fmt.Errorf("still conflicting after %d attempts", maxAttempts)
}

func mustUpdateStatus(t *testing.T, s Store, r *run.Run) *run.Run {
	t.Helper()
	got, err := s.UpdateRunStatus(t.Context(), r)
	if err != nil {
		t.Fatalf("UpdateRunStatus(%d): %v", r.ID, err)
	}
	return got
}

func mustUpdate(t *testing.T, s Store, r *run.Run) *run.Run {
	t.Helper()
	got, err := s.UpdateRun(t.Context(), r)
	if err != nil {
		t.Fatalf("UpdateRun(%d): %v", r.ID, err)
	}
	return got
}

func testStaleVersion(t *testing.T, s Store) {
	stale := mustCreate(t, s, newRun("stale"))
	cur := setState(t, s, stale, run.Scheduled)
	if cur.ResourceVersion <= stale.ResourceVersion {
		t.Fatalf("ResourceVersion after update: got %d, want > %d", cur.ResourceVersion, stale.ResourceVersion)
	}

	tests := []struct {
		name  string
		write func(r *run.Run) (*run.Run, error)
		edit  func(r *run.Run)
	}{
		{"UpdateRunStatus", func(r *run.Run) (*run.Run, error) { return s.UpdateRunStatus(t.Context(), r) }, func(r *run.Run) {
			r.Status.State = run.Aborted
			r.Status.Message = "stale write"
		}},
		{"UpdateRun", func(r *run.Run) (*run.Run, error) { return s.UpdateRun(t.Context(), r) }, func(r *run.Run) {
			r.Labels = map[string]string{"stale": "yes"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := *stale
			tt.edit(&w)
			if _, err := tt.write(&w); !errors.Is(err, store.ErrConflict) {
				t.Errorf("write with version %d (current %d): got %v, want %v", stale.ResourceVersion, cur.ResourceVersion, err, store.ErrConflict)
			}
			if diff := cmp.Diff(cur, mustGet(t, s, cur.ID)); diff != "" {
				t.Errorf("stale write changed the run (-before +after):\n%s", diff)
			}
		})
	}
}

func testUpdateRunSpecImmutable(t *testing.T, s Store) {
	cur := mustCreate(t, s, newRun("immutable"))
	tests := []struct {
		name   string
		change func(sp *run.Spec)
	}{
		{"job", func(sp *run.Spec) { sp.Job = "lint" }},
		{"head sha", func(sp *run.Spec) { sp.Refs.HeadSHA = "c2c2c2" }},
		{"script", func(sp *run.Spec) { sp.Script = "rm -rf /" }},
		{"env", func(sp *run.Spec) { sp.Env = map[string]string{"EXTRA": "1"} }},
		{"trigger key", func(sp *run.Spec) { sp.TriggerKey = "other" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := *cur
			w.Spec.Env = maps.Clone(cur.Spec.Env)
			tt.change(&w.Spec)
			w.Labels = map[string]string{"with": "spec change"}
			if _, err := s.UpdateRun(t.Context(), &w); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("UpdateRun with a changed %s: got %v, want %v", tt.name, err, store.ErrInvalid)
			}
			if diff := cmp.Diff(cur, mustGet(t, s, cur.ID)); diff != "" {
				t.Errorf("refused write changed the run (-before +after):\n%s", diff)
			}
		})
	}
}

func testUpdateRunLabels(t *testing.T, s Store) {
	cur := setState(t, s, mustCreate(t, s, newRun("labels")), run.Scheduled)

	w := *cur
	w.Labels = map[string]string{"team": "release", "tier": "1"}
	w.Status = run.Status{State: run.Success, Message: "ignored"}
	got := mustUpdate(t, s, &w)
	if diff := cmp.Diff(w.Labels, got.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if got.ResourceVersion <= cur.ResourceVersion {
		t.Errorf("ResourceVersion: got %d, want > %d", got.ResourceVersion, cur.ResourceVersion)
	}
	if diff := cmp.Diff(cur.Status, got.Status); diff != "" {
		t.Errorf("UpdateRun changed the status (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(got, mustGet(t, s, cur.ID)); diff != "" {
		t.Errorf("GetRun differs from UpdateRun's result (-updated +got):\n%s", diff)
	}

	w = *got
	w.Labels = nil
	got = mustUpdate(t, s, &w)
	if len(got.Labels) != 0 {
		t.Errorf("labels after removing all: got %v, want none", got.Labels)
	}
}

func testUpdateStatusIgnoresSpec(t *testing.T, s Store) {
	cur := mustCreate(t, s, newRun("ignores-spec"))
	w := *cur
	w.Spec.Job = "lint"
	w.Spec.Script = "rm -rf /"
	w.Labels = map[string]string{"ignored": "yes"}
	w.Status.State = run.Scheduled
	got := mustUpdateStatus(t, s, &w)
	if got.Status.State != run.Scheduled {
		t.Errorf("state: got %s, want %s", got.Status.State, run.Scheduled)
	}
	if diff := cmp.Diff(cur.Spec, got.Spec); diff != "" {
		t.Errorf("UpdateRunStatus changed the spec (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(cur.Labels, got.Labels); diff != "" {
		t.Errorf("UpdateRunStatus changed the labels (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(got, mustGet(t, s, cur.ID)); diff != "" {
		t.Errorf("GetRun differs from UpdateRunStatus's result (-updated +got):\n%s", diff)
	}
}

func testNoOpUpdateKeepsVersion(t *testing.T, s Store) {
	cur := setState(t, s, mustCreate(t, s, newRun("noop")), run.Scheduled)
	rev := mustRevision(t, s)

	got := mustUpdateStatus(t, s, cur)
	if diff := cmp.Diff(cur, got); diff != "" {
		t.Errorf("UpdateRunStatus with the stored status changed the run (-before +after):\n%s", diff)
	}
	got = mustUpdate(t, s, cur)
	if diff := cmp.Diff(cur, got); diff != "" {
		t.Errorf("UpdateRun with the stored labels changed the run (-before +after):\n%s", diff)
	}
	if after := mustRevision(t, s); after != rev {
		t.Errorf("Revision after no-op updates: got %d, want %d", after, rev)
	}
}

func testTransitions(t *testing.T, s Store) {
	for _, from := range run.States {
		for _, to := range run.States {
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				cur := moveTo(t, s, mustCreate(t, s, newRun(fmt.Sprintf("transition/%s/%s", from, to))), from)
				w := *cur
				w.Status.State = to
				w.Status.Message = "moved"
				got, err := s.UpdateRunStatus(t.Context(), &w)
				// A status may always change in place; a state only as
				// run.CanTransition allows.
				if from == to || run.CanTransition(from, to) {
					if err != nil {
						t.Fatalf("UpdateRunStatus: got %v, want nil", err)
					}
					if got.Status.State != to || got.Status.Message != "moved" {
						t.Errorf("status: got %s %q, want %s %q", got.Status.State, got.Status.Message, to, "moved")
					}
					return
				}
				if !errors.Is(err, store.ErrInvalid) {
					t.Errorf("UpdateRunStatus: got %v, want %v", err, store.ErrInvalid)
				}
				var te *run.TransitionError
				if !errors.As(err, &te) {
					t.Errorf("UpdateRunStatus: got %v, want a *run.TransitionError", err)
				} else if te.From != from || te.To != to {
					t.Errorf("TransitionError: got %s to %s, want %s to %s", te.From, te.To, from, to)
				}
				if diff := cmp.Diff(cur, mustGet(t, s, cur.ID)); diff != "" {
					t.Errorf("refused transition changed the run (-before +after):\n%s", diff)
				}
			})
		}
	}
}

func testInvalidState(t *testing.T, s Store) {
	cur := mustCreate(t, s, newRun("invalid-state"))
	for _, state := range []run.State{"", "sleeping"} {
		w := *cur
		w.Status.State = state
		if _, err := s.UpdateRunStatus(t.Context(), &w); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("UpdateRunStatus to %q: got %v, want %v", state, err, store.ErrInvalid)
		}
	}
	if diff := cmp.Diff(cur, mustGet(t, s, cur.ID)); diff != "" {
		t.Errorf("refused write changed the run (-before +after):\n%s", diff)
	}
}

func testListFilters(t *testing.T, s Store) {
	type fixture struct {
		key   string
		repo  string
		pull  int
		head  string
		base  string
		job   string
		typ   run.Type
		state run.State
	}
	// Created in this order, so listed in the reverse one.
	fixtures := []fixture{
		{"k1", "acme/widgets", 1, "h1", "b1", "unit", run.Presubmit, run.Pending},
		{"k2", "acme/widgets", 1, "h1", "b1", "lint", run.Presubmit, run.Running},
		{"k3", "acme/widgets", 2, "h2", "b1", "unit", run.Presubmit, run.Success},
		{"k4", "acme/widgets", 0, "", "b1", "unit", run.Postsubmit, run.Failure},
		{"k5", "acme/gadgets", 1, "h1", "b2", "unit", run.Presubmit, run.Pending},
		{"k6", "acme/gadgets", 0, "", "b2", "nightly", run.Periodic, run.Error},
	}
	for _, f := range fixtures {
		r := newRun(f.key)
		r.Spec.Refs = run.Refs{Repo: f.repo, Pull: f.pull, HeadSHA: f.head, BaseSHA: f.base, BaseRef: "main"}
		r.Spec.Job = f.job
		r.Spec.Type = f.typ
		moveTo(t, s, mustCreate(t, s, r), f.state)
	}

	tests := []struct {
		name string
		opts store.ListOptions
		want []string
	}{
		{"everything", store.ListOptions{}, []string{"k6", "k5", "k4", "k3", "k2", "k1"}},
		{"repo", store.ListOptions{Repo: "acme/widgets"}, []string{"k4", "k3", "k2", "k1"}},
		{"repo and pull", store.ListOptions{Repo: "acme/widgets", Pull: 1}, []string{"k2", "k1"}},
		{"pull of any repo", store.ListOptions{Pull: 1}, []string{"k5", "k2", "k1"}},
		{"head sha", store.ListOptions{SHA: "h1"}, []string{"k5", "k2", "k1"}},
		{"base sha of runs without head", store.ListOptions{SHA: "b1"}, []string{"k4"}},
		{"job", store.ListOptions{Job: "unit"}, []string{"k5", "k4", "k3", "k1"}},
		{"type postsubmit", store.ListOptions{Type: run.Postsubmit}, []string{"k4"}},
		{"type periodic", store.ListOptions{Type: run.Periodic}, []string{"k6"}},
		{"state", store.ListOptions{State: []run.State{run.Pending}}, []string{"k5", "k1"}},
		{"states", store.ListOptions{State: []run.State{run.Pending, run.Running}}, []string{"k5", "k2", "k1"}},
		{"terminal states", store.ListOptions{State: []run.State{run.Success, run.Failure, run.Error, run.Aborted}}, []string{"k6", "k4", "k3"}},
		{"repo, job and state", store.ListOptions{Repo: "acme/widgets", Job: "unit", State: []run.State{run.Pending}}, []string{"k1"}},
		{"repo, pull and sha", store.ListOptions{Repo: "acme/widgets", Pull: 2, SHA: "h2"}, []string{"k3"}},
		{"unknown repo", store.ListOptions{Repo: "acme/nothing"}, []string{}},
		{"no match", store.ListOptions{Job: "lint", State: []run.State{run.Pending}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := s.ListRuns(t.Context(), tt.opts)
			if err != nil {
				t.Fatalf("ListRuns(%+v): %v", tt.opts, err)
			}
			if diff := cmp.Diff(tt.want, keys(page.Runs)); diff != "" {
				t.Errorf("ListRuns(%+v) (-want +got):\n%s", tt.opts, diff)
			}
			if page.Continue != "" {
				t.Errorf("Continue: got %q, want empty on the only page", page.Continue)
			}
			for _, r := range page.Runs {
				if diff := cmp.Diff(mustGet(t, s, r.ID), r); diff != "" {
					t.Errorf("listed run %d differs from GetRun (-get +list):\n%s", r.ID, diff)
				}
			}
		})
	}
}

// listAll walks every page of opts and returns the runs and the size of
// each page.
func listAll(t *testing.T, s Store, opts store.ListOptions) ([]*run.Run, []int) {
	t.Helper()
	var all []*run.Run
	var sizes []int
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatalf("ListRuns(%+v): still paging after 10000 pages", opts)
		}
		p, err := s.ListRuns(t.Context(), opts)
		if err != nil {
			t.Fatalf("ListRuns(%+v): %v", opts, err)
		}
		all = append(all, p.Runs...)
		sizes = append(sizes, len(p.Runs))
		if p.Continue == "" {
			return all, sizes
		}
		opts.Continue = p.Continue
	}
}

// createN creates n runs with keys prefix/0 … prefix/n-1 and returns their
// keys newest first.
func createN(t *testing.T, s Store, prefix string, n int, edit func(i int, r *run.Run)) []string {
	t.Helper()
	out := make([]string, n)
	for i := range n {
		r := newRun(fmt.Sprintf("%s/%d", prefix, i))
		if edit != nil {
			edit(i, r)
		}
		mustCreate(t, s, r)
		out[n-1-i] = r.Spec.TriggerKey
	}
	return out
}

func testListPages(t *testing.T, s Store) {
	// The subtests share the store, so each lists its own job.
	tests := []struct {
		n, limit  int
		wantSizes []int
	}{
		{25, 7, []int{7, 7, 7, 4}},
		{21, 7, []int{7, 7, 7}},
		{5, 10, []int{5}},
		{1, 1, []int{1}},
		{0, 5, []int{0}},
	}
	for _, tt := range tests {
		job := fmt.Sprintf("job-%d-by-%d", tt.n, tt.limit)
		t.Run(job, func(t *testing.T) {
			want := createN(t, s, job, tt.n, func(_ int, r *run.Run) { r.Spec.Job = job })
			got, sizes := listAll(t, s, store.ListOptions{Job: job, Limit: tt.limit})
			if diff := cmp.Diff(want, keys(got)); diff != "" {
				t.Errorf("runs over all pages (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSizes, sizes); diff != "" {
				t.Errorf("page sizes (-want +got):\n%s", diff)
			}
		})
	}
}

func testListPagesFiltered(t *testing.T, s Store) {
	// Every third run is pending; the others run.
	var want []string
	for i := range 30 {
		r := mustCreate(t, s, newRun(fmt.Sprintf("filtered/%d", i)))
		if i%3 == 0 {
			want = append(want, r.Spec.TriggerKey)
			continue
		}
		setState(t, s, r, run.Scheduled)
	}
	slices.Reverse(want)
	got, sizes := listAll(t, s, store.ListOptions{State: []run.State{run.Pending}, Limit: 4})
	if diff := cmp.Diff(want, keys(got)); diff != "" {
		t.Errorf("pending runs over all pages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{4, 4, 2}, sizes); diff != "" {
		t.Errorf("page sizes (-want +got):\n%s", diff)
	}
}

func testListPagesStable(t *testing.T, s Store) {
	ctx := t.Context()
	want := createN(t, s, "old", 10, nil)
	var got []string
	opts := store.ListOptions{Limit: 4}
	for page := 0; ; page++ {
		p, err := s.ListRuns(ctx, opts)
		if err != nil {
			t.Fatalf("ListRuns page %d: %v", page, err)
		}
		got = append(got, keys(p.Runs)...)
		if p.Continue == "" {
			break
		}
		if page > 10 {
			t.Fatalf("still paging after %d pages", page)
		}
		// Runs created between pages are newer than every run listed:
		// they belong before the first page, not in the next one.
		createN(t, s, fmt.Sprintf("new-%d", page), 3, nil)
		opts.Continue = p.Continue
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs over all pages (-want +got):\n%s", diff)
	}

	p, err := s.ListRuns(ctx, store.ListOptions{Limit: 1})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	if got, want := keys(p.Runs), []string{"new-1/2"}; !slices.Equal(got, want) {
		t.Errorf("newest run: got %v, want %v", got, want)
	}
}

func testListLimits(t *testing.T, s Store) {
	ctx := t.Context()
	// Created by several goroutines, to be quick about it.
	const total, workers = store.MaxLimit + 1, 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < total; i += workers {
				if _, err := s.CreateRun(ctx, newRun(fmt.Sprintf("many/%d", i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("CreateRun: %v", err)
	}

	tests := []struct {
		name         string
		limit        int
		want         int
		wantContinue bool
	}{
		{"zero is the default", 0, store.DefaultLimit, true},
		{"given", 10, 10, true},
		{"above the maximum", store.MaxLimit * 5, store.MaxLimit, true},
		{"all but one", store.MaxLimit, store.MaxLimit, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.ListRuns(ctx, store.ListOptions{Limit: tt.limit})
			if err != nil {
				t.Fatalf("ListRuns: %v", err)
			}
			if len(p.Runs) != tt.want {
				t.Errorf("runs: got %d, want %d", len(p.Runs), tt.want)
			}
			if (p.Continue != "") != tt.wantContinue {
				t.Errorf("Continue: got %q, want a token: %v", p.Continue, tt.wantContinue)
			}
		})
	}
	all, sizes := listAll(t, s, store.ListOptions{Limit: store.MaxLimit * 2})
	if diff := cmp.Diff([]int{store.MaxLimit, 1}, sizes); diff != "" {
		t.Errorf("page sizes (-want +got):\n%s", diff)
	}
	seen := map[run.ID]bool{}
	for i, r := range all {
		if seen[r.ID] {
			t.Errorf("run %d listed twice", r.ID)
		}
		seen[r.ID] = true
		if i > 0 && r.ID >= all[i-1].ID {
			t.Errorf("run %d listed after run %d, want newest first", r.ID, all[i-1].ID)
		}
	}
}

func testListBadContinue(t *testing.T, s Store) {
	mustCreate(t, s, newRun("bad-continue"))
	for _, token := range []string{"not a token!", "%%%"} {
		if _, err := s.ListRuns(t.Context(), store.ListOptions{Continue: token}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListRuns(Continue: %q): got %v, want %v", token, err, store.ErrInvalid)
		}
	}
}
