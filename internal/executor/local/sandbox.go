package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// SandboxMode says whether the Executor sandboxes executions.
type SandboxMode string

// The sandbox modes; the zero value is SandboxAuto.
const (
	// SandboxAuto sandboxes every execution when the machine allows it.
	// When it does not, a presubmit (code from a pull request) is refused
	// with reason SandboxUnavailable, and every other run goes on
	// unsandboxed, with a warning in its log and a condition on the run.
	SandboxAuto SandboxMode = "auto"
	// SandboxRequired refuses every execution that cannot be sandboxed.
	SandboxRequired SandboxMode = "required"
	// SandboxOff never sandboxes: jobs run as lockstep's own user and see
	// what it sees.
	SandboxOff SandboxMode = "off"
)

// ReasonSandboxUnavailable is the reason of a run refused because it
// cannot be sandboxed.
const ReasonSandboxUnavailable = "SandboxUnavailable"

// ReasonSecret is the reason of a run whose secrets cannot be read.
const ReasonSecret = "SecretUnavailable"

// ConditionSandboxed is the type of the condition the Executor sets on
// runs that are not sandboxed (status false), saying why.
const ConditionSandboxed = "Sandboxed"

// sandboxHelp says how to get a sandbox or do without one.
const sandboxHelp = "install bubblewrap (Debian and Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap) " +
	"and make sure user namespaces are enabled (sysctl user.max_user_namespaces > 0, and kernel.unprivileged_userns_clone=1 " +
	"or kernel.apparmor_restrict_unprivileged_userns=0 where those exist), or set local.sandbox: off in the configuration " +
	"to run jobs unsandboxed, as lockstep's own user"

// SandboxStatus says whether executions are sandboxed.
type SandboxStatus struct {
	Mode SandboxMode
	// Available reports whether bubblewrap works on this machine;
	// Problem says why not.
	Available bool
	Problem   string
}

// Sandboxed reports whether executions are sandboxed.
func (s SandboxStatus) Sandboxed() bool { return s.Mode != SandboxOff && s.Available }

// Warning returns what an operator should be told about s, or "" when
// every execution is sandboxed.
func (s SandboxStatus) Warning() string {
	switch {
	case s.Mode == SandboxOff:
		return "local.sandbox is off: jobs run unsandboxed, as lockstep's own user, and can read lockstep's data directory, configuration and secrets"
	case s.Available:
		return ""
	case s.Mode == SandboxRequired:
		return "the job sandbox is unavailable (" + s.Problem + ") and local.sandbox is required: every run is refused; " + sandboxHelp
	}
	return "the job sandbox is unavailable (" + s.Problem + "): presubmits are refused, and postsubmits, periodics and lockstep run go on unsandboxed; " + sandboxHelp
}

// sandboxProbe finds out, once, whether bubblewrap works here.
type sandboxProbe struct {
	once   sync.Once
	path   string // bwrap, found in PATH
	status SandboxStatus
}

