// Package github is lockstep's forge.Client for GitHub and GitHub
// Enterprise Server, built on go-github. Authentication, caching, rate
// limits, retries and metrics belong to the http.Client it is given,
// normally one built from transport.New; this package maps GitHub's API
// onto the forge interfaces and GitHub's errors onto forge's sentinels.
package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	gh "github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/transport"
)

// MaxDescription is the longest commit status description GitHub accepts,
// in characters; CreateStatus shortens longer ones.
const MaxDescription = 140

// perPage is the page size of every list request: GitHub's maximum.
const perPage = 100

// maxPages bounds the pages one list reads, so that a misbehaving server
// cannot keep it paging forever (GitHub lists at most 3000 files of a
// pull request, 30 pages).
const maxPages = 1000

// Options configures a Client.
type Options struct {
	// Endpoint is the REST API's base URL: https://api.github.com (the
	// default) or, for GitHub Enterprise Server, https://HOST/api/v3. It
	// is used as given; a missing trailing slash is added.
	Endpoint string
	// HTTPClient sends every request. Build it from transport.New so that
	// requests are authenticated, cached, rate-limited and retried.
	// Default: an unauthenticated transport.New chain to Endpoint.
	HTTPClient *http.Client
	// BotLogin is the login lockstep acts as. When empty, BotLogin asks
	// GitHub once: GET /user for a user's token, or, when GitHub answers
	// that as a GitHub App installation, GET /app, giving "<slug>[bot]".
	BotLogin string
}

// Client is a forge.Client for GitHub. It is safe for concurrent use.
type Client struct {
	gh *gh.Client

	mu       sync.Mutex
	botLogin string // mu guards botLogin: "" until known
}

var _ forge.Client = (*Client)(nil)

// New returns a Client for opts.
func New(opts Options) (*Client, error) {
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = transport.DefaultEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("GitHub endpoint %q: want an absolute http(s) URL such as %s, or https://HOST/api/v3 for GitHub Enterprise Server",
			endpoint, transport.DefaultEndpoint)
	}
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: transport.New(transport.Options{Endpoint: endpoint})}
	}
	client, err := gh.NewClient(
		gh.WithHTTPClient(hc),
		gh.WithURLs(&endpoint, &endpoint),
		gh.WithUserAgent("lockstep"),
		// The transport chain waits out rate limits; go-github's own
		// check would refuse requests on its own clock instead.
		gh.WithDisableRateLimitCheck(),
	)
	if err != nil {
		return nil, fmt.Errorf("GitHub client for %s: %w", endpoint, err)
	}
	return &Client{gh: client, botLogin: opts.BotLogin}, nil
}

// ParseRepo splits a repository's full name, "owner/name", checking that
// both parts are names GitHub allows.
func ParseRepo(full string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(full, "/")
	if !ok || !validOwner(owner) || !validName(name) {
		return "", "", fmt.Errorf("repository %q: want owner/name, such as kubernetes/test-infra", full)
	}
	return owner, name, nil
}

// validOwner reports whether s is a possible user or organization login:
// letters, digits and hyphens.
func validOwner(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// validLogin reports whether s can be put into a path as a user's login,
// which may be a bot's ("dependabot[bot]").
func validLogin(s string) bool {
	return s != "" && len(s) <= 100 && !strings.ContainsAny(s, "/?#%\\ \t\r\n")
}

// validName reports whether s is a possible repository name: letters,
// digits, '.', '-' and '_', but not "." or "..".
func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// GetPull returns pull request number of repo.
func (c *Client) GetPull(ctx context.Context, repo string, number int) (*forge.Pull, error) {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return nil, fmt.Errorf("get pull %s#%d: %w", repo, number, err)
	}
	pr, _, err := c.gh.PullRequests.Get(ctx, owner, name, number)
	if err != nil {
		return nil, fmt.Errorf("get pull %s#%d: %w", repo, number, apiError(err))
	}
	return convertPull(repo, pr), nil
}

