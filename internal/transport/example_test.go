package transport_test

import (
	"log/slog"
	"net/http"
	"os"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep-ci/lockstep/internal/transport"
)

// ExampleNew wires the chain for a personal access token read from a file.
func ExampleNew() {
	token, err := os.ReadFile("/etc/lockstep/github-token")
	if err != nil {
		return
	}
	metrics, err := transport.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return
	}
	client := &http.Client{Transport: transport.New(transport.Options{
		Tokens:    transport.StaticToken(string(token)),
		Metrics:   metrics,
		Logger:    slog.Default(),
		RateLimit: transport.RateLimitOptions{HourlyTokens: 3000, Burst: 100},
	})}
	_ = client
}

// ExampleNewAppTokenSource wires the chain for a GitHub App. The App's own
// requests (installation lookups, token exchanges) go through a chain of
// their own, without tokens or cache, sharing the metrics.
func ExampleNewAppTokenSource() {
	pem, err := os.ReadFile("/etc/lockstep/app-key.pem")
	if err != nil {
		return
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(pem)
	if err != nil {
		return
	}
	metrics, err := transport.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return
	}
	app, err := transport.NewAppTokenSource(transport.AppConfig{
		AppID:      12345,
		PrivateKey: key,
		Transport:  transport.New(transport.Options{Metrics: metrics, DisableCache: true}),
	})
	if err != nil {
		return
	}
	client := &http.Client{Transport: transport.New(transport.Options{Tokens: app, Metrics: metrics})}
	_ = client
}
