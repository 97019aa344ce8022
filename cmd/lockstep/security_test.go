package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
)

// Secrets the security test plants; the job prints them, lockstep must
// show *** instead.
const (
	testAdminToken    = "lst_E2EADMINTOKENVALUE0123"
	testWebhookSecret = "e2e-hook-secret-value"
	testGitHubToken   = "ghp_e2eGitHubTokenValue42"
	testJobSecret     = "job-secret-value-0042"
)

// attackJob is the script of the attack, run from a pull request
// by a trusted author: read lockstep's admin token, database,
// configuration, webhook secret and environment, write outside the
// workspace, leave a process behind; then print every secret it can get
// (its own, given to it; the others copied into the repository, as a job
// that found them would print them) whole and split across two writes.
const attackJob = `try() { if eval "$2" >/dev/null 2>&1; then echo "LEAK-$1"; else echo "BLOCKED-$1"; fi; }
try admin-token 'grep -q lst_ "$DATA/admin-token"'
try database 'test -s "$DATA/lockstep.db"'
try listing 'ls ../../.. "$DATA" | grep -q -e admin-token -e lockstep.db'
try config 'grep -q repos "$CONFIG"'
try webhook-secret 'grep -q hook "$SECRET"'
try github-token 'grep -q ghp_ "$TOKEN"'
try environ 'cat "/proc/$(cat "$PIDFILE")/environ"'
try write-data 'echo x > "$DATA/pwned"'
try write-outside 'echo x > "$OUTSIDE/pwned"'
setsid sh -c 'echo "$$" > "$ARTIFACTS/escaped"; sleep 1000; true' "$MARKER" &
while ! test -s "$ARTIFACTS/escaped"; do sleep 0.01; done
echo "own whole $JOB_SECRET"
while read -r s; do
	echo "whole $s"
	head=$(printf %s "$s" | cut -c1-6); tail=$(printf %s "$s" | cut -c7-)
	printf 'split %s' "$head"; sleep 0.05; printf '%s\n' "$tail"
done < planted
echo attack-done
`

