// Package gitlabtest is a GitLab double for tests: an httptest server
// speaking the parts of GitLab's REST API (v4) that lockstep's GitLab
// executor uses — projects, pipelines, pipeline variables, jobs, job
// traces and cancel — with GitLab's JSON field names and status values
// (the client library's own types are marshalled), and sending
// pipeline webhooks shaped as GitLab sends them, with X-Gitlab-Token.
//
// Each project's remote is a real bare git repository (RemoteURL) that
// lockstep pushes to with the git CLI; creating a pipeline for a ref
// the repository does not have fails as it does on GitLab.
//
// Pipelines do not run by themselves unless a project has a Script: a
// test drives them with StartJob, AppendTrace and FinishJob, and the
// pipeline's status follows from its jobs' as GitLab computes it.
// Faults: FailNext (5xx), RateLimitNext (429 with Retry-After),
// LoseWebhooks, and FinishJob with any failure_reason
// (runner_system_failure…).
package gitlabtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// Token is the API token the double accepts (PRIVATE-TOKEN header).
const Token = "glpat-lockstep-test"

// JobSpec is one job of a project's .gitlab-ci.yml, as the double
// creates it in every pipeline.
type JobSpec struct {
	Name  string
	Stage string
	// AllowFailure lets the job fail without failing the pipeline.
	AllowFailure bool
	// Trace, Status and FailureReason are what the job writes and how it
	// ends when the project runs by itself (see Project.Auto).
	Trace         string
	Status        string // success (default) or failed
	FailureReason string
}

// Call is one API request the double received.
type Call struct {
	Method string
	Path   string // as sent, escaped, without /api/v4
	Status int
}

// Server is the GitLab double. Create it with NewServer.
type Server struct {
	t   testing.TB
	srv *httptest.Server
	dir string

	// mu guards everything below.
	mu        sync.Mutex
	projects  map[string]*project // by path_with_namespace
	byID      map[int64]*project
	pipelines map[int64]*pipeline
	jobs      map[int64]*job
	nextID    int64
	calls     []Call
	failNext  []fault
	hookURL   string
	hookToken string
	lose      int
	sent      int
	lastHook  []byte
	// ended holds when the webhook announcing each pipeline's end was
	// sent.
	ended  map[int64]time.Time
	auto   sync.WaitGroup
	closed bool
}

type fault struct {
	status     int
	retryAfter int
}

type project struct {
	id     int64
	path   string
	remote string
	jobs   []JobSpec
	auto   bool
}

type pipeline struct {
	p         *gitlab.Pipeline
	project   *project
	variables []*gitlab.PipelineVariable
	jobs      []*job
}

type job struct {
	j        *gitlab.Job
	pipeline *pipeline
	trace    []byte
}

// NewServer starts a double that stops when the test ends.
func NewServer(t testing.TB) *Server {
	s := &Server{
		t: t, dir: t.TempDir(),
		projects: map[string]*project{}, byID: map[int64]*project{},
		pipelines: map[int64]*pipeline{}, jobs: map[int64]*job{}, nextID: 100, ended: map[int64]time.Time{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.auto.Wait()
		s.srv.Close()
	})
	return s
}

// URL is the instance's address (gitlab.url); the API is URL/api/v4.
func (s *Server) URL() string { return s.srv.URL }

// AddProject creates project path ("group/name") with a bare repository
// as its remote and jobs as its .gitlab-ci.yml. auto makes its pipelines
// run by themselves: pending, running, each job's trace and end, as the
// JobSpecs say, each change sent as a webhook.
func (s *Server) AddProject(path string, auto bool, jobs ...JobSpec) {
	s.t.Helper()
	remote := filepath.Join(s.dir, filepath.FromSlash(path)+".git")
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", remote},
		{"-C", remote, "config", "receive.advertisePushOptions", "true"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			s.t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	p := &project{id: s.nextID, path: path, remote: remote, jobs: jobs, auto: auto}
	s.projects[path] = p
	s.byID[p.id] = p
}

// RemoteURL returns the bare repository lockstep pushes project's
// commits to.
func (s *Server) RemoteURL(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.projects[path].remote
}

// Refs returns the branches of project's remote, without refs/heads/.
func (s *Server) Refs(path string) []string {
	s.t.Helper()
	out, err := exec.Command("git", "-C", s.RemoteURL(path), "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/").Output()
	if err != nil {
		s.t.Fatalf("list refs of %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

// RefSHA returns the commit ref (a branch name) names on project's
// remote, or "".
func (s *Server) RefSHA(path, ref string) string {
	out, err := exec.Command("git", "-C", s.RemoteURL(path), "rev-parse", "--verify", "-q", "refs/heads/"+ref+"^{commit}").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// SetWebhook makes the double send pipeline webhooks to url with token
// as X-Gitlab-Token.
func (s *Server) SetWebhook(url, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookURL, s.hookToken = url, token
}

// LoseWebhooks drops the next n webhooks instead of sending them.
func (s *Server) LoseWebhooks(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose = n
}

// WebhooksSent returns how many webhooks were delivered (answered 2xx).
func (s *Server) WebhooksSent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// FailNext makes the next n API requests fail with status (5xx).
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, fault{status: status})
	}
}

// RateLimitNext makes the next n API requests fail with 429 and
// Retry-After: retryAfter seconds.
func (s *Server) RateLimitNext(n, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, fault{status: http.StatusTooManyRequests, retryAfter: retryAfter})
	}
}