// ListOpenPulls returns every open pull request of repo, newest first.
func (c *Client) ListOpenPulls(ctx context.Context, repo string) ([]*forge.Pull, error) {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return nil, fmt.Errorf("list open pulls of %s: %w", repo, err)
	}
	var out []*forge.Pull
	opts := &gh.PullRequestListOptions{State: "open", ListOptions: gh.ListOptions{PerPage: perPage}}
	err = paginate(&opts.ListOptions, func() (*gh.Response, error) {
		pulls, resp, err := c.gh.PullRequests.List(ctx, owner, name, opts)
		for _, pr := range pulls {
			out = append(out, convertPull(repo, pr))
		}
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("list open pulls of %s: %w", repo, err)
	}
	return out, nil
}

// ListPullFiles returns the paths pull request number of repo changes, in
// GitHub's order, each once; for a rename, the new path and then the old.
// GitHub lists at most 3000 files of a pull request.
func (c *Client) ListPullFiles(ctx context.Context, repo string, number int) ([]string, error) {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return nil, fmt.Errorf("list files of pull %s#%d: %w", repo, number, err)
	}
	var out []string
	seen := make(map[string]bool)
	add := func(path string) {
		if path != "" && !seen[path] {
			seen[path] = true
			out = append(out, path)
		}
	}
	opts := &gh.ListOptions{PerPage: perPage}
	err = paginate(opts, func() (*gh.Response, error) {
		files, resp, err := c.gh.PullRequests.ListFiles(ctx, owner, name, number, opts)
		for _, f := range files {
			add(f.GetFilename())
			add(f.GetPreviousFilename())
		}
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("list files of pull %s#%d: %w", repo, number, err)
	}
	return out, nil
}

// IsMember reports whether user is a member of org. GitHub shows private
// memberships only to members of org: for a token that is not one, GitHub
// redirects to the public membership check, which the HTTP client follows,
// so only public members are found.
func (c *Client) IsMember(ctx context.Context, org, user string) (bool, error) {
	if !validOwner(org) || !validLogin(user) {
		return false, fmt.Errorf("check membership of %q in %q: want GitHub logins", user, org)
	}
	ok, _, err := c.gh.Organizations.IsMember(ctx, org, user)
	if err != nil {
		return false, fmt.Errorf("check membership of %s in %s: %w", user, org, apiError(err))
	}
	return ok, nil
}

// IsCollaborator reports whether user is a collaborator of repo, directly,
// through a team or as an organization owner.
func (c *Client) IsCollaborator(ctx context.Context, repo, user string) (bool, error) {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return false, fmt.Errorf("check collaborator %s on %s: %w", user, repo, err)
	}
	if !validLogin(user) {
		return false, fmt.Errorf("check collaborator %q on %s: want a GitHub login", user, repo)
	}
	ok, _, err := c.gh.Repositories.IsCollaborator(ctx, owner, name, user)
	if err != nil {
		return false, fmt.Errorf("check collaborator %s on %s: %w", user, repo, apiError(err))
	}
	return ok, nil
}

// AddLabel adds label to pull request number of repo. GitHub creates a
// label the repository does not have yet.
func (c *Client) AddLabel(ctx context.Context, repo string, number int, label string) error {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return fmt.Errorf("add label %q to %s#%d: %w", label, repo, number, err)
	}
	if _, _, err := c.gh.Issues.AddLabelsToIssue(ctx, owner, name, number, []string{label}); err != nil {
		return fmt.Errorf("add label %q to %s#%d: %w", label, repo, number, apiError(err))
	}
	return nil
}

// RemoveLabel removes label from pull request number of repo; a label
// that is not there is not an error.
func (c *Client) RemoveLabel(ctx context.Context, repo string, number int, label string) error {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return fmt.Errorf("remove label %q from %s#%d: %w", label, repo, number, err)
	}
	// go-github puts the name into the path as it is; escape it so that
	// a label such as "do-not-merge/hold" stays one segment.
	_, err = c.gh.Issues.RemoveLabelForIssue(ctx, owner, name, number, url.PathEscape(label))
	if err != nil && !errors.Is(apiError(err), forge.ErrNotFound) {
		return fmt.Errorf("remove label %q from %s#%d: %w", label, repo, number, apiError(err))
	}
	return nil
}

