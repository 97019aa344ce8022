package main

import (
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	runpkg "github.com/lockstep-ci/lockstep/internal/run"
)

// newKube returns the Kubernetes executor when a job of cfg runs on
// Kubernetes, nil otherwise. sink gets the test containers' logs; wake is
// the runner's Enqueue.
func newKube(cfg *config.Config, dataDir string, sink executor.LogSink, reg prometheus.Registerer, wake func(runpkg.ID), log *slog.Logger) (*kube.Executor, error) {
	uses := false
	for _, j := range cfg.Jobs() {
		uses = uses || j.ExecutorName() == config.ExecutorKubernetes
	}
	if !uses {
		return nil, nil
	}
	m, err := kube.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	client, err := kube.NewClient(cfg.Kubernetes, m)
	if err != nil {
		return nil, err
	}
	return kube.New(kube.Options{
		Client: client, Config: cfg.Kubernetes, LogDir: filepath.Join(dataDir, "logs"), LogSink: sink,
		Wake: wake, Metrics: m, Logger: log,
	}), nil
}