// Calls returns the API requests received so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CallCount returns how many API requests were received, faults
// included.
func (s *Server) CallCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// Pipelines returns the pipelines of project, oldest first.
func (s *Server) Pipelines(path string) []gitlab.Pipeline {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gitlab.Pipeline
	for _, id := range slices.Sorted(mapKeys(s.pipelines)) {
		if pl := s.pipelines[id]; pl.project.path == path {
			out = append(out, *pl.p)
		}
	}
	return out
}

// Jobs returns the jobs of pipeline id, in stage order.
func (s *Server) Jobs(pipelineID int64) []gitlab.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gitlab.Job
	if pl, ok := s.pipelines[pipelineID]; ok {
		for _, j := range pl.jobs {
			out = append(out, *j.j)
		}
	}
	return out
}

// Variables returns the variables pipeline id was created with.
func (s *Server) Variables(pipelineID int64) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	if pl, ok := s.pipelines[pipelineID]; ok {
		for _, v := range pl.variables {
			out[v.Key] = v.Value
		}
	}
	return out
}

// StartJob moves job id to running (and its pipeline with it).
func (s *Server) StartJob(id int64) { s.change(id, "running", "") }

// AppendTrace adds text to job id's trace.
func (s *Server) AppendTrace(id int64, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[id].trace = append(s.jobs[id].trace, text...)
}

// FinishJob ends job id with status (success, failed, canceled,
// skipped) and, for failed, failure_reason (script_failure,
// runner_system_failure, stuck_or_timeout_failure…).
func (s *Server) FinishJob(id int64, status, failureReason string) {
	s.change(id, status, failureReason)
}

// SetPipelineStatus sets pipeline id's status directly (manual,
// skipped…) and sends the webhook.
func (s *Server) SetPipelineStatus(id int64, status string) {
	s.mu.Lock()
	pl := s.pipelines[id]
	pl.p.Status = status
	body := s.eventLocked(pl)
	s.markEndedLocked(pl)
	s.mu.Unlock()
	s.sendHook(body)
}

// Redeliver sends the last webhook again, as GitLab's "Resend request".
func (s *Server) Redeliver() {
	s.mu.Lock()
	body := s.lastHook
	s.mu.Unlock()
	s.sendHook(body)
}

// change moves job id to status and recomputes its pipeline's status,
// sending a webhook when the pipeline's status or a job's changed.
func (s *Server) change(id int64, status, reason string) {
	s.mu.Lock()
	j := s.jobs[id]
	now := time.Now().UTC()
	j.j.Status = status
	j.j.FailureReason = reason
	if status == "running" && j.j.StartedAt == nil {
		j.j.StartedAt = &now
	}
	if terminal(status) {
		j.j.FinishedAt = &now
	}
	pl := j.pipeline
	s.recomputeLocked(pl)
	body := s.eventLocked(pl)
	s.markEndedLocked(pl)
	s.mu.Unlock()
	s.sendHook(body)
}

// markEndedLocked records when the webhook of pl's end is sent.
func (s *Server) markEndedLocked(pl *pipeline) {
	if _, ok := s.ended[pl.p.ID]; !ok && terminal(pl.p.Status) {
		s.ended[pl.p.ID] = time.Now()
	}
}

// EndedAt returns when the double sent (or lost) the webhook saying
// pipeline id ended, and whether it did.
func (s *Server) EndedAt(id int64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.ended[id]
	return t, ok
}

func terminal(status string) bool {
	switch status {
	case "success", "failed", "canceled", "skipped":
		return true
	}
	return false
}

// recomputeLocked sets pl's status from its jobs', as GitLab does.
func (s *Server) recomputeLocked(pl *pipeline) {
	if pl.p.Status == "canceled" {
		return
	}
	counts := map[string]int{}
	failed := false
	for _, j := range pl.jobs {
		counts[j.j.Status]++
		if j.j.Status == "failed" && !j.j.AllowFailure {
			failed = true
		}
	}
	now := time.Now().UTC()
	switch {
	case counts["running"] > 0:
		pl.p.Status = "running"
		if pl.p.StartedAt == nil {
			pl.p.StartedAt = &now
		}
	case counts["pending"] > 0 || counts["created"] > 0:
		if failed {
			pl.p.Status = "failed"
		} else if pl.p.Status != "running" {
			pl.p.Status = "pending"
		}
	case failed:
		pl.p.Status = "failed"
	case counts["success"] > 0 || counts["failed"] > 0:
		pl.p.Status = "success"
	case counts["canceled"] > 0:
		pl.p.Status = "canceled"
	default:
		pl.p.Status = "skipped"
	}
	if terminal(pl.p.Status) {
		pl.p.FinishedAt = &now
		// Jobs of later stages that never ran are skipped.
		for _, j := range pl.jobs {
			if j.j.Status == "created" || j.j.Status == "pending" {
				j.j.Status = "skipped"
			}
		}
	}
	pl.p.UpdatedAt = &now
	for _, j := range pl.jobs {
		j.j.Pipeline.Status = pl.p.Status
	}
}

