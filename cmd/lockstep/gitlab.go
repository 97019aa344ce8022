package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	gitlabexec "github.com/lockstep-ci/lockstep/internal/executor/gitlab"
	lsrun "github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// gitlabParts are what lockstep serve runs for jobs with executor:
// gitlab, when the configuration has a gitlab section with a token.
type gitlabParts struct {
	exec       *gitlabexec.Executor
	deliveries *gitlabexec.Deliveries
}

// newGitLab builds the GitLab executor and its webhook processor from the
// gitlab section, or returns nil parts when it names no token. The
// token is read at start: changing it needs a restart. sink gets the
// runs' logs.
func newGitLab(g config.GitLab, st store.Store, sink executor.LogSink, dataDir string, notify func(lsrun.ID), log *slog.Logger) (*gitlabParts, error) {
	if g.TokenFile == "" {
		return nil, nil
	}
	token, err := os.ReadFile(g.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("gitlab.token_file: %w", err)
	}
	x, err := gitlabexec.New(gitlabexec.Options{
		URL: g.EffectiveURL(), Token: string(bytes.TrimSpace(token)),
		WorkDir: filepath.Join(dataDir, "gitlab"), LogDir: filepath.Join(dataDir, "logs"), LogSink: sink,
		PollInterval: g.EffectivePollInterval(), TraceInterval: g.EffectiveTraceInterval(),
		Logger: log.With("executor", config.ExecutorGitLab), Notify: notify,
	})
	if err != nil {
		return nil, err
	}
	return &gitlabParts{exec: x, deliveries: gitlabexec.NewDeliveries(st, x, log)}, nil
}

// executors returns the runner's named executors.
func (p *gitlabParts) executors() map[string]executor.Executor {
	if p == nil {
		return nil
	}
	return map[string]executor.Executor{config.ExecutorGitLab: p.exec}
}

// gitlabHook returns the handler of POST /hook/gitlab, reading the
// webhook token file named by the current configuration for each
// delivery.
func gitlabHook(getter *config.Getter, st store.Store, log *slog.Logger) http.Handler {
	return gitlabexec.NewHookHandler(gitlabexec.HookOptions{
		Store: st, Logger: log,
		Token: func() []byte {
			path := getter.Get().GitLab.WebhookTokenFile
			if path == "" {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				log.Error("cannot read the GitLab webhook token; refusing deliveries", "file", path, "err", err)
				return nil
			}
			return bytes.TrimSpace(b)
		},
	})
}
