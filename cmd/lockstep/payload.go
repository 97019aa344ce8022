package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v89/github"
)

// pullSpec says which pull request a built payload is about: pull request
// Number of Repo, from branch Head onto branch Base of the local git
// repository Dir, opened by User.
type pullSpec struct {
	Dir    string // a local git repository
	Repo   string // owner/name, as lockstep's configuration names it
	Number int
	Head   string // a ref of Dir; its branch name is the head ref
	Base   string // a branch of Dir
	User   string
	Action string
	// Now stamps the payload's times.
	Now time.Time
}

// pullRequestActions are the pull_request actions hook send builds.
var pullRequestActions = []string{"opened", "synchronize", "reopened", "closed"}

// buildPullRequest returns a pull_request event payload for s, built from
// the local repository the way GitHub builds it from the hosted one: the
// real head and base SHAs and branch names, the head commit's subject and
// body as title and description, and the commit and change counts of the
// head against its merge base. Its shape is GitHub's (the fields it sets
// are those of testdata/github-webhooks/pull_request), so it decodes with
// go-github like a delivery from GitHub.
func buildPullRequest(ctx context.Context, s pullSpec) ([]byte, error) {
	if !slices.Contains(pullRequestActions, s.Action) {
		return nil, fmt.Errorf("hook send builds pull_request actions %s, not %q", strings.Join(pullRequestActions, ", "), s.Action)
	}
	owner, name, err := splitRepo(s.Repo)
	if err != nil {
		return nil, err
	}
	g := localGit(s.Dir)
	if _, err := g.run(ctx, "rev-parse", "--git-dir"); err != nil {
		abs, _ := filepath.Abs(s.Dir)
		return nil, fmt.Errorf("--git: %s is not a git repository: give the repository the configuration's clone_url names", abs)
	}
	head, err := g.commit(ctx, s.Head)
	if err != nil {
		return nil, fmt.Errorf("--head: %w", err)
	}
	headRef, err := g.branchName(ctx, s.Head)
	if err != nil {
		return nil, fmt.Errorf("--head: %w", err)
	}
	if _, err := g.run(ctx, "rev-parse", "--verify", "--quiet", "refs/heads/"+s.Base); err != nil {
		return nil, fmt.Errorf("--base: %s has no branch %q: name the pull request's base branch with --base", s.Dir, s.Base)
	}
	base, err := g.commit(ctx, "refs/heads/"+s.Base)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	msg, err := g.run(ctx, "log", "-1", "--format=%s%x00%b", head)
	if err != nil {
		return nil, err
	}
	title, body, _ := strings.Cut(strings.TrimSpace(msg), "\x00")
	count, err := g.run(ctx, "rev-list", "--count", base+".."+head)
	if err != nil {
		return nil, err
	}
	commits, _ := strconv.Atoi(strings.TrimSpace(count))
	numstat, err := g.run(ctx, "diff", "--numstat", base+"..."+head)
	if err != nil {
		return nil, err
	}
	var additions, deletions, changed int
	for _, line := range strings.Split(strings.TrimSpace(numstat), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		changed++
		a, _ := strconv.Atoi(f[0]) // "-" for binary files
		d, _ := strconv.Atoi(f[1])
		additions += a
		deletions += d
	}

	// GitHub writes whole seconds; lockstep orders a pull request's
	// states by updated_at, and two payloads built within one second
	// (opened, then synchronize) must still be ordered.
	now := &github.Timestamp{Time: s.Now.UTC()}
	api := "https://api.github.com/repos/" + s.Repo
	web := "https://github.com/" + s.Repo
	repo := ghRepository(owner, name)
	user := ghUser(s.User)
	state := "open"
	var closedAt *github.Timestamp
	if s.Action == "closed" {
		state, closedAt = "closed", now
	}
	n := strconv.Itoa(s.Number)
	pr := &github.PullRequest{
		ID: github.Ptr(id64(s.Repo, n)), Number: github.Ptr(s.Number), State: github.Ptr(state),
		Locked: github.Ptr(false), Title: github.Ptr(title), Body: github.Ptr(strings.TrimSpace(body)),
		CreatedAt: now, UpdatedAt: now, ClosedAt: closedAt,
		User: user, Draft: github.Ptr(false), Merged: github.Ptr(false), MergeableState: github.Ptr("unknown"),
		Labels: []*github.Label{}, Assignees: []*github.User{}, RequestedReviewers: []*github.User{},
		AuthorAssociation: github.Ptr("CONTRIBUTOR"),
		Comments:          github.Ptr(0), ReviewComments: github.Ptr(0), MaintainerCanModify: github.Ptr(false),
		Commits: github.Ptr(commits), Additions: github.Ptr(additions), Deletions: github.Ptr(deletions), ChangedFiles: github.Ptr(changed),
		URL: github.Ptr(api + "/pulls/" + n), HTMLURL: github.Ptr(web + "/pull/" + n),
		DiffURL: github.Ptr(web + "/pull/" + n + ".diff"), PatchURL: github.Ptr(web + "/pull/" + n + ".patch"),
		IssueURL: github.Ptr(api + "/issues/" + n), CommentsURL: github.Ptr(api + "/issues/" + n + "/comments"),
		CommitsURL: github.Ptr(api + "/pulls/" + n + "/commits"), StatusesURL: github.Ptr(api + "/statuses/" + head),
		ReviewCommentsURL: github.Ptr(api + "/pulls/" + n + "/comments"), ReviewCommentURL: github.Ptr(api + "/pulls/comments{/number}"),
		Head: &github.PullRequestBranch{Label: github.Ptr(owner + ":" + headRef), Ref: github.Ptr(headRef), SHA: github.Ptr(head), User: ghUser(owner), Repo: repo},
		Base: &github.PullRequestBranch{Label: github.Ptr(owner + ":" + s.Base), Ref: github.Ptr(s.Base), SHA: github.Ptr(base), User: ghUser(owner), Repo: repo},
	}
	ev := &github.PullRequestEvent{
		Action: github.Ptr(s.Action), Number: github.Ptr(s.Number), PullRequest: pr,
		Repo: repo, Sender: user,
	}
	if s.Action == "synchronize" {
		ev.After = github.Ptr(head)
		// GitHub sends the head before the push; the first parent is
		// what it was for a plain push.
		if before, err := g.commit(ctx, head+"^"); err == nil {
			ev.Before = github.Ptr(before)
		}
	}
	return json.Marshal(ev)
}

