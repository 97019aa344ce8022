package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// hostDir returns a new directory outside /tmp, which a sandboxed job
// never sees (its /tmp is its own): a test of what the sandbox hides must
// put lockstep's files where the job could otherwise read them.
func hostDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "lockstep-sandbox-test-")
	if err != nil {
		t.Fatalf("a directory outside /tmp: %v", err)
	}
	t.Cleanup(func() { _ = workspace(dir).remove() })
	return dir
}

// requireSandbox fails the test when bubblewrap does not work here: CI
// installs it (scripts/test), and a skipped test proves nothing.
func requireSandbox(t *testing.T, e *Executor) {
	t.Helper()
	if st := e.Sandbox(); !st.Sandboxed() {
		t.Fatalf("the sandbox is unavailable: %s", st.Warning())
	}
}

// attackScript is a job trying, from inside its execution, to read
// lockstep's admin token, database, configuration and webhook secret,
// and its environment through /proc, to write outside its workspace, and
// to leave a process behind. It prints LEAK-x for each attempt that
// worked and BLOCKED-x for each that failed.
const attackScript = `try() { if eval "$2" >/dev/null 2>&1; then echo "LEAK-$1"; else echo "BLOCKED-$1"; fi; }
try admin-token 'grep -q lst_ "$DATA/admin-token"'
try database 'test -s "$DATA/lockstep.db"'
try listing 'ls "$DATA" | grep -q admin-token'
try config 'grep -q repos "$CONFIG"'
try webhook-secret 'grep -q hook-secret "$SECRET"'
try environ 'grep -q LOCKSTEP_ "/proc/$TARGET_PID/environ"'
try write-data 'echo x > "$DATA/pwned"'
try write-outside 'echo x > "$OUTSIDE/pwned"'
try write-etc 'echo x > "$ETCFILE"'
try write-workspace 'echo x > "$ARTIFACTS/ok" && echo x > /tmp/ok'
setsid sh -c 'echo "$$" > "$ARTIFACTS/escaped"; sleep 1000; true' "$MARKER" &
sh -c 'sleep 1000; true' "$MARKER" &
while ! test -s "$ARTIFACTS/escaped"; do sleep 0.01; done
echo started-leftovers
`

// TestSandboxConfinesJob runs the attack script sandboxed, where every
// attempt fails and nothing outlives the run, and with the sandbox off,
// where the same attempts succeed (so the test can tell the two apart).
func TestSandboxConfinesJob(t *testing.T) {
	t.Parallel()
	for _, mode := range []SandboxMode{SandboxAuto, SandboxOff} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			host := hostDir(t)
			data := filepath.Join(host, "data")
			outside := filepath.Join(host, "outside")
			for _, d := range []string{data, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			files := map[string]string{
				filepath.Join(data, "admin-token"):   "lst_ADMINTOKEN\n",
				filepath.Join(data, "lockstep.db"):   "SQLite format 3\n",
				filepath.Join(host, "lockstep.yaml"): "repos: {}\n",
				filepath.Join(host, "hook-secret"):   "hook-secret\n",
			}
			for p, c := range files {
				if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e := newExecutor(t, Options{
				Sandbox: mode,
				WorkDir: filepath.Join(hostDir(t), "work"),
				LogDir:  filepath.Join(data, "logs"),
				Hidden:  []string{data, filepath.Join(host, "lockstep.yaml"), filepath.Join(host, "hook-secret")},
			})
			if mode != SandboxOff {
				requireSandbox(t, e)
			}
			marker := fmt.Sprintf("lockstep-leftover-%s-%d", mode, os.Getpid())
			etcFile := "/etc/" + marker
			r := newRun(1, attackScript, run.Refs{})
			r.Spec.Env = map[string]string{
				"DATA": data, "CONFIG": filepath.Join(host, "lockstep.yaml"), "SECRET": filepath.Join(host, "hook-secret"),
				"OUTSIDE": outside, "TARGET_PID": strconv.Itoa(os.Getpid()), "MARKER": marker,
				"ETCFILE": etcFile,
			}
			got, log := runToEnd(t, e, r)
			if diff := cmp.Diff(executor.Outcome{Done: true}, got); diff != "" {
				t.Fatalf("outcome (-want +got):\n%s\nlog:\n%s", diff, log)
			}
			attempts := []string{"admin-token", "database", "listing", "config", "webhook-secret", "environ", "write-data", "write-outside", "write-etc"}
			for _, a := range attempts {
				want := "BLOCKED-" + a
				switch {
				case mode != SandboxOff:
				case a == "write-etc":
					continue // as root it works, as another user it does not
				case a != "environ": // the test's environment has no LOCKSTEP_ variable
					want = "LEAK-" + a
				}
				if !strings.Contains(log, want+"\n") {
					t.Errorf("%s: want %s in the log:\n%s", a, want, log)
				}
			}
			if !strings.Contains(log, "LEAK-write-workspace\n") {
				t.Errorf("the job could not write its workspace and /tmp:\n%s", log)
			}
			if !strings.Contains(log, "started-leftovers") {
				t.Fatalf("the job did not get to start its leftovers:\n%s", log)
			}
			// From outside: nothing was written, and in the sandbox
			// nothing of the job is left, not even a process that left
			// the process group.
			if mode != SandboxOff {
				for _, p := range []string{filepath.Join(data, "pwned"), filepath.Join(outside, "pwned"), etcFile} {
					if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s: got %v, want it not to exist", p, err)
					}
				}
				poll(t, "the job's leftover processes to die", func() bool { return len(processesWith(t, marker)) == 0 })
			} else {
				_ = os.Remove(etcFile)
				_ = os.Remove(filepath.Join(data, "pwned"))
				// Unsandboxed, the process that left the group survives:
				// that is what the sandbox is for. Kill it.
				poll(t, "the escaped process", func() bool { return len(processesWith(t, marker)) > 0 })
				for _, pid := range processesWith(t, marker) {
					p, _ := os.FindProcess(pid)
					_ = p.Kill()
				}
			}
		})
	}
}

