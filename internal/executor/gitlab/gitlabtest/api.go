package gitlabtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// answer is one API response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func jsonAnswer(status int, v any) answer {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return answer{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: b}
}

// message is GitLab's error body, {"message": "404 Project Not Found"}.
func message(status int, msg any) answer {
	return jsonAnswer(status, map[string]any{"message": msg})
}

func notFound(what string) answer { return message(http.StatusNotFound, "404 "+what+" Not Found") }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/api/v4")
	a := s.handle(r, path, body)
	s.mu.Lock()
	s.calls = append(s.calls, Call{Method: r.Method, Path: path, Status: a.status})
	s.mu.Unlock()
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
}

func (s *Server) handle(r *http.Request, path string, body []byte) answer {
	s.mu.Lock()
	if len(s.failNext) > 0 {
		f := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.mu.Unlock()
		a := message(f.status, http.StatusText(f.status))
		if f.retryAfter > 0 {
			a.header.Set("Retry-After", strconv.Itoa(f.retryAfter))
		}
		return a
	}
	s.mu.Unlock()
	if r.Header.Get("PRIVATE-TOKEN") != Token && r.Header.Get("Authorization") != "Bearer "+Token {
		return message(http.StatusUnauthorized, "401 Unauthorized")
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, seg := range segs {
		if u, err := url.PathUnescape(seg); err == nil {
			segs[i] = u
		}
	}
	if len(segs) < 2 || segs[0] != "projects" {
		return notFound("")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[segs[1]]
	if id, err := strconv.ParseInt(segs[1], 10, 64); err == nil {
		p = s.byID[id]
	}
	if p == nil {
		return notFound("Project")
	}
	rest := segs[2:]
	m := r.Method
	switch {
	case len(rest) == 0 && m == http.MethodGet:
		return jsonAnswer(http.StatusOK, s.projectJSON(p))
	case len(rest) == 1 && rest[0] == "pipelines" && m == http.MethodGet:
		return s.listPipelines(p, r.URL.Query())
	case len(rest) == 1 && rest[0] == "pipeline" && m == http.MethodPost:
		return s.createPipeline(p, body)
	case len(rest) >= 2 && rest[0] == "pipelines":
		id, _ := strconv.ParseInt(rest[1], 10, 64)
		pl, ok := s.pipelines[id]
		if !ok || pl.project != p {
			return notFound("")
		}
		switch {
		case len(rest) == 2 && m == http.MethodGet:
			return jsonAnswer(http.StatusOK, pl.p)
		case len(rest) == 3 && rest[2] == "variables" && m == http.MethodGet:
			return jsonAnswer(http.StatusOK, pl.variables)
		case len(rest) == 3 && rest[2] == "jobs" && m == http.MethodGet:
			jobs := []*gitlab.Job{}
			for _, j := range pl.jobs {
				jobs = append(jobs, j.j)
			}
			return jsonAnswer(http.StatusOK, jobs)
		case len(rest) == 3 && rest[2] == "cancel" && m == http.MethodPost:
			s.cancelLocked(pl)
			return jsonAnswer(http.StatusOK, pl.p)
		}
	case len(rest) == 3 && rest[0] == "jobs" && rest[2] == "trace" && m == http.MethodGet:
		id, _ := strconv.ParseInt(rest[1], 10, 64)
		j, ok := s.jobs[id]
		if !ok || j.pipeline.project != p {
			return notFound("")
		}
		return traceAnswer(j.trace, r.Header.Get("Range"))
	}
	return notFound("")
}

// traceAnswer serves a trace, honouring "Range: bytes=N-".
func traceAnswer(trace []byte, rng string) answer {
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	from, ok := strings.CutPrefix(rng, "bytes=")
	if !ok {
		return answer{status: http.StatusOK, header: h, body: append([]byte(nil), trace...)}
	}
	n, err := strconv.Atoi(strings.TrimSuffix(from, "-"))
	if err != nil || n < 0 {
		return answer{status: http.StatusOK, header: h, body: append([]byte(nil), trace...)}
	}
	if n >= len(trace) {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", len(trace)))
		return answer{status: http.StatusRequestedRangeNotSatisfiable, header: h}
	}
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(trace)-1, len(trace)))
	return answer{status: http.StatusPartialContent, header: h, body: append([]byte(nil), trace[n:]...)}
}

func (s *Server) projectJSON(p *project) *gitlab.Project {
	return &gitlab.Project{
		ID: p.id, Name: p.path[strings.LastIndexByte(p.path, '/')+1:], Path: p.path[strings.LastIndexByte(p.path, '/')+1:],
		PathWithNamespace: p.path, DefaultBranch: "main", WebURL: s.srv.URL + "/" + p.path,
		HTTPURLToRepo: s.srv.URL + "/" + p.path + ".git",
	}
}

