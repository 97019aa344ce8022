package run

import (
	"fmt"
	"time"
)

// AutoKey is the trigger key shared by every automatic trigger of job on
// the head SHA of a pull request (opened, synchronize, /ok-to-test, the
// ok-to-test label, /test all, a resync): however many of them arrive, they
// create one run.
func AutoKey(repo string, pull int, sha, job string) string {
	return fmt.Sprintf("%s#%d@%s/%s/auto", repo, pull, sha, job)
}

// RequestKey is the trigger key of an explicit request for job on a pull
// request's head SHA: a /test or /retest comment (request is the comment
// id) or a forge re-run button (request is the delivery id). A redelivered
// request is still one run.
func RequestKey(repo string, pull int, sha, job, request string) string {
	return fmt.Sprintf("%s#%d@%s/%s/%s", repo, pull, sha, job, request)
}

// PostsubmitKey is the trigger key of job on a pushed commit.
func PostsubmitKey(repo, sha, job string) string {
	return fmt.Sprintf("%s@%s/%s", repo, sha, job)
}

// PeriodicKey is the trigger key of the periodic job of repo due at due.
func PeriodicKey(repo, job string, due time.Time) string {
	return fmt.Sprintf("%s/%s@%s", repo, job, due.UTC().Format(time.RFC3339))
}

// RerunKey is the trigger key of a re-run of run id, asked for by request
// (a UI request id).
func RerunKey(id ID, request string) string {
	return fmt.Sprintf("rerun/%d/%s", id, request)
}

// RunNowKey is the trigger key of a run of the periodic job of repo
// started at once by an administrator, asked for by request (a UI or API
// request id): retries of one request are one run.
func RunNowKey(repo, job, request string) string {
	return fmt.Sprintf("%s/%s/run-now/%s", repo, job, request)
}
