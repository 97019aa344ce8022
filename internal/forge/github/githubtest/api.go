package githubtest

import (
	"encoding/json"
	"hash/fnv"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	gh "github.com/google/go-github/v89/github"
)

// Limits GitHub enforces that the Server enforces too.
const (
	maxDescription     = 140  // characters of a status description
	maxStatusesPerCtx  = 1000 // statuses per SHA and context
	maxPullFiles       = 3000 // files listed for a pull request
	defaultPerPage     = 30
	maxPerPage         = 100
	docsCreateStatus   = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
	docsCreateComment  = "https://docs.github.com/rest/issues/comments#create-an-issue-comment"
	docsAddLabels      = "https://docs.github.com/rest/issues/labels#add-labels-to-an-issue"
	docsListPulls      = "https://docs.github.com/rest/pulls/pulls#list-pull-requests"
	docsCombinedStatus = "https://docs.github.com/rest/commits/statuses#get-the-combined-status-for-a-specific-reference"
	docsGetUser        = "https://docs.github.com/rest/users/users#get-the-authenticated-user"
)

// route answers q from the Server's state. s.mu must be held.
func (s *Server) route(q *request) answer {
	segs, ok := segments(q.r.URL)
	if !ok {
		return unexpected()
	}
	m := q.r.Method
	switch {
	case len(segs) == 1 && segs[0] == "user" && m == http.MethodGet:
		return s.getUser(q)
	case len(segs) == 1 && segs[0] == "app" && m == http.MethodGet:
		return s.getApp()
	case len(segs) == 4 && segs[0] == "orgs" && segs[2] == "members" && m == http.MethodGet:
		return s.isMember(segs[1], segs[3])
	case len(segs) >= 3 && segs[0] == "repos":
		return s.routeRepo(q, segs[1]+"/"+segs[2], segs[3:])
	}
	return unexpected()
}

// routeRepo answers a request under /repos/{owner}/{repo}. s.mu must be
// held.
func (s *Server) routeRepo(q *request, repo string, segs []string) answer {
	m := q.r.Method
	var h func(rs *repoState) answer
	switch {
	case len(segs) == 1 && segs[0] == "pulls" && m == http.MethodGet:
		h = func(rs *repoState) answer { return s.listPulls(q, rs) }
	case len(segs) == 2 && segs[0] == "pulls" && m == http.MethodGet:
		h = s.withPull(segs[1], func(rs *repoState, p *Pull) answer { return jsonAnswer(http.StatusOK, s.pullJSON(q, rs, p, true)) })
	case len(segs) == 3 && segs[0] == "pulls" && segs[2] == "files" && m == http.MethodGet:
		h = s.withPull(segs[1], func(rs *repoState, p *Pull) answer { return s.listFiles(q, rs, p) })
	case len(segs) == 3 && segs[0] == "issues" && segs[2] == "comments" && m == http.MethodGet:
		h = s.withPull(segs[1], func(rs *repoState, p *Pull) answer { return s.listComments(q, rs, p) })
	case len(segs) == 3 && segs[0] == "issues" && segs[2] == "comments" && m == http.MethodPost:
		h = s.withPull(segs[1], func(rs *repoState, p *Pull) answer { return s.createComment(q, rs, p) })
	case len(segs) == 3 && segs[0] == "issues" && segs[2] == "labels" && m == http.MethodGet:
		h = s.withPull(segs[1], func(rs *repoState, p *Pull) answer { return jsonAnswer(http.StatusOK, s.labelsJSON(rs, p.Labels)) })
	case len(segs) == 3 && segs[0] == "issues" && segs[2] == "labels" && m == http.MethodPost:
		h = s.withPull(segs[1], func(rs *repoState, p *Pull) answer { return s.addLabels(q, rs, p) })
	case len(segs) == 4 && segs[0] == "issues" && segs[2] == "labels" && m == http.MethodDelete:
		h = s.withPull(segs[1], func(rs *repoState, p *Pull) answer { return s.removeLabel(q, rs, p, segs[3]) })
	case len(segs) == 2 && segs[0] == "collaborators" && m == http.MethodGet:
		h = func(rs *repoState) answer {
			if rs.collaborators[strings.ToLower(segs[1])] {
				return noContent()
			}
			return notFound()
		}
	case len(segs) == 3 && segs[0] == "commits" && segs[2] == "status" && m == http.MethodGet:
		h = func(rs *repoState) answer { return s.combinedStatus(q, rs, segs[1]) }
	case len(segs) == 3 && segs[0] == "commits" && segs[2] == "statuses" && m == http.MethodGet:
		h = func(rs *repoState) answer { return s.listStatuses(q, rs, segs[1]) }
	case len(segs) == 2 && segs[0] == "statuses" && m == http.MethodPost:
		h = func(rs *repoState) answer { return s.createStatus(q, rs, segs[1]) }
	default:
		return unexpected()
	}
	rs := s.repoLocked(repo, false)
	if rs == nil {
		return notFound()
	}
	return h(rs)
}