func (s *Server) listPipelines(p *project, q url.Values) answer {
	out := []*gitlab.PipelineInfo{}
	// Newest first, as GitLab orders them by default.
	for id := s.nextID; id > 0; id-- {
		pl, ok := s.pipelines[id]
		if !ok || pl.project != p {
			continue
		}
		if ref := q.Get("ref"); ref != "" && pl.p.Ref != ref {
			continue
		}
		if sha := q.Get("sha"); sha != "" && pl.p.SHA != sha {
			continue
		}
		out = append(out, &gitlab.PipelineInfo{
			ID: pl.p.ID, IID: pl.p.IID, ProjectID: p.id, Status: pl.p.Status, Source: string(pl.p.Source),
			Ref: pl.p.Ref, SHA: pl.p.SHA, WebURL: pl.p.WebURL, CreatedAt: pl.p.CreatedAt, UpdatedAt: pl.p.UpdatedAt,
		})
	}
	return jsonAnswer(http.StatusOK, out)
}

func (s *Server) createPipeline(p *project, body []byte) answer {
	var opt struct {
		Ref       string `json:"ref"`
		Variables []struct {
			Key          string `json:"key"`
			Value        string `json:"value"`
			VariableType string `json:"variable_type"`
		} `json:"variables"`
	}
	if err := json.Unmarshal(body, &opt); err != nil || opt.Ref == "" {
		return message(http.StatusBadRequest, "ref is missing")
	}
	sha, ok := gitRefSHA(p.remote, opt.Ref)
	if !ok {
		return message(http.StatusBadRequest, map[string][]string{"base": {"Reference not found"}})
	}
	now := time.Now().UTC()
	s.nextID++
	id := s.nextID
	pl := &pipeline{project: p, p: &gitlab.Pipeline{
		ID: id, IID: int64(len(s.pipelines) + 1), ProjectID: p.id, Status: "created", Source: gitlab.PipelineSourceAPI,
		Ref: opt.Ref, SHA: sha, CreatedAt: &now, UpdatedAt: &now,
		WebURL: fmt.Sprintf("%s/%s/-/pipelines/%d", s.srv.URL, p.path, id),
		User:   &gitlab.BasicUser{ID: 1, Username: "lockstep-bot", Name: "lockstep"},
	}}
	for _, v := range opt.Variables {
		vt := gitlab.VariableTypeValue(v.VariableType)
		if vt == "" {
			vt = gitlab.EnvVariableType
		}
		pl.variables = append(pl.variables, &gitlab.PipelineVariable{Key: v.Key, Value: v.Value, VariableType: vt})
	}
	for _, js := range p.jobs {
		s.nextID++
		j := &job{pipeline: pl, j: &gitlab.Job{
			ID: s.nextID, Name: js.Name, Stage: js.Stage, Status: "created", AllowFailure: js.AllowFailure,
			Ref: opt.Ref, CreatedAt: &now, WebURL: fmt.Sprintf("%s/%s/-/jobs/%d", s.srv.URL, p.path, s.nextID),
			Pipeline: gitlab.JobPipeline{ID: id, ProjectID: p.id, Ref: opt.Ref, Sha: sha},
		}}
		pl.jobs = append(pl.jobs, j)
		s.jobs[j.j.ID] = j
	}
	// The first stage's jobs are pending at once.
	if len(pl.jobs) > 0 {
		for _, j := range pl.jobs {
			if j.j.Stage == pl.jobs[0].j.Stage {
				j.j.Status = "pending"
			}
		}
		pl.p.Status = "pending"
	}
	s.pipelines[id] = pl
	for _, j := range pl.jobs {
		j.j.Pipeline.Status = pl.p.Status
	}
	if p.auto && !s.closed {
		s.auto.Add(1)
		go s.runAuto(pl)
	} else {
		s.sendHookAsync(s.eventLocked(pl))
	}
	return jsonAnswer(http.StatusCreated, pl.p)
}

// runAuto runs pl by itself: every job in order, as its JobSpec says.
func (s *Server) runAuto(pl *pipeline) {
	defer s.auto.Done()
	s.mu.Lock()
	body := s.eventLocked(pl)
	specs := map[int64]JobSpec{}
	for i, j := range pl.jobs {
		specs[j.j.ID] = pl.project.jobs[i]
	}
	jobs := append([]*job(nil), pl.jobs...)
	s.mu.Unlock()
	s.sendHook(body) // pending
	for _, j := range jobs {
		s.mu.Lock()
		stop := s.closed || pl.p.Status == "canceled"
		s.mu.Unlock()
		if stop {
			return
		}
		spec := specs[j.j.ID]
		s.StartJob(j.j.ID)
		if spec.Trace != "" {
			s.AppendTrace(j.j.ID, spec.Trace)
		}
		status := spec.Status
		if status == "" {
			status = "success"
		}
		s.FinishJob(j.j.ID, status, spec.FailureReason)
	}
}

// cancelLocked cancels pl and its unfinished jobs.
func (s *Server) cancelLocked(pl *pipeline) {
	if terminal(pl.p.Status) {
		return
	}
	now := time.Now().UTC()
	for _, j := range pl.jobs {
		if !terminal(j.j.Status) {
			j.j.Status = "canceled"
			j.j.FinishedAt = &now
		}
	}
	pl.p.Status = "canceled"
	pl.p.FinishedAt = &now
	pl.p.UpdatedAt = &now
	s.sendHookAsync(s.eventLocked(pl))
}
