package reporter

import (
	"fmt"
	"strings"

	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/forge/github"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// Retired is the value Status.Reported takes on a run whose context was
// retired: its job left the configuration, and the context was set to
// success with a description saying so (or already showed a state that
// needed no retiring).
const Retired = "retired"

// silent reports whether a run aborted, or asked to abort, for reason
// reports nothing: its SHA is no longer the head of its pull request, or
// the pull request was closed or turned into a draft.
func silent(reason string) bool {
	switch reason {
	case run.ReasonSuperseded, run.ReasonPullClosed, run.ReasonPullDraft:
		return true
	}
	return false
}

// StatusFor returns the commit status that should show for run r when r
// is the newest run of its context on its commit, or false when r
// reports nothing: it was superseded by a new head or its pull request
// was closed or made a draft (asked to abort for one of these reasons, or
// aborted for it), or it is in no known state.
//
// Pending, scheduled and running runs show pending; success and failure
// show as themselves; error shows error with its reason; any other abort
// (a timeout, a person) shows error too, because an aborted run gave no
// verdict on the change. The description says the state, and the reason
// and message where there is one, within the forge's 140 characters.
// TargetURL is baseURL/runs/ID, or empty when baseURL is.
func StatusFor(r *run.Run, baseURL string) (forge.Status, bool) {
	if reason, _, ok := r.AbortRequested(); ok && silent(reason) {
		return forge.Status{}, false
	}
	st := forge.Status{Context: r.Spec.StatusContext(), TargetURL: TargetURL(baseURL, r.ID)}
	var desc string
	switch r.Status.State {
	case run.Pending, run.Scheduled, run.Running:
		st.State, desc = forge.StatusPending, "Job triggered."
	case run.Success:
		st.State, desc = forge.StatusSuccess, "Job succeeded."
	case run.Failure:
		st.State, desc = forge.StatusFailure, describe("Job failed", "", r.Status.Message)
	case run.Error:
		st.State, desc = forge.StatusError, describe("Job errored", r.Status.Reason, r.Status.Message)
	case run.Aborted:
		if silent(r.Status.Reason) {
			return forge.Status{}, false
		}
		st.State, desc = forge.StatusError, describe("Job aborted", r.Status.Reason, r.Status.Message)
	default:
		return forge.Status{}, false
	}
	st.Description = github.Truncate(desc, github.MaxDescription)
	return st, true
}

// describe joins what happened, its reason and its message into one
// line: "Job errored (CloneFailed): git clone exited with status 128".
func describe(what, reason, message string) string {
	if reason != "" {
		what += " (" + reason + ")"
	}
	message = strings.Join(strings.Fields(message), " ")
	if message == "" {
		return what + "."
	}
	return what + ": " + message
}

// TargetURL returns the address of run id's page on lockstep at baseURL,
// or "" when baseURL is empty.
func TargetURL(baseURL string, id run.ID) string {
	baseURL = strings.TrimRight(baseURL, "/")
	if baseURL == "" {
		return ""
	}
	return fmt.Sprintf("%s/runs/%d", baseURL, id)
}

// retirable reports whether a context that shows state, for a job that no
// longer exists, must be retired: it would hold a pull request back.
func retirable(state string) bool {
	switch state {
	case forge.StatusPending, forge.StatusFailure, forge.StatusError:
		return true
	}
	return false
}
