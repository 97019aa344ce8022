package githubtest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Pull is a pull request as a test seeds it and reads it back.
type Pull struct {
	Number int
	// State is "open" (the default when empty) or "closed".
	State  string
	Draft  bool
	Title  string
	Author string
	// HeadSHA, HeadRef, BaseRef and BaseSHA name the commits and
	// branches compared.
	HeadSHA string
	HeadRef string
	BaseRef string
	BaseSHA string
	Labels  []string
	// Mergeable is nil while GitHub has not computed it.
	Mergeable *bool
	// UpdatedAt defaults to the Server's clock when the pull is added; it
	// moves when the head, labels or comments change, as on GitHub.
	UpdatedAt time.Time
	Files     []File
	// HeadCloneURL is the head repository's clone URL; empty means the
	// base repository's (a branch of the same repository).
	HeadCloneURL string
}

// File is a file a pull request changes.
type File struct {
	Name string
	// PreviousName is the file's name before a rename, or empty.
	PreviousName string
}

// Comment is an issue comment.
type Comment struct {
	ID        int64
	Author    string
	Body      string
	CreatedAt time.Time
}

// Status is a commit status.
type Status struct {
	ID          int64
	State       string
	Context     string
	Description string
	TargetURL   string
	Creator     string
	CreatedAt   time.Time
}

// repoState is everything the Server holds about one repository.
type repoState struct {
	owner, name   string // as first seeded
	pulls         map[int]*Pull
	comments      map[int][]Comment
	collaborators map[string]bool // lower-case logins
	// commits, when not nil, are the SHAs statuses may be set on, besides
	// the head and base SHAs of the repository's pulls.
	commits  map[string]bool
	statuses map[string][]Status // by SHA, oldest first
}

// fullName returns the repository's owner/name.
func (r *repoState) fullName() string { return r.owner + "/" + r.name }

// commitKnown reports whether sha names a commit of the repository; with
// no commit list set, every SHA does.
func (r *repoState) commitKnown(sha string) bool {
	if r.commits == nil {
		return true
	}
	if r.commits[strings.ToLower(sha)] {
		return true
	}
	for _, p := range r.pulls {
		if strings.EqualFold(p.HeadSHA, sha) || strings.EqualFold(p.BaseSHA, sha) {
			return true
		}
	}
	return false
}

// splitRepo splits "owner/name", panicking on anything else: seeding a
// malformed name is a bug in the test.
func splitRepo(repo string) (owner, name string) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		panic(fmt.Sprintf("githubtest: repository %q: want owner/name", repo))
	}
	return owner, name
}

// repoLocked returns repo's state, creating it when create is set.
// s.mu must be held.
func (s *Server) repoLocked(repo string, create bool) *repoState {
	key := strings.ToLower(repo)
	if rs, ok := s.repos[key]; ok || !create {
		return rs
	}
	owner, name := splitRepo(repo)
	rs := &repoState{owner: owner, name: name, pulls: make(map[int]*Pull), comments: make(map[int][]Comment),
		collaborators: make(map[string]bool), statuses: make(map[string][]Status)}
	s.repos[key] = rs
	return rs
}

// pullLocked returns pull number of repo, panicking when there is none:
// changing a pull that was never seeded is a bug in the test. s.mu must
// be held.
func (s *Server) pullLocked(repo string, number int) *Pull {
	rs := s.repoLocked(repo, false)
	if rs == nil || rs.pulls[number] == nil {
		panic(fmt.Sprintf("githubtest: no pull %s#%d: add it with AddPull first", repo, number))
	}
	return rs.pulls[number]
}

// id returns a new object ID. s.mu must be held.
func (s *Server) id() int64 {
	s.nextID++
	return s.nextID
}

// actorLocked returns the login requests act as: the App's bot when one
// is set, else the authenticated user. s.mu must be held.
func (s *Server) actorLocked() string {
	if s.appSlug != "" {
		return s.appSlug + "[bot]"
	}
	return s.user
}

// AddRepo creates repository repo ("owner/name") if it does not exist.
// Other seeding methods create the repositories they name, too; requests
// for a repository that does not exist are answered 404.
func (s *Server) AddRepo(repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(repo, true)
}

// AddPull adds pull request p to repo, replacing any with its number.
func (s *Server) AddPull(repo string, p Pull) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, true)
	if p.Number <= 0 {
		panic(fmt.Sprintf("githubtest: pull %s#%d: want a positive number", repo, p.Number))
	}
	if p.State == "" {
		p.State = "open"
	}
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = s.now()
	}
	rs.pulls[p.Number] = clonePull(p)
}

// Pull returns pull request number of repo as the Server holds it.
func (s *Server) Pull(repo string, number int) (Pull, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, false)
	if rs == nil || rs.pulls[number] == nil {
		return Pull{}, false
	}
	return *clonePull(*rs.pulls[number]), true
}

// UpdatePull changes pull request number of repo with f, under the
// Server's lock; f must not call the Server. It panics when there is no
// such pull.
func (s *Server) UpdatePull(repo string, number int, f func(*Pull)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pullLocked(repo, number)
	cp := clonePull(*p)
	f(cp)
	cp.Number = number
	*p = *cp
}

