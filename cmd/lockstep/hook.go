package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/lockstep-ci/lockstep/internal/webhook"
)

// hookCmd sends one signed webhook delivery, the way GitHub would: the
// way to try lockstep without GitHub.
func hookCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "send" {
		return fmt.Errorf("usage: lockstep hook send --url URL --secret-file FILE --event EVENT PAYLOAD.json")
	}
	fs := newFlags("hook send", stderr)
	url := fs.String("url", "http://127.0.0.1:8080/hook", "lockstep's webhook endpoint")
	secretFile := fs.String("secret-file", "", "file holding the webhook secret (required)")
	event := fs.String("event", "", "GitHub event name, sent as X-GitHub-Event (required): pull_request, issue_comment, push…")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return fmt.Errorf("hook send takes one payload file, got %d arguments", len(pos))
	case *secretFile == "":
		return fmt.Errorf("hook send: --secret-file is required")
	case *event == "":
		return fmt.Errorf("hook send: --event is required")
	}
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		return fmt.Errorf("read secret: %w", err)
	}
	payload, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("read payload: %w", err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	id, status, body, err := webhook.Send(ctx, client, *url, bytes.TrimSpace(secret), *event, payload)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "delivery %s: %d %s\n%s\n", id, status, http.StatusText(status), bytes.TrimSpace([]byte(body)))
	if status >= 300 {
		return exitError(1)
	}
	return nil
}
