package local

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// The variables lockstep sets for every job, beside Prow's.
const (
	envRunID     = "LOCKSTEP_RUN_ID"
	envBuildFile = "LOCKSTEP_BUILD_FILE"
)

// defaultPath is the job's PATH when lockstep has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// baseEnv returns the part of lockstep's environment that jobs inherit:
// PATH, HOME, USER, LANG, LC_ALL, TZ and TMPDIR. Nothing else of it
// reaches a job.
func baseEnv() map[string]string {
	env := make(map[string]string)
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	if env["PATH"] == "" {
		env["PATH"] = defaultPath
	}
	return env
}

// jobEnv returns the environment of r's execution, sorted by name. From
// lowest to highest precedence it holds: base (lockstep's PATH, HOME…),
// the job's configured r.Spec.Env, then the variables lockstep and Prow
// define (CI, JOB_NAME, BUILD_ID, PULL_*…), so a job's configuration can
// change PATH but cannot make lockstep lose track of the run.
func jobEnv(base map[string]string, r *run.Run, ws workspace) []string {
	env := maps.Clone(base)
	maps.Copy(env, r.Spec.Env)
	maps.Copy(env, prowEnv(r))
	env["GIT_TERMINAL_PROMPT"] = "0"
	env["ARTIFACTS"] = ws.artifacts()
	env[envBuildFile] = ws.buildFile()
	env[envRunID] = r.ID.String()

	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// prowEnv returns the variables Prow's pod utilities give a job, for r.
// Variables whose value would be empty are left out, as Prow does.
func prowEnv(r *run.Run) map[string]string {
	refs := r.Spec.Refs
	id := r.ID.String()
	env := map[string]string{
		"CI":           "true",
		"JOB_NAME":     r.Spec.Job,
		"JOB_TYPE":     string(r.Spec.Type),
		"BUILD_ID":     id,
		"BUILD_NUMBER": id,
		"JOB_SPEC":     jobSpec(r),
	}
	set := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	set("REPO_OWNER", refs.Owner())
	set("REPO_NAME", refs.Name())
	set("PULL_BASE_REF", refs.BaseRef)
	set("PULL_BASE_SHA", refs.BaseSHA)
	set("PULL_REFS", pullRefs(refs))
	if refs.Pull != 0 {
		env["PULL_NUMBER"] = strconv.Itoa(refs.Pull)
		set("PULL_PULL_SHA", refs.HeadSHA)
		set("PULL_HEAD_REF", refs.HeadRef)
	}
	return env
}

// pullRefs returns Prow's PULL_REFS for refs: "base_ref:base_sha", then
// ",number:head_sha" for a pull request.
func pullRefs(refs run.Refs) string {
	if refs.BaseRef == "" && refs.BaseSHA == "" {
		return ""
	}
	s := refs.BaseRef + ":" + refs.BaseSHA
	if refs.Pull != 0 {
		s += fmt.Sprintf(",%d:%s", refs.Pull, refs.HeadSHA)
	}
	return s
}

// prowSpec is the subset of Prow's JobSpec (JOB_SPEC) that lockstep fills.
type prowSpec struct {
	Type    string    `json:"type,omitempty"`
	Job     string    `json:"job"`
	BuildID string    `json:"buildid"`
	Refs    *prowRefs `json:"refs,omitempty"`
}

type prowRefs struct {
	Org      string     `json:"org"`
	Repo     string     `json:"repo"`
	BaseRef  string     `json:"base_ref,omitempty"`
	BaseSHA  string     `json:"base_sha,omitempty"`
	Pulls    []prowPull `json:"pulls,omitempty"`
	CloneURI string     `json:"clone_uri,omitempty"`
}

type prowPull struct {
	Number  int    `json:"number"`
	Author  string `json:"author"`
	SHA     string `json:"sha"`
	HeadRef string `json:"head_ref,omitempty"`
}

// jobSpec returns Prow's JOB_SPEC for r.
func jobSpec(r *run.Run) string {
	spec := prowSpec{Type: string(r.Spec.Type), Job: r.Spec.Job, BuildID: r.ID.String()}
	if refs := r.Spec.Refs; refs.Repo != "" {
		spec.Refs = &prowRefs{
			Org:      refs.Owner(),
			Repo:     refs.Name(),
			BaseRef:  refs.BaseRef,
			BaseSHA:  refs.BaseSHA,
			CloneURI: refs.CloneURL,
		}
		if refs.Pull != 0 {
			spec.Refs.Pulls = []prowPull{{Number: refs.Pull, Author: refs.Author, SHA: refs.HeadSHA, HeadRef: refs.HeadRef}}
		}
	}
	b, _ := json.Marshal(spec) // strings and ints only: it cannot fail
	return string(b)
}