// commentSpec says which comment a built issue_comment payload carries.
type commentSpec struct {
	Repo   string
	Number int
	User   string
	Body   string
	Now    time.Time
}

// buildIssueComment returns an issue_comment "created" event payload: a
// new comment by s.User on pull request s.Number (an issue with GitHub's
// pull_request links, as GitHub sends for comments on pull requests), with
// a fresh comment id, so that sending the same text twice is two comments,
// as it is on GitHub.
func buildIssueComment(s commentSpec) ([]byte, error) {
	owner, name, err := splitRepo(s.Repo)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(s.Body) == "" {
		return nil, errors.New("--comment is required for an issue_comment: the comment's text, such as '/test unit'")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])                                    // never fails (crypto/rand)
	commentID := int64(binary.BigEndian.Uint64(b[:])>>12) + 1 // positive, and exact in JSON numbers (< 2^53)
	now := &github.Timestamp{Time: s.Now.UTC()}
	api := "https://api.github.com/repos/" + s.Repo
	web := "https://github.com/" + s.Repo
	n := strconv.Itoa(s.Number)
	c := strconv.FormatInt(commentID, 10)
	user := ghUser(s.User)
	ev := &github.IssueCommentEvent{
		Action: github.Ptr("created"),
		Issue: &github.Issue{
			ID: github.Ptr(id64(s.Repo, "issue", n)), Number: github.Ptr(s.Number), State: github.Ptr("open"),
			Locked: github.Ptr(false), Title: github.Ptr("Pull request #" + n),
			User: user, Labels: []*github.Label{}, Assignees: []*github.User{}, Comments: github.Ptr(1),
			CreatedAt: now, UpdatedAt: now, AuthorAssociation: github.Ptr("CONTRIBUTOR"),
			URL: github.Ptr(api + "/issues/" + n), HTMLURL: github.Ptr(web + "/pull/" + n),
			RepositoryURL: github.Ptr(api), CommentsURL: github.Ptr(api + "/issues/" + n + "/comments"),
			EventsURL: github.Ptr(api + "/issues/" + n + "/events"), LabelsURL: github.Ptr(api + "/issues/" + n + "/labels{/name}"),
			PullRequestLinks: &github.PullRequestLinks{
				URL: github.Ptr(api + "/pulls/" + n), HTMLURL: github.Ptr(web + "/pull/" + n),
				DiffURL: github.Ptr(web + "/pull/" + n + ".diff"), PatchURL: github.Ptr(web + "/pull/" + n + ".patch"),
			},
		},
		Comment: &github.IssueComment{
			ID: github.Ptr(commentID), Body: github.Ptr(s.Body), User: user,
			CreatedAt: now, UpdatedAt: now, AuthorAssociation: github.Ptr("CONTRIBUTOR"),
			URL: github.Ptr(api + "/issues/comments/" + c), HTMLURL: github.Ptr(web + "/pull/" + n + "#issuecomment-" + c),
			IssueURL: github.Ptr(api + "/issues/" + n),
		},
		Repo:   ghRepository(owner, name),
		Sender: user,
	}
	return json.Marshal(ev)
}

func splitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--repo %q: give the repository as OWNER/NAME, as lockstep's configuration names it", repo)
	}
	return owner, name, nil
}

// ghRepository is repository owner/name as webhook payloads show it.
func ghRepository(owner, name string) *github.Repository {
	full := owner + "/" + name
	api := "https://api.github.com/repos/" + full
	web := "https://github.com/" + full
	return &github.Repository{
		ID: github.Ptr(id64(full)), Name: github.Ptr(name), FullName: github.Ptr(full),
		Owner: ghUser(owner), Private: github.Ptr(false), Fork: github.Ptr(false),
		HTMLURL: github.Ptr(web), URL: github.Ptr(api),
		CloneURL: github.Ptr(web + ".git"), GitURL: github.Ptr("git://github.com/" + full + ".git"),
		SSHURL: github.Ptr("git@github.com:" + full + ".git"), DefaultBranch: github.Ptr("main"),
		PullsURL: github.Ptr(api + "/pulls{/number}"), IssuesURL: github.Ptr(api + "/issues{/number}"),
	}
}

// ghUser is user login as webhook payloads show it.
func ghUser(login string) *github.User {
	return &github.User{
		Login: github.Ptr(login), ID: github.Ptr(id64("user", login)), Type: github.Ptr("User"), SiteAdmin: github.Ptr(false),
		URL: github.Ptr("https://api.github.com/users/" + login), HTMLURL: github.Ptr("https://github.com/" + login),
		AvatarURL: github.Ptr("https://avatars.githubusercontent.com/u/" + strconv.FormatInt(id64("user", login), 10) + "?v=4"),
	}
}

// id64 is a stable positive id for what parts name, below 2^31 as
// GitHub's older ids are.
func id64(parts ...string) int64 {
	h := fnv.New32a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(h.Sum32()>>1) + 1
}

// localGit runs git in one repository.
type localGit string

func (g localGit) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", string(g)}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), g, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// commit returns the SHA of the commit ref names.
func (g localGit) commit(ctx context.Context, ref string) (string, error) {
	out, err := g.run(ctx, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("%s has no commit %q", g, ref)
	}
	return strings.TrimSpace(out), nil
}

// branchName returns the branch ref names (HEAD: the checked-out branch),
// the pull request's head ref.
func (g localGit) branchName(ctx context.Context, ref string) (string, error) {
	out, err := g.run(ctx, "rev-parse", "--symbolic-full-name", ref)
	if b, ok := strings.CutPrefix(strings.TrimSpace(out), "refs/heads/"); err == nil && ok {
		return b, nil
	}
	return "", fmt.Errorf("%q in %s is not a branch: a pull request's head is a branch; name it with --head", ref, g)
}
