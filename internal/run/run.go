// Package run defines the Run, lockstep's record of one execution of one job,
// its states, conditions and trigger keys, and the transitions allowed
// between states. It is pure: no I/O, no clocks.
package run

import (
	"encoding/json"
	"fmt"
	"time"
)

// ID identifies a run. IDs are assigned by the store, are positive, and grow
// with creation order.
type ID int64

// String returns the decimal form of id, which is also the run's BUILD_ID.
func (id ID) String() string { return fmt.Sprintf("%d", int64(id)) }

// Type says what kind of job a run executes.
type Type string

// The job types. They match Prow's JOB_TYPE values where Prow has one.
const (
	Presubmit  Type = "presubmit"
	Postsubmit Type = "postsubmit"
	Periodic   Type = "periodic"
	Manual     Type = "manual"
)

// Valid reports whether t is one of the known types.
func (t Type) Valid() bool {
	switch t {
	case Presubmit, Postsubmit, Periodic, Manual:
		return true
	}
	return false
}

// Meta is what the store maintains for every object: identity, version and
// creation time. Callers never set it, except ResourceVersion, which they
// pass back unchanged to prove which version their write is based on.
type Meta struct {
	ID ID `json:"id"`
	// ResourceVersion is the store revision of the object's last write.
	// A write carrying an older one fails with store.ErrConflict.
	ResourceVersion int64     `json:"resource_version"`
	CreatedAt       time.Time `json:"created_at"`
	// Labels are free-form metadata that can change after creation
	// (store.Runs.UpdateRun), unlike the spec.
	Labels map[string]string `json:"labels,omitempty"`
}

// Run is one execution of one job. Its Spec is written once, at creation;
// its Status is written by the controller that owns it (the runner), with
// compare-and-swap on Meta.ResourceVersion.
type Run struct {
	Meta   `json:"meta"`
	Spec   Spec   `json:"spec"`
	Status Status `json:"status"`
}

// Refs says which code a run tests.
type Refs struct {
	// Repo is "owner/name".
	Repo string `json:"repo"`
	// CloneURL is where the executor fetches Repo from.
	CloneURL string `json:"clone_url,omitempty"`
	BaseRef  string `json:"base_ref,omitempty"`
	BaseSHA  string `json:"base_sha,omitempty"`
	// Pull is the pull request number; zero for runs that test no pull
	// request.
	Pull    int    `json:"pull,omitempty"`
	HeadSHA string `json:"head_sha,omitempty"`
	HeadRef string `json:"head_ref,omitempty"`
	Author  string `json:"author,omitempty"`
	// Title is the pull request's title when the run was created.
	Title string `json:"title,omitempty"`
}

// Owner returns the owner part of Repo.
func (r Refs) Owner() string {
	owner, _ := splitRepo(r.Repo)
	return owner
}

// Name returns the name part of Repo.
func (r Refs) Name() string {
	_, name := splitRepo(r.Repo)
	return name
}

// SHA returns the commit that identifies what the run tests: the head SHA
// of a pull request, otherwise the base SHA.
func (r Refs) SHA() string {
	if r.HeadSHA != "" {
		return r.HeadSHA
	}
	return r.BaseSHA
}

func splitRepo(repo string) (owner, name string) {
	for i := 0; i < len(repo); i++ {
		if repo[i] == '/' {
			return repo[:i], repo[i+1:]
		}
	}
	return "", repo
}

// Cause says why a run exists.
type Cause string

// The causes of runs.
const (
	CauseEvent    Cause = "event"    // a forge event (opened, synchronize, push…)
	CauseCommand  Cause = "command"  // a /test, /retest or /ok-to-test comment
	CauseCron     Cause = "cron"     // a periodic's cron schedule
	CauseInterval Cause = "interval" // a periodic's interval schedule
	CauseRunNow   Cause = "run-now"  // a periodic started at once by an administrator
	CauseRerun    Cause = "rerun"    // a re-run asked for in the UI or the forge
	CauseResync   Cause = "resync"   // found missing by the periodic resync
	CauseCLI      Cause = "cli"      // lockstep run
)

// Spec is what a run is asked to do. The store refuses to change it after
// creation.
type Spec struct {
	Job  string `json:"job"`
	Type Type   `json:"type"`
	Refs Refs   `json:"refs"`
	// Cause and Requester say why the run exists and who asked for it.
	Cause     Cause  `json:"cause"`
	Requester string `json:"requester,omitempty"`
	// Context is the status context the run reports under; empty means the
	// job name.
	Context string `json:"context,omitempty"`
	// Script, Env and Timeout are copied from the job's configuration when
	// the run is created, so a later configuration change does not alter a
	// run that already exists.
	Script  string            `json:"script"`
	Env     map[string]string `json:"env,omitempty"`
	Timeout time.Duration     `json:"timeout"`
	// Executor names the executor that runs the run ("local" when
	// empty); ExecutorConfig is that executor's part of the job's
	// configuration, copied at creation like Script, in a form only that
	// executor reads.
	Executor       string          `json:"executor,omitempty"`
	ExecutorConfig json.RawMessage `json:"executor_config,omitempty"`
	// Secrets names the secrets the executor adds to the run's
	// environment. The trigger leaves it empty for a pull request whose
	// author is not trusted: such code never sees a secret.
	Secrets []string `json:"secrets,omitempty"`
	// NoNetwork runs the job without network but loopback, where the
	// executor sandboxes it.
	NoNetwork bool `json:"no_network,omitempty"`
	// Build names the build a periodic run tests, if any.
	Build *BuildUnderTest `json:"build,omitempty"`
	// TriggerKey is unique in the store: two attempts to create a run with
	// one key yield one run. See the Key functions.
	TriggerKey string `json:"trigger_key"`
}

