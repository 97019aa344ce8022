package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/webhook"
)

const hookUsage = `usage:
  lockstep hook send [--url URL] --secret-file FILE --event EVENT PAYLOAD.json
  lockstep hook send [--url URL] --secret-file FILE --event pull_request --git DIR --repo OWNER/NAME --pr N [--head BRANCH] [--base BRANCH] [--action ACTION] [--user LOGIN]
  lockstep hook send [--url URL] --secret-file FILE --event issue_comment --repo OWNER/NAME --pr N --comment TEXT [--user LOGIN]`

// hookEvents are the events hook send sends: those lockstep acts on, and
// GitHub's ping.
func hookEvents() []string { return append(webhook.KnownEvents(), "ping") }

// hookCmd sends one signed webhook delivery, the way GitHub would: the
// way to try lockstep without GitHub. The payload is a file, or, for
// pull_request and issue_comment, built from a local git repository, a
// pull request number and a comment.
func hookCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "send" {
		return fmt.Errorf("%s", hookUsage)
	}
	fs := newFlags("hook send", stderr)
	hookURL := fs.String("url", "http://127.0.0.1:8080/hook", "lockstep's webhook endpoint")
	secretFile := fs.String("secret-file", "", "file holding the webhook secret (required to send)")
	event := fs.String("event", "", "GitHub event name, sent as X-GitHub-Event (required): "+strings.Join(hookEvents(), ", "))
	gitDir := fs.String("git", "", "pull_request: build the payload from this local git repository (the one the configuration's clone_url names)")
	repo := fs.String("repo", "", "with --pr: the repository the event is about, OWNER/NAME as the configuration names it")
	pr := fs.Int("pr", 0, "build the payload, about this pull request number, instead of reading PAYLOAD.json")
	head := fs.String("head", "HEAD", "pull_request: the pull request's head branch in --git")
	base := fs.String("base", "main", "pull_request: the pull request's base branch in --git")
	action := fs.String("action", "", "pull_request: "+strings.Join(pullRequestActions, ", ")+" (default opened); issue_comment: created")
	user := fs.String("user", "octocat", "with --pr: the login of the pull request's author and of the commenter, the event's sender")
	comment := fs.String("comment", "", "issue_comment: the comment's text, such as '/test unit'")
	printOnly := fs.Bool("print", false, "write the payload to stdout instead of sending it")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), hookUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *event == "":
		return fmt.Errorf("hook send: --event is required: one of %s", strings.Join(hookEvents(), ", "))
	case !slices.Contains(hookEvents(), *event):
		return fmt.Errorf("hook send: unknown event %q: lockstep acts on %s (and answers ping)", *event, strings.Join(webhook.KnownEvents(), ", "))
	case *secretFile == "" && !*printOnly:
		return fmt.Errorf("hook send: --secret-file is required")
	}

	var payload []byte
	if set["pr"] {
		if len(pos) != 0 {
			return fmt.Errorf("hook send: --pr builds the payload; give no PAYLOAD.json (got %q)", pos)
		}
		if *pr <= 0 {
			return fmt.Errorf("hook send: --pr %d: a pull request number is positive", *pr)
		}
		if *repo == "" {
			return fmt.Errorf("hook send: --repo OWNER/NAME is required with --pr")
		}
		payload, err = buildPayload(ctx, *event, set, pullSpec{
			Dir: *gitDir, Repo: *repo, Number: *pr, Head: *head, Base: *base, User: *user, Action: *action, Now: time.Now(),
		}, *comment)
		if err != nil {
			return fmt.Errorf("hook send: %w", err)
		}
	} else {
		for _, name := range []string{"git", "repo", "head", "base", "action", "user", "comment"} {
			if set[name] {
				return fmt.Errorf("hook send: --%s builds a payload and needs --pr", name)
			}
		}
		if len(pos) != 1 {
			return fmt.Errorf("hook send takes one payload file (or --pr to build one), got %d arguments", len(pos))
		}
		if payload, err = os.ReadFile(pos[0]); err != nil {
			return fmt.Errorf("read payload: %w", err)
		}
	}
	if *printOnly {
		_, err := fmt.Fprintf(stdout, "%s\n", payload)
		return err
	}

	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		return fmt.Errorf("read secret: %w", err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	id, status, body, err := webhook.Send(ctx, client, *hookURL, bytes.TrimSpace(secret), *event, payload)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "delivery %s: %d %s\n%s\n", id, status, http.StatusText(status), bytes.TrimSpace([]byte(body)))
	if status >= 300 {
		if hint := urlHint(*hookURL, status); hint != "" {
			fmt.Fprintln(stderr, "lockstep:", hint)
		}
		return exitError(1)
	}
	return nil
}

// buildPayload builds the payload of event from the flags.
func buildPayload(ctx context.Context, event string, set map[string]bool, pull pullSpec, comment string) ([]byte, error) {
	only := func(allowed ...string) error {
		for _, name := range []string{"git", "head", "base", "action", "comment"} {
			if set[name] && !slices.Contains(allowed, name) {
				return fmt.Errorf("--%s does not apply to a %s payload", name, event)
			}
		}
		return nil
	}
	switch event {
	case "pull_request":
		if err := only("git", "head", "base", "action"); err != nil {
			return nil, err
		}
		if pull.Dir == "" {
			return nil, fmt.Errorf("--git DIR is required: the local git repository the pull request's commits are in")
		}
		if pull.Action == "" {
			pull.Action = "opened"
		}
		return buildPullRequest(ctx, pull)
	case "issue_comment":
		if err := only("action", "comment"); err != nil {
			return nil, err
		}
		if pull.Action != "" && pull.Action != "created" {
			return nil, fmt.Errorf("--action %q: hook send builds new comments (created), the only ones that carry commands", pull.Action)
		}
		return buildIssueComment(commentSpec{Repo: pull.Repo, Number: pull.Number, User: pull.User, Body: comment, Now: pull.Now})
	}
	return nil, fmt.Errorf("--pr builds pull_request and issue_comment payloads; give a PAYLOAD.json file for %s", event)
}

// urlHint explains an answer that says the URL is not lockstep's webhook
// endpoint: the UI's routes answer a POST with 405 (or 404).
func urlHint(raw string, status int) string {
	if status != http.StatusMethodNotAllowed && status != http.StatusNotFound {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || strings.HasSuffix(u.Path, "/hook") {
		return ""
	}
	want := *u
	want.Path, want.RawQuery, want.Fragment = "/hook", "", ""
	return fmt.Sprintf("%s is not lockstep's webhook endpoint, which is POST /hook: use --url %s", raw, want.String())
}
