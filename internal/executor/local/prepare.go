package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// workspace is the directory of one execution, WorkDir/<run id>-<random>:
//
//	src/           the clone; the job script's working directory
//	artifacts/     $ARTIFACTS
//	script.sh      the job's script
//	build-version  $LOCKSTEP_BUILD_FILE, written by the job if it wants
//
// It is removed when the execution ends.
type workspace string

func (w workspace) src() string       { return filepath.Join(string(w), "src") }
func (w workspace) artifacts() string { return filepath.Join(string(w), "artifacts") }
func (w workspace) script() string    { return filepath.Join(string(w), "script.sh") }
func (w workspace) buildFile() string { return filepath.Join(string(w), "build-version") }

// maxBuildOutput bounds how much of the build file lockstep keeps.
const maxBuildOutput = 64 << 10

// readBuild returns the trimmed content of the build file, and whether the
// job wrote one.
func (w workspace) readBuild() (string, bool) {
	f, err := os.Open(w.buildFile())
	if err != nil {
		return "", false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxBuildOutput))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// remove deletes the workspace. Jobs may leave directories without write
// permission (Go's module cache does), so a first failure is followed by
// making every directory writable and trying again.
func (w workspace) remove() error {
	if err := os.RemoveAll(string(w)); err == nil {
		return nil
	}
	_ = filepath.WalkDir(string(w), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(string(w)); err != nil {
		return fmt.Errorf("remove workspace %s: %w", w, err)
	}
	return nil
}

// The merge identity and date are fixed, as Prow's clonerefs fixes them, so
// that the same base and head always give the same merge commit.
const (
	mergeName = "lockstep"
	mergeMail = "lockstep@lockstep.invalid"
	mergeDate = "@1000000000 +0000"
)

// prepareScript is run by the process group's leader, `sh -c`, in the
// empty src directory. It clones and merges the refs, then becomes the job
// script with exec, so the leader's PID, and the handle made from it, stay
// the same from the first git command to the end of the job.
//
// It reports how the preparation went on file descriptor 3, a pipe read by
// lockstep: "exec" right before the job starts, or "<Reason> <message>"
// when it fails. Descriptor 3 is closed for git and before the job starts,
// so nothing the job does can write to it.
//
// Arguments: $1 sh, $2 git, $3 clone URL, $4 base ref, $5 base SHA,
// $6 pull number, $7 head SHA, $8 head ref, $9 job script file, $10 the
// repository's mirror in the git cache when lockstep has seeded the
// workspace's .git from it (gitCache.seed), or empty: the script then
// clones. Either way origin is the clone URL.
const prepareScript = `set -u
sh=$1 git=$2 url=$3 base_ref=$4 base_sha=$5 pull=$6 head_sha=$7 head_ref=$8 script=$9 cache=${10}
fail() {
	echo "lockstep: $2" >&2
	printf '%s %s\n' "$1" "$2" >&3
	exit 1
}
g() {
	GIT_TERMINAL_PROMPT=0 GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes}" \
		"$git" -c advice.detachedHead=false "$@" 3>&-
}
have() { g cat-file -e "$1^{commit}" 2>/dev/null; }
checkout() {
	if [ -n "$base_ref" ]; then
		g checkout --quiet -f -B "$base_ref" "$1"
	else
		g checkout --quiet -f --detach "$1"
	fi
}
if [ -n "$url" ]; then
	echo "lockstep: cloning $url"
	if [ -z "$base_sha" ] && [ -z "$base_ref" ]; then
		g clone --quiet --origin origin -- "$url" . || fail CloneFailed "cannot clone $url"
		base=HEAD
	else
		if [ -z "$cache" ]; then
			g clone --quiet --origin origin --no-checkout -- "$url" . || fail CloneFailed "cannot clone $url"
		fi
		if [ -n "$base_sha" ]; then
			base=$base_sha
			checkout "$base" 2>/dev/null ||
				{ g fetch --quiet origin "$base_sha" && checkout "$base"; } ||
				fail CloneFailed "cannot fetch base commit $base_sha"
		else
			base=refs/remotes/origin/$base_ref
			checkout "$base" 2>/dev/null ||
				{ g fetch --quiet origin "$base_ref" && base=$(g rev-parse FETCH_HEAD) && checkout "$base"; } ||
				fail CloneFailed "cannot fetch base ref $base_ref"
		fi
	fi
	if [ "$pull" != 0 ] && [ -n "$head_sha" ]; then
		if ! have "$head_sha"; then
			for from in "pull/$pull/head" "$head_sha" ${head_ref:+"$head_ref"}; do
				if g fetch --quiet origin "$from" 2>/dev/null && have "$head_sha"; then
					echo "lockstep: fetched $head_sha from $from"
					break
				fi
			done
			have "$head_sha" || fail CloneFailed "cannot fetch head commit $head_sha of pull request $pull"
		fi
		echo "lockstep: merging $head_sha"
		GIT_AUTHOR_NAME=` + mergeName + ` GIT_AUTHOR_EMAIL=` + mergeMail + ` GIT_AUTHOR_DATE='` + mergeDate + `' \
			GIT_COMMITTER_NAME=` + mergeName + ` GIT_COMMITTER_EMAIL=` + mergeMail + ` GIT_COMMITTER_DATE='` + mergeDate + `' \
			GIT_TERMINAL_PROMPT=0 "$git" -c commit.gpgSign=false merge --quiet --no-ff --no-edit "$head_sha" 3>&- ||
			fail MergeConflict "cannot merge $head_sha onto $base"
	fi
fi
printf 'exec\n' >&3 || exit 1
exec 3>&-
exec "$sh" -e "$script"
`

// prepareArgs returns the arguments of the leader's command line.
func prepareArgs(sh, git string, refs run.Refs, ws workspace, cache string) []string {
	return []string{
		sh, "-c", prepareScript, "lockstep-prepare",
		sh, git, refs.CloneURL, refs.BaseRef, refs.BaseSHA,
		strconv.Itoa(refs.Pull), refs.HeadSHA, refs.HeadRef, ws.script(), cache,
	}
}

// preparation is what the leader reported on descriptor 3.
type preparation struct {
	// execed is true when the job script was started.
	execed bool
	// infra is set when the preparation failed.
	infra *executor.InfraError
}

// parsePreparation parses the leader's report. An empty report means the
// leader ended before it got to the end of the preparation.
func parsePreparation(report string) preparation {
	line, _, _ := strings.Cut(report, "\n")
	if line == "exec" {
		return preparation{execed: true}
	}
	reason, msg, _ := strings.Cut(line, " ")
	switch reason {
	case executor.ReasonClone, executor.ReasonMergeConflict:
		return preparation{infra: &executor.InfraError{Reason: reason, Err: errors.New(msg)}}
	case "":
		return preparation{}
	}
	return preparation{infra: &executor.InfraError{
		Reason: executor.ReasonStart,
		Err:    fmt.Errorf("workspace preparation reported %q", line),
	}}
}