// StatusContext returns the context the run reports under.
func (s Spec) StatusContext() string {
	if s.Context != "" {
		return s.Context
	}
	return s.Job
}

// BuildUnderTest records which build a run tested and how far that build
// lagged behind the newest one when the run was created.
type BuildUnderTest struct {
	Marker  string `json:"marker,omitempty"`
	BuildID int64  `json:"build_id"`
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	// MarkerAge is how long the marker had pointed at the build.
	MarkerAge time.Duration `json:"marker_age"`
	// NewerBuilds is how many builds newer than this one existed;
	// NewestAge is how long ago the newest of them was made.
	NewerBuilds int           `json:"newer_builds"`
	NewestAge   time.Duration `json:"newest_age"`
	Stale       bool          `json:"stale"`
	// Decision is what the job's on_stale policy decided ("run", "skip",
	// "fail"), empty when the marker was fresh.
	Decision string `json:"decision,omitempty"`
}

// Status is what has happened to a run so far.
type Status struct {
	State State `json:"state"`
	// Reason is a CamelCase word explaining the state (Interrupted,
	// CloneFailed, Timeout…); Message is the human sentence.
	Reason     string      `json:"reason,omitempty"`
	Message    string      `json:"message,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
	StartedAt  *time.Time  `json:"started_at,omitempty"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
	// Handle is the executor's name for the run's execution (for the local
	// executor, its process group), kept so that it can be found again after
	// a restart.
	Handle string `json:"handle,omitempty"`
	// Replica names the lockstep replica whose executor started the run:
	// a local execution lives and dies with it.
	Replica string `json:"replica,omitempty"`
	// BuildOutput is what the job wrote to $LOCKSTEP_BUILD_FILE: the
	// version of the build it produced, optionally followed by artifact
	// locations, one per line.
	BuildOutput string `json:"build_output,omitempty"`
	// LogPath is where the run's combined output is.
	LogPath string `json:"log_path,omitempty"`
	// ExternalURL is where the execution can be seen outside lockstep
	// (a GitLab pipeline's page), if anywhere.
	ExternalURL string `json:"external_url,omitempty"`
	// Reported holds, per reporter, the last state that reporter showed on
	// the forge, so a restart does not report everything again.
	Reported map[string]string `json:"reported,omitempty"`
}

// Condition is one observation about a run, in the shape Kubernetes uses.
type Condition struct {
	Type    string    `json:"type"`
	Status  bool      `json:"status"`
	Reason  string    `json:"reason,omitempty"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// SetCondition adds c to s, replacing an existing condition of the same
// type. It returns false and changes nothing when that condition already
// has the same status, reason and message.
func (s *Status) SetCondition(c Condition) bool {
	for i, old := range s.Conditions {
		if old.Type == c.Type {
			if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
				return false
			}
			s.Conditions[i] = c
			return true
		}
	}
	s.Conditions = append(s.Conditions, c)
	return true
}

// Condition returns the condition of type t, if s has one.
func (s Status) Condition(t string) (Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// Labels with a meaning to lockstep.
const (
	// LabelAbort asks the runner to abort the run; its value is the reason
	// (Superseded, PullClosed, Replaced, ByUser…). Whoever wants a run
	// stopped sets this label; only the runner changes the run's state, so
	// writers never fight over the status.
	LabelAbort = "lockstep.dev/abort"
	// LabelAbortMessage optionally explains LabelAbort to a person.
	LabelAbortMessage = "lockstep.dev/abort-message"
)

// Abort reasons given when what a run tests is no longer under review:
// the reporter shows nothing for such runs.
const (
	ReasonSuperseded = "Superseded"           // a newer head SHA or base replaced the run's
	ReasonPullClosed = "PullClosed"           // the pull request was closed
	ReasonPullDraft  = "PullConvertedToDraft" // the pull request became a draft
)

// AbortRequested returns the reason and message of an abort request on r,
// if there is one.
func (r *Run) AbortRequested() (reason, message string, ok bool) {
	reason, ok = r.Labels[LabelAbort]
	return reason, r.Labels[LabelAbortMessage], ok
}

// RequestAbort sets the abort labels on r (a copy to be written with
// store.Runs.UpdateRun). It reports false, changing nothing, when r is
// already finished or already asked to abort.
func (r *Run) RequestAbort(reason, message string) bool {
	if r.Status.State.Terminal() {
		return false
	}
	if _, _, ok := r.AbortRequested(); ok {
		return false
	}
	labels := make(map[string]string, len(r.Labels)+2)
	for k, v := range r.Labels {
		labels[k] = v
	}
	labels[LabelAbort] = reason
	if message != "" {
		labels[LabelAbortMessage] = message
	}
	r.Labels = labels
	return true
}
