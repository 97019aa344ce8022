package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
)

// defaultWorkDir is where workspaces go when local.work_dir is not set:
// outside the data directory, so that a job that walks up from its
// workspace finds nothing of lockstep's.
func defaultWorkDir() string { return filepath.Join(os.TempDir(), "lockstep-workspaces") }

// localOptions returns the local executor's options for cfg, loaded from
// configPath, with lockstep's data in dataDir: the sandbox mode, the
// workspaces outside dataDir, and the paths a sandboxed job must not
// see (the data directory, the configuration, every secret file).
func localOptions(cfg *config.Config, configPath, dataDir string) (local.Options, error) {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	data := abs(dataDir)
	work := cfg.Local.WorkDir
	if work == "" {
		work = defaultWorkDir()
	}
	work = abs(work)
	if rel, err := filepath.Rel(data, work); err == nil && !strings.HasPrefix(rel, "..") {
		return local.Options{}, fmt.Errorf("local.work_dir %s is inside the data directory %s: jobs would run next to lockstep's database and tokens; choose a directory outside it", work, data)
	}
	hidden := []string{data, abs(configPath)}
	hidden = append(hidden, cfg.SecretFiles()...)
	hidden = append(hidden, cfg.Local.HiddenPaths...)
	return local.Options{
		WorkDir:    work,
		LogDir:     filepath.Join(data, "logs"),
		Sandbox:    local.SandboxMode(cfg.Local.EffectiveSandbox()),
		Hidden:     hidden,
		CacheDir:   filepath.Join(data, "cache", "git"),
		SecretsDir: cfg.Local.SecretsDir,
	}, nil
}

// secretValues returns every secret lockstep knows from cfg, besides the
// admin token: the contents of its secret files (GitHub's token, App key
// and webhook secret, GitLab's tokens) and the values of the jobs'
// secrets. Files that cannot be read
// are left out (whoever needs them reports it).
func secretValues(cfg *config.Config) []string {
	var out []string
	read := func(path string) {
		if path == "" {
			return
		}
		if b, err := os.ReadFile(path); err == nil {
			out = append(out, string(bytes.TrimSpace(b)))
		}
	}
	for _, f := range cfg.SecretFiles() {
		if f != cfg.Local.SecretsDir {
			read(f)
		}
	}
	if dir := cfg.Local.SecretsDir; dir != "" {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Type().IsRegular() {
				read(filepath.Join(dir, e.Name()))
			}
		}
	}
	return out
}
