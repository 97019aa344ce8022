package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/testfixtures"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

func TestHookSend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []webhook.Delivery
	srv := httptest.NewServer(webhook.NewHandler(webhook.HandlerOptions{
		Secret: func() []byte { return []byte("s3cret") },
		Sink: webhook.SinkFunc(func(ctx context.Context, d webhook.Delivery) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, d)
			return false, nil
		}),
	}))
	defer srv.Close()
	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "secret"), "s3cret\n")
	p := testfixtures.GitHubPayload(t, "pull_request", "opened.payload.json")
	payload := writeFile(t, filepath.Join(dir, "opened.json"), string(p.Body))

	stdout, stderr, err := runLockstep(t, "hook", "send", "--url", srv.URL, "--secret-file", secret, "--event", "pull_request", payload)
	if err != nil {
		t.Fatalf("hook send: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "202") || len(got) != 1 || got[0].Event != "pull_request" {
		t.Errorf("stdout %q, deliveries %d: want one accepted pull_request", stdout, len(got))
	}
	if !strings.Contains(stdout, got[0].ID) {
		t.Errorf("stdout %q does not name the delivery id %s", stdout, got[0].ID)
	}

	wrong := writeFile(t, filepath.Join(dir, "wrong"), "nope")
	_, _, err = runLockstep(t, "hook", "send", "--url", srv.URL, "--secret-file", wrong, "--event", "pull_request", payload)
	if err == nil {
		t.Error("hook send with a wrong secret succeeded, want a non-zero exit")
	}
}