// Sandbox returns whether e's executions are sandboxed. The first call
// tries bubblewrap once (a few milliseconds); later calls return the
// same answer.
func (e *Executor) Sandbox() SandboxStatus {
	p := &e.probe
	p.once.Do(func() {
		p.status = SandboxStatus{Mode: e.opts.Sandbox}
		if e.opts.Sandbox == SandboxOff {
			return
		}
		path, err := exec.LookPath(e.opts.BwrapPath)
		if err != nil {
			p.status.Problem = fmt.Sprintf("%s not found: %v", e.opts.BwrapPath, err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		args := append(sandboxBase(false), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true")
		out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
		if err != nil {
			p.status.Problem = fmt.Sprintf("%s cannot create namespaces: %v: %s", path, err, strings.TrimSpace(string(out)))
			return
		}
		p.path, p.status.Available = path, true
	})
	return p.status
}

// sandboxBase returns bwrap's options that make the namespaces: its own
// user, mount, PID, IPC and UTS namespaces (and network, when noNet),
// no capabilities left inside, and the sandbox killed when its parent
// dies. Without --cap-drop, the job would be root in its user namespace
// and could unmount what hides lockstep's files.
func sandboxBase(noNet bool) []string {
	args := []string{
		"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--die-with-parent", "--cap-drop", "ALL",
	}
	if noNet {
		args = append(args, "--unshare-net")
	}
	return args
}

// sandboxDecision says how an execution is sandboxed, or why it is not.
type sandboxDecision struct {
	bwrap string // empty: unsandboxed
	// warning, when set, is written at the top of the run's log and
	// recorded as the run's Sandboxed condition.
	warning *run.Condition
}

// decideSandbox says whether r runs in the sandbox, unsandboxed with a
// warning, or not at all (an InfraError with ReasonSandboxUnavailable).
func (e *Executor) decideSandbox(r *run.Run) (sandboxDecision, error) {
	st := e.Sandbox()
	switch {
	case st.Mode == SandboxOff:
		return sandboxDecision{warning: &run.Condition{
			Type: ConditionSandboxed, Reason: "SandboxOff",
			Message: "local.sandbox is off: the job ran unsandboxed, as lockstep's own user",
		}}, nil
	case st.Available:
		return sandboxDecision{bwrap: e.probe.path}, nil
	case st.Mode == SandboxRequired || r.Spec.Type == run.Presubmit:
		why := "local.sandbox is required"
		if st.Mode != SandboxRequired {
			why = "a presubmit runs code from a pull request and is never run unsandboxed"
		}
		return sandboxDecision{}, &executor.InfraError{Reason: ReasonSandboxUnavailable, Err: fmt.Errorf(
			"the job sandbox is unavailable (%s), and %s: %s", st.Problem, why, sandboxHelp)}
	}
	return sandboxDecision{warning: &run.Condition{
		Type: ConditionSandboxed, Reason: ReasonSandboxUnavailable,
		Message: "the job ran unsandboxed, as lockstep's own user, because the sandbox is unavailable (" + st.Problem + "); " + sandboxHelp,
	}}, nil
}

// sandboxArgs returns the bwrap command line that runs inner in r's
// sandbox: the whole file system read-only, a private /tmp, /proc of the
// sandbox's own PID namespace, a minimal /dev, the workspace read-write,
// and nothing of lockstep's data directory, configuration and secret
// files (Options.Hidden) — except the paths of Options.ReadOnly and a
// clone URL that is a local path, read-only.
func (e *Executor) sandboxArgs(bwrap string, r *run.Run, ws workspace, inner []string) []string {
	args := append([]string{bwrap}, sandboxBase(r.Spec.NoNetwork)...)
	args = append(args,
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		"--proc", "/proc",
		"--tmpfs", "/tmp",
	)
	var hiddenDirs []string
	hide := func(p string) {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			// Nothing to hide; bwrap cannot mount over it.
		case fi.IsDir():
			// An empty tmpfs, made read-only once the paths to show
			// inside it are mounted.
			args = append(args, "--tmpfs", p)
			hiddenDirs = append(hiddenDirs, p)
		default:
			args = append(args, "--ro-bind", "/dev/null", p)
		}
	}
	hidden := slices.DeleteFunc(expandPaths(e.opts.Hidden), func(p string) bool {
		return under(p, "/tmp") // the sandbox's /tmp is its own
	})
	for _, p := range hidden {
		hide(p)
	}
	var shown []string
	readOnly := append(slices.Clone(e.opts.ReadOnly), localClonePath(r.Spec.Refs.CloneURL))
	// The git lockstep was told to run may live under /tmp, which the
	// sandbox replaces with its own.
	if git, err := exec.LookPath(e.opts.GitPath); err == nil && filepath.IsAbs(git) {
		readOnly = append(readOnly, git)
	}
	for _, p := range expandPaths(readOnly) {
		if _, err := os.Stat(p); err == nil {
			args = append(args, "--ro-bind", p, p)
			shown = append(shown, p)
		}
	}
	// A hidden path inside a shown one (the configuration file in a
	// repository cloned from a local path) stays hidden.
	for _, p := range hidden {
		if slices.ContainsFunc(shown, func(s string) bool { return p != s && under(p, s) }) {
			hide(p)
		}
	}
	args = append(args, "--bind", string(ws), string(ws))
	for _, d := range hiddenDirs {
		args = append(args, "--remount-ro", d)
	}
	args = append(args, "--chdir", ws.src(), "--")
	return append(args, inner...)
}

// sandboxEnv adjusts a sandboxed job's environment: caches
// ($XDG_CACHE_HOME, where Go keeps its build cache) in the workspace, as
// HOME is read-only, and TMPDIR the sandbox's own /tmp. HOME stays, so
// that tools find what is installed there (Go's module cache), read-only.
func sandboxEnv(env []string, ws workspace) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "XDG_CACHE_HOME=") || strings.HasPrefix(kv, "TMPDIR=")
	})
	out = append(out, "XDG_CACHE_HOME="+ws.cache(), "TMPDIR=/tmp")
	slices.Sort(out)
	return out
}

// expandPaths returns paths cleaned and made absolute, with the targets
// of those that are symbolic links added.
func expandPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		out = append(out, abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
			out = append(out, real)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// localClonePath returns the directory a clone URL names on this machine
// (a path or a file:// URL), or "".
func localClonePath(url string) string {
	switch {
	case strings.HasPrefix(url, "file://"):
		return filepath.Clean(strings.TrimPrefix(url, "file://"))
	case filepath.IsAbs(url):
		return filepath.Clean(url)
	}
	return ""
}

// readSecrets returns the values of r's secrets, read from dir/NAME.
func readSecrets(dir string, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if dir == "" {
		return nil, &executor.InfraError{Reason: ReasonSecret, Err: errors.New("the job names secrets, but local.secrets_dir is not set")}
	}
	out := make(map[string]string, len(names))
	for _, name := range names {
		if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
			return nil, &executor.InfraError{Reason: ReasonSecret, Err: fmt.Errorf("invalid secret name %q", name)}
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, &executor.InfraError{Reason: ReasonSecret, Err: fmt.Errorf("read secret %s: %w", name, err)}
		}
		out[name] = strings.TrimRight(string(b), "\r\n")
	}
	return out, nil
}

// cache is a sandboxed job's XDG_CACHE_HOME.
func (w workspace) cache() string { return filepath.Join(string(w), "cache") }

// withSecrets adds the secrets to env, sorted by name.
func withSecrets(env []string, secrets map[string]string) []string {
	if len(secrets) == 0 {
		return env
	}
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		_, ok := secrets[name]
		return ok
	})
	for name, v := range secrets {
		out = append(out, name+"="+v)
	}
	slices.Sort(out)
	return out
}

// maskedValues returns every value to mask in a run's log: lockstep's
// own secrets and the run's.
func (e *Executor) maskedValues(secrets map[string]string) []string {
	var out []string
	if e.opts.Secrets != nil {
		out = append(out, e.opts.Secrets()...)
	}
	for _, v := range secrets {
		out = append(out, v)
	}
	return out
}