// processesWith returns the live processes whose command line holds s.
func processesWith(t *testing.T, s string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), s) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestSandboxKillsEverything aborts a sandboxed run whose processes left
// its process group: they die with it.
func TestSandboxKillsEverything(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	requireSandbox(t, e)
	marker := fmt.Sprintf("lockstep-abort-%d", os.Getpid())
	r := newRun(1, `setsid sh -c 'sleep 1000; true' "$MARKER" &
sh -c 'sleep 1000; true' "$MARKER" &
echo ready
wait`, run.Refs{})
	r.Spec.Env = map[string]string{"MARKER": marker}
	st := start(t, e, r)
	waitForLog(t, st.s.LogPath, "ready")
	poll(t, "the job's processes", func() bool { return len(processesWith(t, marker)) == 2 })
	if err := e.Kill(context.Background(), st.r); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	st.wait(t, e)
	poll(t, "every process of the job to die", func() bool { return len(processesWith(t, marker)) == 0 })
}

func TestSandboxNetwork(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	requireSandbox(t, e)
	// /proc is the sandbox's: /proc/net/dev lists its network namespace's
	// interfaces.
	script := `awk -F: 'NR>2 {gsub(/ /, "", $1); print "if=" $1}' /proc/net/dev`
	for _, noNet := range []bool{false, true} {
		r := newRun(1, script, run.Refs{})
		r.ID = run.ID(map[bool]int{false: 1, true: 2}[noNet])
		r.Spec.NoNetwork = noNet
		_, log := runToEnd(t, e, r)
		n := strings.Count(log, "if=")
		onlyLo := n == 1 && strings.Contains(log, "if=lo\n")
		if noNet != onlyLo {
			t.Errorf("NoNetwork %v: interfaces\n%s", noNet, log)
		}
	}
}

// TestSandboxReadOnlyInsideHidden shows a path inside a hidden directory
// (the git object cache under the data directory) read-only.
func TestSandboxReadOnlyInsideHidden(t *testing.T) {
	t.Parallel()
	data := hostDir(t)
	cache := filepath.Join(data, "cache", "git")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "objects"), []byte("cached\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "admin-token"), []byte("lst_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t, Options{Hidden: []string{data}, ReadOnly: []string{cache}, WorkDir: filepath.Join(hostDir(t), "w")})
	requireSandbox(t, e)
	r := newRun(1, `cat "$CACHE/objects"
ls "$DATA"
test -e "$DATA/admin-token" && echo LEAK
echo x > "$CACHE/new" || echo cache-read-only
echo x > "$DATA/new" || echo data-read-only`, run.Refs{})
	r.Spec.Env = map[string]string{"CACHE": cache, "DATA": data}
	_, log := runToEnd(t, e, r)
	for _, want := range []string{"cached\n", "cache\n", "cache-read-only\n", "data-read-only\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("want %q in the log:\n%s", want, log)
		}
	}
	if strings.Contains(log, "LEAK") {
		t.Errorf("the hidden directory's files are visible:\n%s", log)
	}
}

