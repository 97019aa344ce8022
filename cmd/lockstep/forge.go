package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/forge"
	ghforge "github.com/lockstep-ci/lockstep/internal/forge/github"
	"github.com/lockstep-ci/lockstep/internal/forge/offline"
	"github.com/lockstep-ci/lockstep/internal/transport"
)

// newForge returns the GitHub client, or, when no credentials are
// configured, the offline forge: runs then come from signed webhooks
// (lockstep hook send) with trust from the configuration's lists, the
// pull requests known are those the store recorded from webhooks (their
// changed files from git, for a local clone_url), and nothing is posted
// anywhere.
func newForge(getter *config.Getter, pulls offline.PullStates, reg prometheus.Registerer, log *slog.Logger) (forge.Client, error) {
	g := getter.Get().GitHub
	if !g.Configured() {
		log.Info("no GitHub credentials configured: working offline; trust comes from trust.users, pull requests from the webhooks received, and labels, comments and statuses are only logged")
		return &offline.Forge{
			Logger: log, Pulls: pulls,
			CloneURL: func(repo string) string { return getter.Get().Repos[repo].EffectiveCloneURL(repo) },
		}, nil
	}
	return newGitHub(g, reg, log)
}

// newGitHub builds the one GitHub client every part of lockstep uses, on
// the transport chain (retries, rate limits, cache, metrics, logging),
// with the credentials the configuration names. Without credentials the
// client is anonymous. Credentials are read at start: changing them needs
// a restart.
func newGitHub(g config.GitHub, reg prometheus.Registerer, log *slog.Logger) (*ghforge.Client, error) {
	metrics, err := transport.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	endpoint := g.EffectiveEndpoint()
	// Controllers call GitHub from many workers: keep connections to
	// reuse for each of them.
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	opts := transport.Options{
		Base:      base,
		Endpoint:  endpoint,
		Logger:    log,
		Metrics:   metrics,
		RateLimit: transport.RateLimitOptions{HourlyTokens: g.HourlyTokens, Burst: g.AllowedBurst},
	}
	switch {
	case g.TokenFile != "":
		token, err := os.ReadFile(g.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("github.token_file: %w", err)
		}
		opts.Tokens = transport.StaticToken(string(bytes.TrimSpace(token)))
	case g.AppID != 0:
		pem, err := os.ReadFile(g.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("github.private_key_file: %w", err)
		}
		key, err := jwt.ParseRSAPrivateKeyFromPEM(pem)
		if err != nil {
			return nil, fmt.Errorf("github.private_key_file %s: %w", g.PrivateKeyFile, err)
		}
		app, err := transport.NewAppTokenSource(transport.AppConfig{
			AppID: g.AppID, PrivateKey: key, Endpoint: endpoint,
			Transport: transport.New(transport.Options{Base: base, Endpoint: endpoint, Logger: log, Metrics: metrics, DisableCache: true}),
		})
		if err != nil {
			return nil, err
		}
		opts.Tokens = app
	}
	return ghforge.New(ghforge.Options{
		Endpoint:   endpoint,
		HTTPClient: &http.Client{Transport: transport.New(opts)},
		BotLogin:   g.BotLogin,
	})
}

// webhookSecret returns a function reading the webhook secret file named
// by the current configuration; a nil secret and no error means none is
// configured.
func webhookSecret(getter *config.Getter, log *slog.Logger) func() ([]byte, error) {
	return func() ([]byte, error) {
		path := getter.Get().GitHub.WebhookSecretFile
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			log.Error("cannot read the webhook secret; refusing deliveries", "file", path, "err", err)
			return nil, fmt.Errorf("github.webhook_secret_file: %w", err)
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			return nil, fmt.Errorf("github.webhook_secret_file: %s is empty", path)
		}
		return b, nil
	}
}