// CreateComment comments body on pull request number of repo. It is not
// retried after a 5xx: GitHub may have created the comment.
func (c *Client) CreateComment(ctx context.Context, repo string, number int, body string) error {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return fmt.Errorf("comment on %s#%d: %w", repo, number, err)
	}
	if _, _, err := c.gh.Issues.CreateComment(ctx, owner, name, number, &gh.IssueComment{Body: gh.Ptr(body)}); err != nil {
		return fmt.Errorf("comment on %s#%d: %w", repo, number, apiError(err))
	}
	return nil
}

// ListComments returns the comments on pull request number of repo,
// oldest first.
func (c *Client) ListComments(ctx context.Context, repo string, number int) ([]forge.Comment, error) {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return nil, fmt.Errorf("list comments of %s#%d: %w", repo, number, err)
	}
	var out []forge.Comment
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: perPage}}
	err = paginate(&opts.ListOptions, func() (*gh.Response, error) {
		comments, resp, err := c.gh.Issues.ListComments(ctx, owner, name, number, opts)
		for _, cm := range comments {
			out = append(out, forge.Comment{ID: cm.GetID(), Author: cm.GetUser().GetLogin(), Body: cm.GetBody()})
		}
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("list comments of %s#%d: %w", repo, number, err)
	}
	return out, nil
}

// CreateStatus sets s on sha of repo. Its description is shortened to
// MaxDescription characters. The request is retried after a 5xx or a
// connection error, since setting the same status twice is harmless. A
// commit GitHub does not know fails with forge.ErrUnprocessable.
func (c *Client) CreateStatus(ctx context.Context, repo, sha string, s forge.Status) error {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return fmt.Errorf("create status %s@%s %s: %w", repo, sha, s.Context, err)
	}
	status := gh.RepoStatus{
		State:       gh.Ptr(s.State),
		Description: gh.Ptr(Truncate(s.Description, MaxDescription)),
		Context:     gh.Ptr(s.Context),
	}
	if s.TargetURL != "" {
		status.TargetURL = gh.Ptr(s.TargetURL)
	}
	if _, _, err := c.gh.Repositories.CreateStatus(transport.WithRetryable(ctx), owner, name, sha, status); err != nil {
		return fmt.Errorf("create status %s@%s %s: %w", repo, sha, s.Context, apiError(err))
	}
	return nil
}

// ListStatuses returns the newest status of each context on sha of repo,
// from GitHub's combined status.
func (c *Client) ListStatuses(ctx context.Context, repo, sha string) ([]forge.Status, error) {
	owner, name, err := ParseRepo(repo)
	if err != nil {
		return nil, fmt.Errorf("list statuses of %s@%s: %w", repo, sha, err)
	}
	var out []forge.Status
	opts := &gh.ListOptions{PerPage: perPage}
	err = paginate(opts, func() (*gh.Response, error) {
		combined, resp, err := c.gh.Repositories.GetCombinedStatus(ctx, owner, name, sha, opts)
		for _, st := range combined.GetStatuses() {
			out = append(out, forge.Status{Context: st.GetContext(), State: st.GetState(),
				Description: st.GetDescription(), TargetURL: st.GetTargetURL()})
		}
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("list statuses of %s@%s: %w", repo, sha, err)
	}
	return out, nil
}

// BotLogin returns the login lockstep acts as: Options.BotLogin, or the
// authenticated user's login, or "<slug>[bot]" for a GitHub App, asked
// once and remembered.
func (c *Client) BotLogin(ctx context.Context) (string, error) {
	c.mu.Lock()
	login := c.botLogin
	c.mu.Unlock()
	if login != "" {
		return login, nil
	}
	user, _, err := c.gh.Users.Get(ctx, "")
	switch {
	case err == nil:
		login = user.GetLogin()
	case statusOf(err) == http.StatusForbidden:
		// An App installation token may not read /user; the App itself
		// is at /app, which a transport.AppTokenSource answers with the
		// App's JWT.
		app, _, appErr := c.gh.Apps.Get(ctx, "")
		if appErr != nil {
			return "", fmt.Errorf("find lockstep's GitHub login: GET /user: %w; GET /app: %w; set the bot login in the configuration",
				apiError(err), apiError(appErr))
		}
		if app.GetSlug() != "" {
			login = app.GetSlug() + "[bot]"
		}
	default:
		return "", fmt.Errorf("find lockstep's GitHub login: %w", apiError(err))
	}
	if login == "" {
		return "", errors.New("find lockstep's GitHub login: GitHub's answer has no login; set the bot login in the configuration")
	}
	c.mu.Lock()
	c.botLogin = login
	c.mu.Unlock()
	return login, nil
}

// Truncate shortens s to at most n characters (runes), ending a shortened
// string with "…". Invalid UTF-8 is replaced first, so the result is
// always valid.
func Truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n-1]) + "…"
}