// eventLocked returns the pipeline webhook payload of pl.
func (s *Server) eventLocked(pl *pipeline) []byte {
	ev := gitlab.PipelineEvent{ObjectKind: "pipeline"}
	p := pl.p
	stages := []string{}
	for _, j := range pl.jobs {
		if !slices.Contains(stages, j.j.Stage) {
			stages = append(stages, j.j.Stage)
		}
	}
	ev.ObjectAttributes = gitlab.PipelineEventObjectAttributes{
		ID: p.ID, IID: p.IID, Ref: p.Ref, SHA: p.SHA, Source: string(p.Source), Status: p.Status,
		DetailedStatus: p.Status, Stages: stages, CreatedAt: hookTime(p.CreatedAt), FinishedAt: hookTime(p.FinishedAt),
		URL: p.WebURL,
	}
	for _, v := range pl.variables {
		ev.ObjectAttributes.Variables = append(ev.ObjectAttributes.Variables, gitlab.PipelineEventObjectAttributesVariable{Key: v.Key, Value: v.Value})
	}
	ev.Project = gitlab.PipelineEventProject{
		ID: pl.project.id, Name: pl.project.path[strings.LastIndexByte(pl.project.path, '/')+1:],
		PathWithNamespace: pl.project.path, WebURL: s.srv.URL + "/" + pl.project.path,
		GitHTTPURL: s.srv.URL + "/" + pl.project.path + ".git", DefaultBranch: "main", Visibility: gitlab.PrivateVisibility,
	}
	ev.Commit = gitlab.PipelineEventCommit{ID: p.SHA}
	for _, j := range pl.jobs {
		ev.Builds = append(ev.Builds, gitlab.PipelineEventBuild{
			ID: j.j.ID, Stage: j.j.Stage, Name: j.j.Name, Status: j.j.Status, FailureReason: j.j.FailureReason,
			AllowFailure: j.j.AllowFailure, When: "on_success", CreatedAt: hookTime(j.j.CreatedAt),
			StartedAt: hookTime(j.j.StartedAt), FinishedAt: hookTime(j.j.FinishedAt),
		})
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// hookTime formats t as GitLab's webhooks do ("2026-01-02 15:04:05 UTC").
func hookTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// sendHookAsync sends body from a goroutine the Server waits for, as
// GitLab sends webhooks from a queue: they may arrive in any order.
// s.mu is held.
func (s *Server) sendHookAsync(body []byte) {
	if s.closed {
		return
	}
	s.auto.Add(1)
	go func() {
		defer s.auto.Done()
		s.sendHook(body)
	}()
}

// sendHook posts body as a pipeline webhook, unless webhooks are lost
// or none is configured. GitLab does not retry a failed delivery.
func (s *Server) sendHook(body []byte) {
	s.mu.Lock()
	url, token := s.hookURL, s.hookToken
	s.lastHook = body
	lose := s.lose > 0
	if lose {
		s.lose--
	}
	s.mu.Unlock()
	if url == "" || lose || body == nil {
		return
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		s.t.Errorf("gitlabtest: webhook request: %v", err)
		return
	}
	uuid := newUUID()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitLab/18.6.0")
	req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
	req.Header.Set("X-Gitlab-Token", token)
	req.Header.Set("X-Gitlab-Instance", s.srv.URL)
	req.Header.Set("X-Gitlab-Webhook-UUID", "9d7d6d3b-2f52-4a4e-8b7b-d8b1f1e0c0a1")
	req.Header.Set("X-Gitlab-Event-UUID", uuid)
	req.Header.Set("Idempotency-Key", idempotencyKey(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // lockstep is down: the webhook is lost, as on GitLab
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
	}
}

// idempotencyKey is the same for the same payload, as GitLab keeps the
// Idempotency-Key of a delivery across its retries.
func idempotencyKey(body []byte) string {
	h := fnv(body)
	return fmt.Sprintf("%016x-%08x", h, len(body))
}

func fnv(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// gitRefExists reports whether ref is a branch of remote, and its SHA.
func gitRefSHA(remote, ref string) (string, bool) {
	out, err := exec.Command("git", "-C", remote, "rev-parse", "--verify", "-q", "refs/heads/"+ref+"^{commit}").Output()
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(out)), true
}