// withPull returns a handler for the pull numbered by the path segment
// number; a missing pull is a 404 and a malformed number an unexpected
// path.
func (s *Server) withPull(number string, h func(*repoState, *Pull) answer) func(*repoState) answer {
	return func(rs *repoState) answer {
		n, err := strconv.Atoi(number)
		if err != nil || n <= 0 {
			return unexpected()
		}
		p := rs.pulls[n]
		if p == nil {
			return notFound()
		}
		return h(rs, p)
	}
}

// unexpected is the answer for an endpoint the Server does not know.
func unexpected() answer {
	a := notFound()
	a.unexpected = true
	return a
}

// segments splits u's API path into unescaped segments.
func segments(u *url.URL) ([]string, bool) {
	p := u.EscapedPath()
	if rest, ok := strings.CutPrefix(p, EnterprisePrefix); ok && (rest == "" || rest[0] == '/') {
		p = rest
	}
	raw := strings.Split(strings.Trim(p, "/"), "/")
	out := make([]string, len(raw))
	for i, r := range raw {
		v, err := url.PathUnescape(r)
		if err != nil || v == "" {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// getUser answers GET /user.
func (s *Server) getUser(q *request) answer {
	switch {
	case q.r.Header.Get("Authorization") == "":
		return errorAnswer(http.StatusUnauthorized, "Requires authentication", docsGetUser)
	case s.appSlug != "":
		return errorAnswer(http.StatusForbidden, "Resource not accessible by integration", docsGetUser)
	}
	u := s.userJSON(s.user)
	u.Name = gh.Ptr(s.user)
	return jsonAnswer(http.StatusOK, u)
}

// getApp answers GET /app.
func (s *Server) getApp() answer {
	if s.appSlug == "" {
		return errorAnswer(http.StatusUnauthorized, "A JSON web token could not be decoded", "https://docs.github.com/rest")
	}
	return jsonAnswer(http.StatusOK, &gh.App{
		ID:      gh.Ptr(numericID(s.appSlug)),
		Slug:    gh.Ptr(s.appSlug),
		NodeID:  gh.Ptr("A_" + s.appSlug),
		Name:    gh.Ptr(s.appSlug),
		Owner:   s.userJSON("lockstep-ci"),
		HTMLURL: gh.Ptr("https://github.com/apps/" + s.appSlug),
	})
}

// isMember answers GET /orgs/{org}/members/{user}: 204 for a member, 404
// otherwise (also for an unknown org), as GitHub answers a requester who
// is a member of the organization.
func (s *Server) isMember(org, user string) answer {
	if s.orgs[strings.ToLower(org)][strings.ToLower(user)] {
		return noContent()
	}
	return errorAnswer(http.StatusNotFound, "User does not exist or is not a member of the organization", "https://docs.github.com/rest/orgs/members#check-organization-membership-for-a-user")
}

// listPulls answers GET /repos/{o}/{r}/pulls.
func (s *Server) listPulls(q *request, rs *repoState) answer {
	state := q.query.Get("state")
	if state == "" {
		state = "open"
	}
	if state != "open" && state != "closed" && state != "all" {
		return validationFailed("PullRequest", "state", "state is not included in the list", docsListPulls)
	}
	var pulls []*Pull
	for _, p := range rs.pulls {
		if state == "all" || p.State == state {
			pulls = append(pulls, p)
		}
	}
	asc := q.query.Get("direction") == "asc"
	sort.Slice(pulls, func(i, j int) bool {
		if asc {
			return pulls[i].Number < pulls[j].Number
		}
		return pulls[i].Number > pulls[j].Number
	})
	lo, hi, link := paginate(q, len(pulls))
	out := make([]*gh.PullRequest, 0, hi-lo)
	for _, p := range pulls[lo:hi] {
		out = append(out, s.pullJSON(q, rs, p, false))
	}
	a := jsonAnswer(http.StatusOK, out)
	setLink(a, link)
	return a
}

// listFiles answers GET /repos/{o}/{r}/pulls/{n}/files.
func (s *Server) listFiles(q *request, rs *repoState, p *Pull) answer {
	files := p.Files
	if len(files) > maxPullFiles {
		files = files[:maxPullFiles]
	}
	lo, hi, link := paginate(q, len(files))
	out := make([]*gh.CommitFile, 0, hi-lo)
	for _, f := range files[lo:hi] {
		status := "modified"
		cf := &gh.CommitFile{
			SHA:         gh.Ptr(fakeSHA(f.Name)),
			Filename:    gh.Ptr(f.Name),
			Additions:   gh.Ptr(1),
			Deletions:   gh.Ptr(1),
			Changes:     gh.Ptr(2),
			BlobURL:     gh.Ptr("https://github.com/" + rs.fullName() + "/blob/" + p.HeadSHA + "/" + f.Name),
			RawURL:      gh.Ptr("https://github.com/" + rs.fullName() + "/raw/" + p.HeadSHA + "/" + f.Name),
			ContentsURL: gh.Ptr(s.apiURL(q, "/repos/"+rs.fullName()+"/contents/"+f.Name+"?ref="+p.HeadSHA)),
			Patch:       gh.Ptr("@@ -1 +1 @@\n-old\n+new"),
		}
		if f.PreviousName != "" {
			status = "renamed"
			cf.PreviousFilename = gh.Ptr(f.PreviousName)
		}
		cf.Status = gh.Ptr(status)
		out = append(out, cf)
	}
	a := jsonAnswer(http.StatusOK, out)
	setLink(a, link)
	return a
}

// listComments answers GET /repos/{o}/{r}/issues/{n}/comments.
func (s *Server) listComments(q *request, rs *repoState, p *Pull) answer {
	comments := rs.comments[p.Number]
	lo, hi, link := paginate(q, len(comments))
	out := make([]*gh.IssueComment, 0, hi-lo)
	for _, c := range comments[lo:hi] {
		out = append(out, s.commentJSON(q, rs, p.Number, c))
	}
	a := jsonAnswer(http.StatusOK, out)
	setLink(a, link)
	return a
}

// createComment answers POST /repos/{o}/{r}/issues/{n}/comments.
func (s *Server) createComment(q *request, rs *repoState, p *Pull) answer {
	var in struct {
		Body *string `json:"body"`
	}
	if err := json.Unmarshal(q.body, &in); err != nil {
		return errorAnswer(http.StatusBadRequest, "Problems parsing JSON", docsCreateComment)
	}
	if in.Body == nil || *in.Body == "" {
		return validationFailed("IssueComment", "body", "body wasn't supplied", docsCreateComment)
	}
	if utf8.RuneCountInString(*in.Body) > 65536 {
		return validationFailed("IssueComment", "body", "body is too long (maximum is 65536 characters)", docsCreateComment)
	}
	id := s.addCommentLocked(rs, p.Number, s.actorLocked(), *in.Body)
	c := rs.comments[p.Number][len(rs.comments[p.Number])-1]
	a := jsonAnswer(http.StatusCreated, s.commentJSON(q, rs, p.Number, c))
	a.header.Set("Location", s.apiURL(q, "/repos/"+rs.fullName()+"/issues/comments/"+strconv.FormatInt(id, 10)))
	return a
}

// addLabels answers POST /repos/{o}/{r}/issues/{n}/labels, whose body is
// {"labels": [...]} or a bare array of names; both are GitHub's.
func (s *Server) addLabels(q *request, rs *repoState, p *Pull) answer {
	var names []string
	if err := json.Unmarshal(q.body, &names); err != nil {
		var in struct {
			Labels *[]string `json:"labels"`
		}
		dec := json.NewDecoder(strings.NewReader(string(q.body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || in.Labels == nil {
			if !json.Valid(q.body) {
				return errorAnswer(http.StatusBadRequest, "Problems parsing JSON", docsAddLabels)
			}
			return errorAnswer(http.StatusUnprocessableEntity, `Invalid request.

For 'links/0/schema', {} is not an array.`, docsAddLabels)
		}
		names = *in.Labels
	}
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			return validationFailed("Label", "name", "name can't be blank", docsAddLabels)
		}
		if !hasFold(p.Labels, n) {
			p.Labels = append(p.Labels, n)
			p.UpdatedAt = q.now
		}
	}
	return jsonAnswer(http.StatusOK, s.labelsJSON(rs, p.Labels))
}

// removeLabel answers DELETE /repos/{o}/{r}/issues/{n}/labels/{name}.
func (s *Server) removeLabel(q *request, rs *repoState, p *Pull, name string) answer {
	for i, l := range p.Labels {
		if strings.EqualFold(l, name) {
			p.Labels = append(p.Labels[:i:i], p.Labels[i+1:]...)
			p.UpdatedAt = q.now
			return jsonAnswer(http.StatusOK, s.labelsJSON(rs, p.Labels))
		}
	}
	return errorAnswer(http.StatusNotFound, "Label does not exist", "https://docs.github.com/rest/issues/labels#remove-a-label-from-an-issue")
}

// createStatus answers POST /repos/{o}/{r}/statuses/{sha}.
func (s *Server) createStatus(q *request, rs *repoState, sha string) answer {
	var in struct {
		State       *string `json:"state"`
		TargetURL   *string `json:"target_url"`
		Description *string `json:"description"`
		Context     *string `json:"context"`
	}
	if err := json.Unmarshal(q.body, &in); err != nil {
		return errorAnswer(http.StatusBadRequest, "Problems parsing JSON", docsCreateStatus)
	}
	switch {
	case in.State == nil:
		return validationFailed("Status", "state", "state wasn't supplied", docsCreateStatus)
	case *in.State != "pending" && *in.State != "success" && *in.State != "failure" && *in.State != "error":
		return validationFailed("Status", "state", "state is not included in the list", docsCreateStatus)
	case in.Context == nil || *in.Context == "":
		return validationFailed("Status", "context", "context wasn't supplied", docsCreateStatus)
	case in.Description != nil && utf8.RuneCountInString(*in.Description) > maxDescription:
		return validationFailed("Status", "description", "description is too long (maximum is 140 characters)", docsCreateStatus)
	case !rs.commitKnown(sha):
		return errorAnswer(http.StatusUnprocessableEntity, "No commit found for SHA: "+sha, docsCreateStatus)
	}
	key := strings.ToLower(sha)
	n := 0
	for _, st := range rs.statuses[key] {
		if st.Context == *in.Context {
			n++
		}
	}
	if n >= maxStatusesPerCtx {
		return validationFailed("Status", "context", "This SHA and context has reached the maximum number of statuses.", docsCreateStatus)
	}
	st := Status{ID: s.id(), State: *in.State, Context: *in.Context, Creator: s.actorLocked(), CreatedAt: q.now}
	if in.Description != nil {
		st.Description = *in.Description
	}
	if in.TargetURL != nil {
		st.TargetURL = *in.TargetURL
	}
	rs.statuses[key] = append(rs.statuses[key], st)
	a := jsonAnswer(http.StatusCreated, s.statusJSON(q, rs, sha, st))
	a.header.Set("Location", s.apiURL(q, "/repos/"+rs.fullName()+"/statuses/"+sha))
	return a
}

// combinedStatus answers GET /repos/{o}/{r}/commits/{ref}/status: the
// newest status of each context, sorted by context and paginated, with
// the combined state.
func (s *Server) combinedStatus(q *request, rs *repoState, ref string) answer {
	if !rs.commitKnown(ref) {
		return errorAnswer(http.StatusUnprocessableEntity, "No commit found for SHA: "+ref, docsCombinedStatus)
	}
	newest := latest(rs.statuses[strings.ToLower(ref)])
	state := "success"
	if len(newest) == 0 {
		state = "pending"
	}
	for _, st := range newest {
		switch st.State {
		case "failure", "error":
			state = "failure"
		case "pending":
			if state != "failure" {
				state = "pending"
			}
		}
	}
	lo, hi, link := paginate(q, len(newest))
	statuses := make([]*gh.RepoStatus, 0, hi-lo)
	for _, st := range newest[lo:hi] {
		statuses = append(statuses, s.statusJSON(q, rs, ref, st))
	}
	out := struct {
		State      string           `json:"state"`
		Statuses   []*gh.RepoStatus `json:"statuses"`
		SHA        string           `json:"sha"`
		TotalCount int              `json:"total_count"`
		Repository *gh.Repository   `json:"repository"`
		CommitURL  string           `json:"commit_url"`
		URL        string           `json:"url"`
	}{
		State: state, Statuses: statuses, SHA: ref, TotalCount: len(newest),
		Repository: s.repoJSON(q, rs),
		CommitURL:  s.apiURL(q, "/repos/"+rs.fullName()+"/commits/"+ref),
		URL:        s.apiURL(q, "/repos/"+rs.fullName()+"/commits/"+ref+"/status"),
	}
	a := jsonAnswer(http.StatusOK, out)
	setLink(a, link)
	return a
}

// listStatuses answers GET /repos/{o}/{r}/commits/{ref}/statuses: every
// status, newest first, paginated.
func (s *Server) listStatuses(q *request, rs *repoState, ref string) answer {
	if !rs.commitKnown(ref) {
		return errorAnswer(http.StatusUnprocessableEntity, "No commit found for SHA: "+ref, docsCombinedStatus)
	}
	history := rs.statuses[strings.ToLower(ref)]
	lo, hi, link := paginate(q, len(history))
	out := make([]*gh.RepoStatus, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, s.statusJSON(q, rs, ref, history[len(history)-1-i]))
	}
	a := jsonAnswer(http.StatusOK, out)
	setLink(a, link)
	return a
}

// paginate returns the slice bounds of the page q asks for among total
// items and the Link header for it, as GitHub paginates: page from 1,
// per_page default 30 and at most 100.
func paginate(q *request, total int) (lo, hi int, link string) {
	perPage, err := strconv.Atoi(q.query.Get("per_page"))
	if err != nil || perPage <= 0 {
		perPage = defaultPerPage
	}
	perPage = min(perPage, maxPerPage)
	page, err := strconv.Atoi(q.query.Get("page"))
	if err != nil || page <= 0 {
		page = 1
	}
	last := max((total+perPage-1)/perPage, 1)
	lo = min((page-1)*perPage, total)
	hi = min(lo+perPage, total)
	var links []string
	at := func(p int, rel string) {
		v := url.Values{}
		for k, vs := range q.query {
			v[k] = vs
		}
		v.Set("page", strconv.Itoa(p))
		u := *q.r.URL
		u.Scheme, u.Host, u.RawQuery = "http", q.r.Host, v.Encode()
		links = append(links, "<"+u.String()+`>; rel="`+rel+`"`)
	}
	if page > 1 {
		at(min(page-1, last), "prev")
	}
	if page < last {
		at(page+1, "next")
		at(last, "last")
	}
	if page > 1 {
		at(1, "first")
	}
	return lo, hi, strings.Join(links, ", ")
}

// setLink sets a's Link header when link is not empty.
func setLink(a answer, link string) {
	if link != "" {
		a.header.Set("Link", link)
	}
}

// apiURL returns the absolute API URL of path on the Server as q reached
// it.
func (s *Server) apiURL(q *request, path string) string {
	prefix := ""
	if strings.HasPrefix(q.r.URL.Path, EnterprisePrefix+"/") {
		prefix = EnterprisePrefix
	}
	return "http://" + q.r.Host + prefix + path
}

// userJSON returns GitHub's user object for login.
func (s *Server) userJSON(login string) *gh.User {
	typ := "User"
	if strings.HasSuffix(login, "[bot]") {
		typ = "Bot"
	}
	id := numericID(strings.ToLower(login))
	return &gh.User{
		Login:     gh.Ptr(login),
		ID:        gh.Ptr(id),
		NodeID:    gh.Ptr("U_" + strconv.FormatInt(id, 36)),
		AvatarURL: gh.Ptr("https://avatars.githubusercontent.com/u/" + strconv.FormatInt(id, 10) + "?v=4"),
		URL:       gh.Ptr("https://api.github.com/users/" + url.PathEscape(login)),
		HTMLURL:   gh.Ptr("https://github.com/" + url.PathEscape(login)),
		Type:      gh.Ptr(typ),
		SiteAdmin: gh.Ptr(false),
	}
}

// repoJSON returns GitHub's repository object for rs.
func (s *Server) repoJSON(q *request, rs *repoState) *gh.Repository {
	id := numericID(strings.ToLower(rs.fullName()))
	owner := s.userJSON(rs.owner)
	owner.Type = gh.Ptr("Organization")
	return &gh.Repository{
		ID:            gh.Ptr(id),
		NodeID:        gh.Ptr("R_" + strconv.FormatInt(id, 36)),
		Name:          gh.Ptr(rs.name),
		FullName:      gh.Ptr(rs.fullName()),
		Owner:         owner,
		Private:       gh.Ptr(false),
		Fork:          gh.Ptr(false),
		HTMLURL:       gh.Ptr("https://github.com/" + rs.fullName()),
		CloneURL:      gh.Ptr("https://github.com/" + rs.fullName() + ".git"),
		URL:           gh.Ptr(s.apiURL(q, "/repos/"+rs.fullName())),
		DefaultBranch: gh.Ptr("main"),
		Visibility:    gh.Ptr("public"),
	}
}

// headRepoJSON returns the repository object of p's head: the base
// repository, or a fork named by HeadCloneURL.
func (s *Server) headRepoJSON(q *request, rs *repoState, p *Pull) *gh.Repository {
	base := s.repoJSON(q, rs)
	if p.HeadCloneURL == "" || p.HeadCloneURL == base.GetCloneURL() {
		return base
	}
	full := strings.TrimSuffix(p.HeadCloneURL, ".git")
	if i := strings.Index(full, "://"); i >= 0 {
		full = full[i+3:]
	}
	if i := strings.Index(full, "/"); i >= 0 {
		full = full[i+1:]
	}
	owner, name, ok := strings.Cut(full, "/")
	if !ok {
		owner, name = p.Author, full
	}
	id := numericID(strings.ToLower(full))
	return &gh.Repository{
		ID:       gh.Ptr(id),
		NodeID:   gh.Ptr("R_" + strconv.FormatInt(id, 36)),
		Name:     gh.Ptr(name),
		FullName: gh.Ptr(owner + "/" + name),
		Owner:    s.userJSON(owner),
		Private:  gh.Ptr(false),
		Fork:     gh.Ptr(true),
		HTMLURL:  gh.Ptr(strings.TrimSuffix(p.HeadCloneURL, ".git")),
		CloneURL: gh.Ptr(p.HeadCloneURL),
	}
}

// pullJSON returns GitHub's pull request object for p; full adds the
// fields GitHub sends only for a single pull (mergeable and the counts).
func (s *Server) pullJSON(q *request, rs *repoState, p *Pull, full bool) *gh.PullRequest {
	num := strconv.Itoa(p.Number)
	api := s.apiURL(q, "/repos/"+rs.fullName())
	html := "https://github.com/" + rs.fullName()
	id := numericID(rs.fullName() + "#" + num)
	author := s.userJSON(p.Author)
	headRepo := s.headRepoJSON(q, rs, p)
	out := &gh.PullRequest{
		ID:                gh.Ptr(id),
		NodeID:            gh.Ptr("PR_" + strconv.FormatInt(id, 36)),
		Number:            gh.Ptr(p.Number),
		State:             gh.Ptr(p.State),
		Locked:            gh.Ptr(false),
		Title:             gh.Ptr(p.Title),
		Body:              gh.Ptr(""),
		CreatedAt:         &gh.Timestamp{Time: p.UpdatedAt},
		UpdatedAt:         &gh.Timestamp{Time: p.UpdatedAt},
		Labels:            s.labelsJSON(rs, p.Labels),
		User:              author,
		Draft:             gh.Ptr(p.Draft),
		URL:               gh.Ptr(api + "/pulls/" + num),
		HTMLURL:           gh.Ptr(html + "/pull/" + num),
		IssueURL:          gh.Ptr(api + "/issues/" + num),
		StatusesURL:       gh.Ptr(api + "/statuses/" + p.HeadSHA),
		DiffURL:           gh.Ptr(html + "/pull/" + num + ".diff"),
		PatchURL:          gh.Ptr(html + "/pull/" + num + ".patch"),
		CommitsURL:        gh.Ptr(api + "/pulls/" + num + "/commits"),
		CommentsURL:       gh.Ptr(api + "/issues/" + num + "/comments"),
		AuthorAssociation: gh.Ptr(s.association(rs, p.Author)),
		Head: &gh.PullRequestBranch{
			Label: gh.Ptr(headRepo.GetOwner().GetLogin() + ":" + p.HeadRef),
			Ref:   gh.Ptr(p.HeadRef),
			SHA:   gh.Ptr(p.HeadSHA),
			Repo:  headRepo,
			User:  headRepo.GetOwner(),
		},
		Base: &gh.PullRequestBranch{
			Label: gh.Ptr(rs.owner + ":" + p.BaseRef),
			Ref:   gh.Ptr(p.BaseRef),
			SHA:   gh.Ptr(p.BaseSHA),
			Repo:  s.repoJSON(q, rs),
			User:  s.repoJSON(q, rs).GetOwner(),
		},
	}
	if p.State == "closed" {
		out.ClosedAt = &gh.Timestamp{Time: p.UpdatedAt}
	}
	if full {
		out.Merged = gh.Ptr(false)
		out.Mergeable = p.Mergeable
		out.MergeableState = gh.Ptr("unknown")
		if p.Mergeable != nil {
			out.MergeableState = gh.Ptr(map[bool]string{true: "clean", false: "dirty"}[*p.Mergeable])
		}
		out.Comments = gh.Ptr(len(rs.comments[p.Number]))
		out.Commits = gh.Ptr(1)
		out.ChangedFiles = gh.Ptr(len(p.Files))
		out.Additions = gh.Ptr(len(p.Files))
		out.Deletions = gh.Ptr(len(p.Files))
		out.MaintainerCanModify = gh.Ptr(false)
	}
	return out
}

// association returns the author_association of login in rs.
func (s *Server) association(rs *repoState, login string) string {
	switch {
	case strings.EqualFold(login, rs.owner):
		return "OWNER"
	case s.orgs[strings.ToLower(rs.owner)][strings.ToLower(login)]:
		return "MEMBER"
	case rs.collaborators[strings.ToLower(login)]:
		return "COLLABORATOR"
	}
	return "CONTRIBUTOR"
}

// labelsJSON returns GitHub's label objects for names.
func (s *Server) labelsJSON(rs *repoState, names []string) []*gh.Label {
	out := make([]*gh.Label, 0, len(names))
	for _, n := range names {
		id := numericID(strings.ToLower(rs.fullName() + ":" + n))
		out = append(out, &gh.Label{
			ID:      gh.Ptr(id),
			NodeID:  gh.Ptr("LA_" + strconv.FormatInt(id, 36)),
			URL:     gh.Ptr("https://api.github.com/repos/" + rs.fullName() + "/labels/" + url.PathEscape(n)),
			Name:    gh.Ptr(n),
			Color:   gh.Ptr("ededed"),
			Default: gh.Ptr(false),
		})
	}
	return out
}

// commentJSON returns GitHub's issue comment object for c.
func (s *Server) commentJSON(q *request, rs *repoState, number int, c Comment) *gh.IssueComment {
	num := strconv.Itoa(number)
	id := strconv.FormatInt(c.ID, 10)
	return &gh.IssueComment{
		ID:                gh.Ptr(c.ID),
		NodeID:            gh.Ptr("IC_" + strconv.FormatInt(c.ID, 36)),
		Body:              gh.Ptr(c.Body),
		User:              s.userJSON(c.Author),
		CreatedAt:         &gh.Timestamp{Time: c.CreatedAt},
		UpdatedAt:         &gh.Timestamp{Time: c.CreatedAt},
		AuthorAssociation: gh.Ptr(s.association(rs, c.Author)),
		URL:               gh.Ptr(s.apiURL(q, "/repos/"+rs.fullName()+"/issues/comments/"+id)),
		HTMLURL:           gh.Ptr("https://github.com/" + rs.fullName() + "/pull/" + num + "#issuecomment-" + id),
		IssueURL:          gh.Ptr(s.apiURL(q, "/repos/"+rs.fullName()+"/issues/"+num)),
	}
}

// statusJSON returns GitHub's status object for st on sha.
func (s *Server) statusJSON(q *request, rs *repoState, sha string, st Status) *gh.RepoStatus {
	out := &gh.RepoStatus{
		ID:          gh.Ptr(st.ID),
		NodeID:      gh.Ptr("SC_" + strconv.FormatInt(st.ID, 36)),
		URL:         gh.Ptr(s.apiURL(q, "/repos/"+rs.fullName()+"/statuses/"+sha)),
		State:       gh.Ptr(st.State),
		Description: gh.Ptr(st.Description),
		Context:     gh.Ptr(st.Context),
		AvatarURL:   gh.Ptr("https://avatars.githubusercontent.com/u/" + strconv.FormatInt(numericID(strings.ToLower(st.Creator)), 10) + "?v=4"),
		Creator:     s.userJSON(st.Creator),
		CreatedAt:   &gh.Timestamp{Time: st.CreatedAt},
		UpdatedAt:   &gh.Timestamp{Time: st.CreatedAt},
	}
	if st.TargetURL != "" {
		out.TargetURL = gh.Ptr(st.TargetURL)
	}
	return out
}

// numericID derives a stable positive ID from s.
func numericID(s string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return int64(h.Sum64()>>34) + 1
}

// fakeSHA derives a stable 40-digit hex string from s.
func fakeSHA(s string) string {
	h := fnv.New128a()
	_, _ = h.Write([]byte(s))
	sum := h.Sum(nil)
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 40)
	for i := 0; len(out) < 40; i++ {
		b := sum[i%len(sum)]
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

// hasFold reports whether list holds s, ignoring case.
func hasFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
