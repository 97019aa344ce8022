package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGitLabJob(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, `
gitlab:
  url: https://gitlab.example.com/
  token_file: /etc/lockstep/gitlab-token
repos:
  acme/widget:
    presubmits:
      - name: kubespray
        always_run: true
        executor: gitlab
        env: {A: "1"}
        gitlab:
          project: kubespray/mirror
          variables: {CI_TIMEOUT: 2h}
      - name: head-only
        executor: gitlab
        gitlab: {project: g/sub/p, merge: false, remote: /srv/p.git}
      - name: unit
        run: make
`)
	w := c.Repos["acme/widget"]
	job, _ := w.Presubmit("kubespray")
	var got GitLabRun
	if err := json.Unmarshal(job.ExecutorConfig(c.GitLab), &got); err != nil {
		t.Fatal(err)
	}
	want := GitLabRun{Project: "kubespray/mirror", Remote: "https://gitlab.example.com/kubespray/mirror.git",
		Variables: map[string]string{"CI_TIMEOUT": "2h"}, Merge: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kubespray's executor config (-want +got):\n%s", diff)
	}
	head, _ := w.Presubmit("head-only")
	if err := json.Unmarshal(head.ExecutorConfig(c.GitLab), &got); err != nil {
		t.Fatal(err)
	}
	if got.Merge || got.Remote != "/srv/p.git" {
		t.Errorf("head-only's executor config %+v, want merge false and remote /srv/p.git", got)
	}
	unit, _ := w.Presubmit("unit")
	if unit.ExecutorName() != ExecutorLocal || unit.ExecutorConfig(c.GitLab) != nil {
		t.Errorf("unit runs on %q with config %s, want local and none", unit.ExecutorName(), unit.ExecutorConfig(c.GitLab))
	}
}

func TestGitLabValidation(t *testing.T) {
	t.Parallel()
	const jp = `repos["acme/widget"].presubmits[0]`
	tests := []struct {
		name, in string
		want     []string
	}{
		{"gitlab job without gitlab section", `
gitlab: {token_file: t}
repos:
  acme/widget:
    presubmits:
      - {name: e2e, executor: gitlab}
`, []string{jp + ".gitlab: required for executor: gitlab"}},
		{"gitlab section on a local job, unknown executor, no token", `
repos:
  acme/widget:
    presubmits:
      - {name: e2e, run: make, gitlab: {project: a/b}}
      - {name: e3, run: make, executor: kube}
      - {name: e4, executor: gitlab, run: make, gitlab: {project: nogroup, variables: {1X: y}}}
`, []string{
			jp + ".gitlab: is only for jobs with executor: gitlab",
			`repos["acme/widget"].presubmits[1].executor: unknown executor "kube"`,
			`repos["acme/widget"].presubmits[2].gitlab.project: "nogroup" is not a GitLab project path`,
			`repos["acme/widget"].presubmits[2].run: a gitlab job runs its project's .gitlab-ci.yml`,
			`repos["acme/widget"].presubmits[2].gitlab.variables["1X"]: invalid variable name`,
			"gitlab.token_file: required",
		}},
		{"bad gitlab section", `
gitlab: {url: "ftp://x", push_url: "https://x/y.git", poll_interval: 30}
`, []string{"gitlab.url:", "gitlab.push_url:", "gitlab.poll_interval:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := mustParse(t, tc.in).Validate()
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant a problem containing %q", err, w)
				}
			}
		})
	}
}