// paginate calls list for page after page, advancing opts.Page, until
// GitHub's Link header names no next page.
func paginate(opts *gh.ListOptions, list func() (*gh.Response, error)) error {
	opts.Page = 1
	for range maxPages {
		resp, err := list()
		if err != nil {
			return apiError(err)
		}
		if resp == nil || resp.NextPage == 0 {
			return nil
		}
		if resp.NextPage <= opts.Page {
			return fmt.Errorf("page %d links to page %d as the next one", opts.Page, resp.NextPage)
		}
		opts.Page = resp.NextPage
	}
	return fmt.Errorf("more than %d pages", maxPages)
}

// statusOf returns the HTTP status of a GitHub error response, or 0.
func statusOf(err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

// Error is an error response from GitHub. It unwraps to go-github's error
// and, for 404 and 410, to forge.ErrNotFound, for 422 to
// forge.ErrUnprocessable.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Message is GitHub's message, with the details of any field errors.
	Message  string
	sentinel error
	err      error
}

// Error gives the status and GitHub's message.
func (e *Error) Error() string {
	prefix := ""
	if e.sentinel != nil {
		prefix = e.sentinel.Error() + ": "
	}
	if e.Message == "" {
		return fmt.Sprintf("%sHTTP %d", prefix, e.Status)
	}
	return fmt.Sprintf("%sHTTP %d: %s", prefix, e.Status, e.Message)
}

// Unwrap returns the forge sentinel, if any, and go-github's error.
func (e *Error) Unwrap() []error {
	if e.sentinel == nil {
		return []error{e.err}
	}
	return []error{e.sentinel, e.err}
}

// apiError maps go-github's error responses to an *Error; other errors
// (connection errors, rate limits the transport gave up on) are returned
// as they are.
func apiError(err error) error {
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	var er *gh.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil {
		return err
	}
	e := &Error{Status: er.Response.StatusCode, Message: er.Message, err: err}
	var details []string
	for _, fe := range er.Errors {
		switch {
		case fe.Message != "":
			details = append(details, fe.Message)
		case fe.Field != "":
			details = append(details, fe.Field+" "+fe.Code)
		}
	}
	if len(details) > 0 {
		e.Message += " (" + strings.Join(details, "; ") + ")"
	}
	switch e.Status {
	case http.StatusNotFound, http.StatusGone:
		e.sentinel = forge.ErrNotFound
	case http.StatusUnprocessableEntity:
		e.sentinel = forge.ErrUnprocessable
	}
	return e
}

// convertPull converts go-github's pull request of repo, keeping repo as
// the caller spelled it so that keys built from it stay stable.
func convertPull(repo string, pr *gh.PullRequest) *forge.Pull {
	p := &forge.Pull{
		Repo:         repo,
		Number:       pr.GetNumber(),
		Title:        pr.GetTitle(),
		State:        pr.GetState(),
		Draft:        pr.GetDraft(),
		Author:       pr.GetUser().GetLogin(),
		HeadSHA:      pr.GetHead().GetSHA(),
		HeadRef:      pr.GetHead().GetRef(),
		BaseRef:      pr.GetBase().GetRef(),
		BaseSHA:      pr.GetBase().GetSHA(),
		UpdatedAt:    pr.GetUpdatedAt().Time,
		HeadCloneURL: pr.GetHead().GetRepo().GetCloneURL(),
	}
	if pr.Mergeable != nil {
		m := *pr.Mergeable
		p.Mergeable = &m
	}
	for _, l := range pr.Labels {
		p.Labels = append(p.Labels, l.GetName())
	}
	return p
}
