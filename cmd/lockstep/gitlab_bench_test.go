package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor/gitlab/gitlabtest"
	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
)

// BenchmarkGitLabWebhookToStatus measures, through lockstep serve with
// the GitHub and GitLab doubles, the time from the GitLab double sending
// the webhook that says a pipeline succeeded to the GitHub double
// receiving the success status, over one pull request per iteration, and
// the GitLab API calls per run. Run it with
//
//	go test -run '^$' -bench GitLabWebhookToStatus -benchtime 50x ./cmd/lockstep/
func BenchmarkGitLabWebhookToStatus(b *testing.B) {
	k := newKubespray(b, `      - name: pull-kubespray-e2e
        always_run: true
        executor: gitlab
        gitlab: {project: `+ksProject+`}
`, true, gitlabtest.JobSpec{Name: "unit-tests", Stage: "unit-tests", Trace: "ok\n"},
		gitlabtest.JobSpec{Name: "packet_ubuntu24-calico", Stage: "deploy-part1", Trace: "cluster up\n"})
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = k.src
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		n := 100 + i
		b.StopTimer()
		git("checkout", "-q", "-B", "pr-"+strconv.Itoa(n), "main")
		writeFile(b, filepath.Join(k.src, fmt.Sprintf("f%d.txt", n)), "x\n")
		git("add", ".")
		git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "change")
		head := git("rev-parse", "HEAD")
		git("checkout", "-q", "main")
		k.gh.AddPull(ksRepo, githubtest.Pull{Number: n, Author: "maintainer", HeadSHA: head, HeadRef: "pr-" + strconv.Itoa(n), BaseRef: "main", BaseSHA: k.base})
		b.StartTimer()
		k.opened(n, "maintainer", "")
		var status githubtest.Status
		pollUntil(b, "the success status", func() bool {
			for _, st := range k.gh.LatestStatuses(ksRepo, head) {
				if st.State == "success" {
					status = st
					return true
				}
				if st.State == "failure" || st.State == "error" {
					b.Fatalf("status %+v", st)
				}
			}
			return false
		})
		var ended time.Time
		for _, p := range k.gl.Pipelines(ksProject) {
			if k.gl.Variables(p.ID)["PULL_NUMBER"] == strconv.Itoa(n) {
				ended, _ = k.gl.EndedAt(p.ID)
			}
		}
		if ended.IsZero() {
			b.Fatalf("no ended pipeline for #%d", n)
		}
		lat = append(lat, status.CreatedAt.Sub(ended))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-webhook-to-status-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-webhook-to-status-ms")
	b.ReportMetric(float64(k.gl.CallCount())/float64(len(lat)), "gitlab-calls/run")
}
