package transport

import "strings"

// maxRouteSegments bounds the depth of a route; deeper paths end in
// "{rest}".
const maxRouteSegments = 12

// paramKind says what follows a literal path word.
type paramKind int

const (
	// noParam: the next segment is another literal word.
	noParam paramKind = iota
	// always: the next segment is a parameter, whatever it looks like.
	always
	// numeric: the next segment is a parameter when it is all digits and
	// a literal word otherwise (issues/12 but issues/comments).
	numeric
	// rest: every remaining segment together is one parameter (file
	// paths, git refs).
	rest
)

// word reports whether s is a literal word of GitHub's REST API and, if
// so, what follows it. Words outside this vocabulary become "{id}", which
// keeps the number of routes bounded whatever paths are requested.
func word(s string) (known bool, param string, kind paramKind) {
	switch s {
	case "repos":
		return true, "owner", always
	case "orgs":
		return true, "org", always
	case "users", "members", "collaborators", "memberships", "assignees", "followers", "following":
		return true, "username", always
	case "teams":
		return true, "team_slug", always
	case "installations":
		return true, "installation_id", numeric
	case "repositories":
		return true, "repository_id", numeric
	case "issues", "pulls":
		return true, "number", numeric
	case "comments":
		return true, "comment_id", numeric
	case "reviews":
		return true, "review_id", numeric
	case "events":
		return true, "event_id", numeric
	case "statuses", "commits", "trees", "blobs":
		return true, "sha", always
	case "tags":
		return true, "tag", always
	case "check-runs":
		return true, "check_run_id", numeric
	case "check-suites":
		return true, "check_suite_id", numeric
	case "labels":
		return true, "name", always
	case "milestones":
		return true, "milestone_number", numeric
	case "hooks":
		return true, "hook_id", numeric
	case "releases":
		return true, "release_id", numeric
	case "assets":
		return true, "asset_id", numeric
	case "branches":
		return true, "branch", always
	case "contents":
		return true, "path", rest
	case "refs", "ref", "matching-refs", "tarball", "zipball":
		return true, "ref", rest
	case "compare":
		return true, "basehead", rest
	case "deployments":
		return true, "deployment_id", numeric
	case "environments":
		return true, "environment_name", always
	case "runs":
		return true, "run_id", numeric
	case "jobs":
		return true, "job_id", numeric
	case "workflows":
		return true, "workflow_id", always
	case "artifacts":
		return true, "artifact_id", numeric
	case "reactions":
		return true, "reaction_id", numeric
	case "invitations":
		return true, "invitation_id", numeric
	case "threads":
		return true, "thread_id", numeric
	case "keys":
		return true, "key_id", numeric
	case "app", "installation", "access_tokens", "user", "search", "code", "graphql",
		"rate_limit", "git", "status", "merge", "files", "requested_reviewers", "readme",
		"protection", "required_status_checks", "contexts", "permission", "latest",
		"actions", "logs", "rerun", "rerun-failed-jobs", "cancel", "timeline", "lock",
		"dispatches", "forks", "languages", "topics", "contributors", "notifications",
		"subscription", "public_members", "outside_collaborators", "meta", "emojis",
		"octocat", "zen", "review", "update-branch", "replies", "check-suite-preferences",
		"rerequest", "annotations", "codeowners", "errors", "pages", "stats", "traffic":
		return true, "", noParam
	}
	return false, "", noParam
}

// Route returns the template of a GitHub API path, with every owner,
// repository, number, SHA, ref and name replaced by a placeholder:
//
//	/repos/kubernetes/kubernetes/issues/12/comments → /repos/{owner}/{repo}/issues/{number}/comments
//	/repos/o/r/statuses/0a1b…                      → /repos/{owner}/{repo}/statuses/{sha}
//
// Pass the escaped path (url.URL.EscapedPath) so that an escaped slash in a
// branch name stays inside its segment. A GitHub Enterprise prefix (/api/v3,
// /api) is dropped. Routes are built from a fixed vocabulary and at most
// maxRouteSegments segments, so they are safe as metric labels.
func Route(path string) string {
	path = trimEnterprisePrefix(path)
	path = strings.Trim(path, "/")
	if path == "" {
		return "/"
	}
	segs := strings.Split(path, "/")
	var b strings.Builder
	expect, kind := "", noParam
	for i, s := range segs {
		if i == maxRouteSegments {
			b.WriteString("/{rest}")
			break
		}
		b.WriteByte('/')
		if kind == rest {
			b.WriteString("{" + expect + "}")
			break
		}
		if kind == always || (kind == numeric && isDigits(s)) {
			b.WriteString("{" + expect + "}")
			if expect == "owner" {
				expect, kind = "repo", always // repos/{owner}/{repo}
			} else {
				expect, kind = "", noParam
			}
			continue
		}
		known, param, k := word(s)
		if !known {
			b.WriteString("{id}")
			expect, kind = "", noParam
			continue
		}
		b.WriteString(s)
		expect, kind = param, k
	}
	return b.String()
}

// trimEnterprisePrefix drops the path prefix of a GitHub Enterprise Server
// API (/api/v3 for REST, /api for GraphQL).
func trimEnterprisePrefix(path string) string {
	for _, prefix := range []string{"/api/v3", "/api"} {
		if rest, ok := strings.CutPrefix(path, prefix); ok && (rest == "" || rest[0] == '/') {
			return rest
		}
	}
	return path
}

// isDigits reports whether s is a non-empty string of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