// TestSandboxUnavailable covers a machine without bubblewrap: presubmits
// are refused with an actionable message, other runs go on with a
// warning, local.sandbox required refuses everything, and off runs
// everything without a word in the log.
func TestSandboxUnavailable(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no-bwrap")
	tests := []struct {
		mode    SandboxMode
		typ     run.Type
		refused bool
		warning string
	}{
		{SandboxAuto, run.Presubmit, true, ""},
		{SandboxAuto, run.Postsubmit, false, ReasonSandboxUnavailable},
		{SandboxAuto, run.Periodic, false, ReasonSandboxUnavailable},
		{SandboxAuto, run.Manual, false, ReasonSandboxUnavailable},
		{SandboxRequired, run.Postsubmit, true, ""},
		{SandboxOff, run.Presubmit, false, "SandboxOff"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s", tc.mode, tc.typ), func(t *testing.T) {
			t.Parallel()
			e := newExecutor(t, Options{Sandbox: tc.mode, BwrapPath: missing})
			if st := e.Sandbox(); st.Sandboxed() || st.Warning() == "" {
				t.Errorf("Sandbox() = %+v, want unsandboxed with a warning", st)
			}
			r := newRun(1, "echo ran", run.Refs{})
			r.Spec.Type = tc.typ
			s, err := e.Start(context.Background(), r, func() {})
			if tc.refused {
				var infra *executor.InfraError
				if !errors.As(err, &infra) || infra.Reason != ReasonSandboxUnavailable {
					t.Fatalf("Start: got %v, want an InfraError with reason %s", err, ReasonSandboxUnavailable)
				}
				for _, want := range []string{"apt-get install bubblewrap", "local.sandbox: off", "no-bwrap"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("message %q does not say %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			r.Status.Handle, r.Status.LogPath = s.Handle, s.LogPath
			if c := s.Condition; c == nil || c.Type != ConditionSandboxed || c.Status || c.Reason != tc.warning {
				t.Errorf("condition %+v, want Sandboxed false with reason %s", c, tc.warning)
			}
			poll(t, "the run to end", func() bool {
				out, err := e.Status(context.Background(), r)
				return err == nil && out.Done
			})
			log, _ := os.ReadFile(s.LogPath)
			if !strings.Contains(string(log), "ran\n") || !strings.Contains(string(log), "lockstep: warning: ") {
				t.Errorf("log:\n%s\nwant the job's output after a warning", log)
			}
		})
	}
}

// TestSecretsMaskedAndGiven gives a run its secret in its environment and
// masks it, and lockstep's own secrets, in its log, however the job
// prints them.
func TestSecretsMaskedAndGiven(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "API_KEY"), []byte("key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t, Options{SecretsDir: dir, Secrets: func() []string { return []string{"lst_ADMIN_TOKEN_VALUE", "hook-secret"} }})
	r := newRun(1, `echo "whole $API_KEY"
printf 'split %s' "key-01234"; sleep 0.1; printf '%s end\n' "56789"
printf 'admin lst_ADMIN_'; printf 'TOKEN_VALUE\n'
echo "plain hook-secret"
test "$API_KEY" = key-0123456789 && echo has-the-key`, run.Refs{})
	r.Spec.Secrets = []string{"API_KEY"}
	got, log := runToEnd(t, e, r)
	if !got.Done || got.ExitCode != 0 {
		t.Fatalf("outcome %+v\n%s", got, log)
	}
	want := "whole ***\nsplit *** end\nadmin ***\nplain ***\nhas-the-key\n"
	if !strings.HasSuffix(log, want) {
		t.Errorf("log:\n%s\nwant it to end with:\n%s", log, want)
	}
	for _, s := range []string{"key-0123456789", "lst_ADMIN_TOKEN_VALUE", "hook-secret"} {
		if strings.Contains(log, s) {
			t.Errorf("the log shows %q", s)
		}
	}
	// A secret that cannot be read is an infrastructure failure, before
	// anything runs.
	r2 := newRun(2, "true", run.Refs{})
	r2.Spec.Secrets = []string{"MISSING"}
	_, err := e.Start(context.Background(), r2, func() {})
	var infra *executor.InfraError
	if !errors.As(err, &infra) || infra.Reason != ReasonSecret {
		t.Errorf("Start with a missing secret: got %v, want reason %s", err, ReasonSecret)
	}
}