// SetHead moves the head of pull request number of repo to sha, as a
// push does, and updates its UpdatedAt.
func (s *Server) SetHead(repo string, number int, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pullLocked(repo, number)
	p.HeadSHA = sha
	p.UpdatedAt = s.now()
}

// Labels returns the labels of pull request number of repo.
func (s *Server) Labels(repo string, number int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, false)
	if rs == nil || rs.pulls[number] == nil || len(rs.pulls[number].Labels) == 0 {
		return nil
	}
	return slices.Clone(rs.pulls[number].Labels)
}

// AddMember makes user a member of org.
func (s *Server) AddMember(org, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(org)
	if s.orgs[key] == nil {
		s.orgs[key] = make(map[string]bool)
	}
	s.orgs[key][strings.ToLower(user)] = true
}

// RemoveMember removes user from org.
func (s *Server) RemoveMember(org, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.orgs[strings.ToLower(org)], strings.ToLower(user))
}

// AddCollaborator makes user a collaborator of repo.
func (s *Server) AddCollaborator(repo, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(repo, true).collaborators[strings.ToLower(user)] = true
}

// RemoveCollaborator removes user from repo's collaborators.
func (s *Server) RemoveCollaborator(repo, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs := s.repoLocked(repo, false); rs != nil {
		delete(rs.collaborators, strings.ToLower(user))
	}
}

// AddComment adds a comment by author to pull request number of repo and
// returns its ID.
func (s *Server) AddComment(repo string, number int, author, body string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addCommentLocked(s.repoLocked(repo, false), number, author, body)
}

// addCommentLocked adds a comment to an existing pull. s.mu must be held.
func (s *Server) addCommentLocked(rs *repoState, number int, author, body string) int64 {
	if rs == nil || rs.pulls[number] == nil {
		panic(fmt.Sprintf("githubtest: no pull #%d to comment on: add it with AddPull first", number))
	}
	c := Comment{ID: s.id(), Author: author, Body: body, CreatedAt: s.now()}
	rs.comments[number] = append(rs.comments[number], c)
	rs.pulls[number].UpdatedAt = c.CreatedAt
	return c.ID
}

// Comments returns the comments on pull request number of repo, oldest
// first.
func (s *Server) Comments(repo string, number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, false)
	if rs == nil {
		return nil
	}
	return slices.Clone(rs.comments[number])
}

// SetCommits makes repo check commit SHAs: from now on a status may be set
// only on one of shas or on a head or base SHA of one of the repository's
// pulls, and any other SHA is answered 422 "No commit found for SHA".
// Without SetCommits every SHA is accepted.
func (s *Server) SetCommits(repo string, shas ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, true)
	rs.commits = make(map[string]bool, len(shas))
	for _, sha := range shas {
		rs.commits[strings.ToLower(sha)] = true
	}
}

// AddStatus appends st to the statuses of sha in repo, as if it had been
// posted, filling in its ID, CreatedAt (when zero) and Creator (when
// empty). It does not check st.
func (s *Server) AddStatus(repo, sha string, st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, true)
	st.ID = s.id()
	if st.CreatedAt.IsZero() {
		st.CreatedAt = s.now()
	}
	if st.Creator == "" {
		st.Creator = s.actorLocked()
	}
	key := strings.ToLower(sha)
	rs.statuses[key] = append(rs.statuses[key], st)
}

// Statuses returns every status set on sha in repo, oldest first.
func (s *Server) Statuses(repo, sha string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, false)
	if rs == nil {
		return nil
	}
	return slices.Clone(rs.statuses[strings.ToLower(sha)])
}

// LatestStatuses returns the newest status of each context on sha in repo,
// sorted by context, as GitHub shows them on the commit.
func (s *Server) LatestStatuses(repo, sha string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.repoLocked(repo, false)
	if rs == nil {
		return nil
	}
	return latest(rs.statuses[strings.ToLower(sha)])
}

// latest returns the newest status of each context in history, sorted by
// context.
func latest(history []Status) []Status {
	newest := make(map[string]Status)
	for _, st := range history {
		newest[st.Context] = st
	}
	out := make([]Status, 0, len(newest))
	for _, st := range newest {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Context < out[j].Context })
	return out
}

// SetUser sets the login of the authenticated user, which GET /user
// returns and comments and statuses are created by; default DefaultUser.
func (s *Server) SetUser(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user = login
}

// SetApp makes requests act as the GitHub App slug: GET /app returns it,
// GET /user is refused with 403 "Resource not accessible by integration"
// as it is for an installation token, and comments and statuses are
// created by "<slug>[bot]". An empty slug acts as the user again.
func (s *Server) SetApp(slug string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appSlug = slug
}

// clonePull returns a copy of p sharing no slices or pointers with it.
func clonePull(p Pull) *Pull {
	p.Labels = slices.Clone(p.Labels)
	p.Files = slices.Clone(p.Files)
	if p.Mergeable != nil {
		m := *p.Mergeable
		p.Mergeable = &m
	}
	return &p
}
