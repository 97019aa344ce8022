package reporter

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/run"
)

func TestStatusFor(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("clone failed again ", 20)
	tests := []struct {
		name    string
		state   run.State
		reason  string
		message string
		abort   string // abort label reason
		base    string
		want    forge.Status
		wantOK  bool
	}{
		{name: "pending", state: run.Pending, base: testBase,
			want: forge.Status{State: "pending", Description: "Job triggered.", TargetURL: testBase + "/runs/7"}, wantOK: true},
		{name: "scheduled shows pending", state: run.Scheduled, base: testBase,
			want: forge.Status{State: "pending", Description: "Job triggered.", TargetURL: testBase + "/runs/7"}, wantOK: true},
		{name: "running shows pending", state: run.Running, base: testBase + "/",
			want: forge.Status{State: "pending", Description: "Job triggered.", TargetURL: testBase + "/runs/7"}, wantOK: true},
		{name: "success", state: run.Success, base: testBase,
			want: forge.Status{State: "success", Description: "Job succeeded.", TargetURL: testBase + "/runs/7"}, wantOK: true},
		{name: "failure with message", state: run.Failure, reason: "ScriptExited", message: "the job's script exited with status 1", base: testBase,
			want: forge.Status{State: "failure", Description: "Job failed: the job's script exited with status 1", TargetURL: testBase + "/runs/7"}, wantOK: true},
		{name: "error names its reason", state: run.Error, reason: "CloneFailed", message: "git clone:\n  exit status 128", base: testBase,
			want: forge.Status{State: "error", Description: "Job errored (CloneFailed): git clone: exit status 128", TargetURL: testBase + "/runs/7"}, wantOK: true},
		{name: "error without message", state: run.Error, reason: "Interrupted",
			want: forge.Status{State: "error", Description: "Job errored (Interrupted)."}, wantOK: true},
		{name: "timeout is an error", state: run.Aborted, reason: "Timeout", message: "the run exceeded its timeout of 1h0m0s and was stopped",
			want: forge.Status{State: "error", Description: "Job aborted (Timeout): the run exceeded its timeout of 1h0m0s and was stopped"}, wantOK: true},
		{name: "aborted by a person is an error", state: run.Aborted, reason: "ByUser", abort: "ByUser",
			want: forge.Status{State: "error", Description: "Job aborted (ByUser)."}, wantOK: true},
		{name: "long description is shortened", state: run.Error, reason: "CloneFailed", message: long,
			want: forge.Status{State: "error", Description: cut("Job errored (CloneFailed): "+strings.TrimSpace(long), 140)}, wantOK: true},
		{name: "superseded run reports nothing", state: run.Aborted, reason: run.ReasonSuperseded},
		{name: "closed pull request reports nothing", state: run.Aborted, reason: run.ReasonPullClosed},
		{name: "draft reports nothing", state: run.Aborted, reason: run.ReasonPullDraft},
		{name: "running but asked to abort as superseded", state: run.Running, abort: run.ReasonSuperseded},
		{name: "finished but labelled superseded", state: run.Failure, abort: run.ReasonSuperseded},
		{name: "running, asked to abort by a person", state: run.Running, abort: "ByUser",
			want: forge.Status{State: "pending", Description: "Job triggered."}, wantOK: true},
		{name: "unknown state", state: run.State("paused")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &run.Run{Meta: run.Meta{ID: 7}, Spec: run.Spec{Job: "unit", Type: run.Presubmit, Context: "ci/unit"},
				Status: run.Status{State: tt.state, Reason: tt.reason, Message: tt.message}}
			if tt.abort != "" {
				r.Labels = map[string]string{run.LabelAbort: tt.abort}
			}
			got, ok := StatusFor(r, tt.base)
			if ok != tt.wantOK {
				t.Fatalf("ok: got %v, want %v", ok, tt.wantOK)
			}
			if tt.wantOK {
				tt.want.Context = "ci/unit"
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if n := utf8.RuneCountInString(got.Description); n > 140 {
				t.Errorf("description has %d characters, want at most 140", n)
			}
		})
	}
}

// cut keeps the first n-1 characters of s and adds "…".
func cut(s string, n int) string { return string([]rune(s)[:n-1]) + "…" }

func TestKeyOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		spec   run.Spec
		want   Key
		wantOK bool
	}{
		{name: "presubmit reports on its head", spec: run.Spec{Job: "unit", Type: run.Presubmit, Context: "ci/unit",
			Refs: run.Refs{Repo: testRepo, BaseSHA: baseSHA, Pull: 1, HeadSHA: sha(1)}},
			want: Key{testRepo, sha(1), "ci/unit"}, wantOK: true},
		{name: "context defaults to the job", spec: run.Spec{Job: "unit", Type: run.Presubmit,
			Refs: run.Refs{Repo: testRepo, Pull: 1, HeadSHA: sha(1)}},
			want: Key{testRepo, sha(1), "unit"}, wantOK: true},
		{name: "postsubmit reports on its base", spec: run.Spec{Job: "build", Type: run.Postsubmit,
			Refs: run.Refs{Repo: testRepo, BaseSHA: baseSHA}},
			want: Key{testRepo, baseSHA, "build"}, wantOK: true},
		{name: "periodic never reports", spec: run.Spec{Job: "nightly", Type: run.Periodic, Refs: run.Refs{Repo: testRepo, BaseSHA: baseSHA}}},
		{name: "manual never reports", spec: run.Spec{Job: "unit", Type: run.Manual, Refs: run.Refs{Repo: testRepo, BaseSHA: baseSHA}}},
		{name: "no commit", spec: run.Spec{Job: "unit", Type: run.Presubmit, Refs: run.Refs{Repo: testRepo}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := KeyOf(&run.Run{Spec: tt.spec})
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("got %v %v, want %v %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestSilentReasons checks which abort reasons keep a run quiet: those
// for a commit or pull request no longer under review, and no others.
func TestSilentReasons(t *testing.T) {
	t.Parallel()
	for _, reason := range []string{run.ReasonSuperseded, run.ReasonPullClosed, run.ReasonPullDraft} {
		if !silent(reason) {
			t.Errorf("silent(%q): got false, want true", reason)
		}
	}
	for _, reason := range []string{"Timeout", "ByUser", "Replaced", ""} {
		if silent(reason) {
			t.Errorf("silent(%q): got true, want false", reason)
		}
	}
}