// TestSandboxedAttack runs the attack against lockstep serve, with its
// data directory, configuration and secrets outside /tmp where a job not
// sandboxed would read them: every attempt fails, asserted from the job's
// output and from outside, and every secret is *** in the stored log,
// the API, the live stream and the run page, and absent from lockstep's
// own log.
func TestSandboxedAttack(t *testing.T) {
	t.Parallel()
	host, err := os.MkdirTemp("/var/tmp", "lockstep-e2e-")
	if err != nil {
		t.Fatalf("a directory outside /tmp: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("rm", "-rf", host).Run() })
	data := filepath.Join(host, "data")
	outside := filepath.Join(host, "outside")
	writeFile(t, filepath.Join(data, "admin-token"), testAdminToken+"\n")
	if err := os.Chmod(filepath.Join(data, "admin-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(outside, ".keep"), "")
	secret := writeFile(t, filepath.Join(host, "hook-secret"), testWebhookSecret+"\n")
	token := writeFile(t, filepath.Join(host, "token"), testGitHubToken+"\n")
	writeFile(t, filepath.Join(host, "secrets", "JOB_SECRET"), testJobSecret+"\n")
	pidFile := filepath.Join(host, "lockstep.pid")
	marker := fmt.Sprintf("lockstep-e2e-leftover-%d", os.Getpid())

	repoDir := gitRepo(t)
	writeFile(t, filepath.Join(repoDir, "planted"), strings.Join([]string{testAdminToken, testWebhookSecret, testGitHubToken, testJobSecret}, "\n")+"\n")
	for _, args := range [][]string{{"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "plant"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repoDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	headOut, err := exec.Command("git", "-C", repoDir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	head := strings.TrimSpace(string(headOut))

	gh := githubtest.NewServer(t)
	gh.AddMember("acme", "alice")
	cfg := writeFile(t, filepath.Join(host, "lockstep.yaml"), fmt.Sprintf(`
github:
  endpoint: %s
  token_file: token
  webhook_secret_file: hook-secret
  bot_login: lockstep-bot
local:
  secrets_dir: secrets
  work_dir: %s
repos:
  acme/widget:
    clone_url: %s
    presubmits:
      - name: attack
        always_run: true
        secrets: [JOB_SECRET]
        env:
          DATA: %s
          CONFIG: %s
          SECRET: %s
          TOKEN: %s
          OUTSIDE: %s
          PIDFILE: %s
          MARKER: %s
        run: |
%s`, gh.URL(), filepath.Join(host, "work"), repoDir, data, filepath.Join(host, "lockstep.yaml"), secret, token, outside, pidFile, marker,
		indent(attackJob, "          ")))
	gh.AddPull("acme/widget", githubtest.Pull{Number: 7, Author: "alice", HeadSHA: head, HeadRef: "feature", BaseRef: "main", BaseSHA: head})

	srv := startServer(t, cfg, data)
	writeFile(t, pidFile, strconv.Itoa(srv.cmd.Process.Pid)+"\n")
	payload := openedPayload(t, host, 7, "alice", head, head)
	if stdout, stderr, err := runLockstep(t, "hook", "send", "--url", "http://"+srv.addr+"/hook", "--secret-file", secret, "--event", "pull_request", payload); err != nil {
		t.Fatalf("hook send: %v\n%s%s", err, stdout, stderr)
	}
	base := "http://" + srv.addr
	var id int64
	pollUntil(t, "the attack run to end", func() bool {
		var page struct {
			Runs []struct {
				ID    int64  `json:"id"`
				State string `json:"state"`
			} `json:"runs"`
		}
		getJSON(t, base+"/api/v1/runs?repo=acme/widget", &page)
		if len(page.Runs) == 1 && page.Runs[0].State != "pending" && page.Runs[0].State != "scheduled" && page.Runs[0].State != "running" {
			id = page.Runs[0].ID
			return true
		}
		return false
	})
	stored, err := os.ReadFile(filepath.Join(data, "logs", fmt.Sprintf("%d.log", id)))
	if err != nil {
		t.Fatal(err)
	}
	copies := map[string]string{
		"stored log":  string(stored),
		"API":         httpGet(t, fmt.Sprintf("%s/api/v1/runs/%d/log", base, id)),
		"live stream": httpGet(t, fmt.Sprintf("%s/api/v1/runs/%d/log/stream", base, id)),
		"run page":    httpGet(t, fmt.Sprintf("%s/runs/%d", base, id)),
	}
	log := copies["stored log"]
	if !strings.Contains(log, "attack-done") {
		t.Fatalf("the job did not run to its end:\n%s", log)
	}
	for _, a := range []string{"admin-token", "database", "listing", "config", "webhook-secret", "github-token", "environ", "write-data", "write-outside"} {
		if !strings.Contains(log, "BLOCKED-"+a+"\n") {
			t.Errorf("%s: want BLOCKED-%s in the log:\n%s", a, a, log)
		}
	}
	for name, text := range copies {
		for _, s := range []string{testAdminToken, testWebhookSecret, testGitHubToken, testJobSecret} {
			if strings.Contains(text, s) || strings.Contains(text, s[6:]) {
				t.Errorf("the %s shows (part of) %q", name, s)
			}
		}
		if name != "run page" && (!strings.Contains(text, "own whole ***") || strings.Count(text, "split ***") != 4 || strings.Count(text, "whole ***") != 5) {
			t.Errorf("the %s does not show *** for every secret:\n%s", name, text)
		}
	}
	// From outside: nothing written, nothing left running.
	for _, p := range []string{filepath.Join(data, "pwned"), filepath.Join(outside, "pwned")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("the job wrote %s", p)
		}
	}
	pollUntil(t, "the job's leftover process to die", func() bool {
		out, _ := exec.Command("pgrep", "-f", marker).Output()
		return len(strings.TrimSpace(string(out))) == 0
	})
	// lockstep's own log never shows a secret; the admin token, made
	// before, not even once.
	for _, s := range []string{testAdminToken, testWebhookSecret, testGitHubToken, testJobSecret} {
		if strings.Contains(srv.Log(), s) {
			t.Errorf("lockstep's log shows %q", s)
		}
	}
	if !strings.Contains(srv.Log(), "admin_token_prefix=lst_E2EA…") {
		t.Errorf("lockstep's log does not name the admin token by its prefix:\n%s", srv.Log())
	}
}

func indent(s, prefix string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(httpGet(t, url)), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
