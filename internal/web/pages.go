package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages renders the UI's templates.
type pages struct {
	s *Server
	// sets maps a page name to its template set: the layout and the page.
	sets map[string]*template.Template
	// versions maps a static file's name to a digest of its content, for
	// URLs that change when the file does.
	versions map[string]string
}

// pageNames lists the templates/NAME.html that are pages.
var pageNames = []string{"runs", "run", "pull", "pulls", "repo", "deliveries", "periodics", "markers", "login", "error"}

func newPages(s *Server) *pages {
	p := &pages{s: s, sets: make(map[string]*template.Template), versions: make(map[string]string)}
	files, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	_ = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(files, name)
			sum := sha256.Sum256(b)
			p.versions[name] = hex.EncodeToString(sum[:6])
		}
		return nil
	})
	funcs := p.funcs()
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	for _, name := range pageNames {
		set := template.Must(layout.Clone())
		p.sets[name] = template.Must(set.ParseFS(templateFS, "templates/"+name+".html"))
	}
	return p
}

// static serves the embedded static files; a URL with the file's version
// may be cached for long.
func (p *pages) static() http.Handler {
	files, _ := fs.Sub(staticFS, "static")
	fileServer := http.StripPrefix("/static/", http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("v") != "" {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		fileServer.ServeHTTP(w, r)
	})
}

func (p *pages) funcs() template.FuncMap {
	forge := p.s.opts.ForgeURL
	return template.FuncMap{
		"static": func(name string) string {
			return "/static/" + name + "?v=" + p.versions[name]
		},
		"ts":      formatTime,
		"iso":     isoTime,
		"timeAgo": p.timeAgo,
		"dur":     formatDuration,
		"runDuration": func(r *run.Run) string {
			return runDuration(r, p.s.clock.Now())
		},
		"short": shortSHA,
		"repoURL": func(repo string) string {
			return forge + "/" + repo
		},
		"commitURL": func(repo, sha string) string {
			return forge + "/" + repo + "/commit/" + url.PathEscape(sha)
		},
		"pullURL": func(repo string, n int) string {
			return fmt.Sprintf("%s/%s/pull/%d", forge, repo, n)
		},
		"pullPage":  pullPagePath,
		"repoPage":  repoPagePath,
		"stateIcon": stateIcon,
		"causeText": causeText,
		"reported":  reportedText,
		"shortID":   shortID,
	}
}

// repoPagePath is the UI's page of repo.
func repoPagePath(repo string) string {
	owner, name, _ := strings.Cut(repo, "/")
	return fmt.Sprintf("/repos/%s/%s", url.PathEscape(owner), url.PathEscape(name))
}

// causeText says why r exists, in words.
func causeText(r *run.Run) string {
	var s string
	switch r.Spec.Cause {
	case run.CauseEvent:
		s = "started by a forge event"
	case run.CauseCommand:
		s = "asked for in a comment"
	case run.CauseCron:
		s = "cron schedule"
	case run.CauseInterval:
		s = "interval schedule"
	case run.CauseRunNow:
		s = "run now"
	case run.CauseRerun:
		s = "re-run"
	case run.CauseResync:
		s = "found missing by the resync"
	case run.CauseCLI:
		s = "lockstep run"
	default:
		s = string(r.Spec.Cause)
	}
	if r.Spec.Requester != "" {
		s += ", asked for by " + r.Spec.Requester
	}
	return s
}

// ReporterOffline is the reporter name lockstep uses without forge
// credentials: it only logs the statuses it would post.
const ReporterOffline = "offline"

// reportedText says, per reporter, what lockstep showed of r on the
// forge.
func reportedText(r *run.Run) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(r.Status.Reported)) {
		state := r.Status.Reported[name]
		switch {
		case name == ReporterOffline:
			out = append(out, "not reported: lockstep has no forge credentials, so it only logged the status ("+state+")")
		case state == "retired":
			out = append(out, name+": the status was taken down (the job no longer runs on this commit)")
		default:
			out = append(out, name+": posted "+state)
		}
	}
	return out
}

// shortID shortens a delivery id for narrow screens.
func shortID(id string) string {
	if len(id) > 13 {
		return id[:8] + "…"
	}
	return id
}

// pullPagePath is the UI's page of pull request n of repo.
func pullPagePath(repo string, n int) string {
	owner, name, _ := strings.Cut(repo, "/")
	return fmt.Sprintf("/repos/%s/%s/pulls/%d", url.PathEscape(owner), url.PathEscape(name), n)
}

func stateIcon(s run.State) string {
	switch s {
	case run.Success:
		return "✓"
	case run.Failure:
		return "✗"
	case run.Error:
		return "⚠"
	case run.Aborted:
		return "■"
	case run.Running:
		return "▶"
	case run.Scheduled:
		return "…"
	}
	return "○"
}

func shortSHA(sha string) string {
	if len(sha) > 10 {
		return sha[:10]
	}
	return sha
}

// asTime accepts a time.Time or a *time.Time; ok is false for a nil or
// zero time.
func asTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, !t.IsZero()
	case *time.Time:
		if t == nil {
			return time.Time{}, false
		}
		return *t, !t.IsZero()
	}
	return time.Time{}, false
}

func formatTime(v any) string {
	t, ok := asTime(v)
	if !ok {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func isoTime(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// timeAgo renders a time relative to now, with the exact time for the
// title.
func (p *pages) timeAgo(v any) template.HTML {
	t, ok := asTime(v)
	if !ok {
		return "—"
	}
	d := p.s.clock.Now().Sub(t)
	rel := formatDuration(d.Abs())
	switch {
	case d.Abs() < time.Second:
		rel = "just now"
	case d < 0:
		rel = "in " + rel
	default:
		rel += " ago"
	}
	return template.HTML(fmt.Sprintf(`<time datetime="%s" title="%s">%s</time>`,
		template.HTMLEscapeString(isoTime(t)), template.HTMLEscapeString(formatTime(t)), template.HTMLEscapeString(rel)))
}

// formatDuration renders d coarsely, the way people say it: 45s, 3m 20s,
// 2h 5m, 4d 3h.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// runDuration is how long r ran, or has been running at now.
func runDuration(r *run.Run, now time.Time) string {
	if r.Status.StartedAt == nil {
		return "—"
	}
	end := now
	if r.Status.FinishedAt != nil {
		end = *r.Status.FinishedAt
	}
	return formatDuration(end.Sub(*r.Status.StartedAt))
}

// page is what the layout needs; every page's data embeds it.
type page struct {
	Title string
	Nav   string
	CSRF  string
	Admin bool
	// Here is the current path and query, for a next= parameter.
	Here string
	Now  time.Time
	// Leadership is nil without Options.Leadership.
	Leadership *Leadership
	// Banner is a warning for every page (the job sandbox is
	// unavailable).
	Banner string
}

// base fills in the layout's data for r.
func (p *pages) base(w http.ResponseWriter, r *http.Request, title, nav string) page {
	return page{
		Title: title,
		Nav:   nav,
		CSRF:  p.s.auth.csrfToken(w, r),
		Admin: p.s.auth.signedIn(r),
		Here:  r.URL.RequestURI(),
		Now:   p.s.clock.Now(),

		Leadership: p.s.leadership(),
		Banner:     p.s.opts.Banner,
	}
}

// leadership returns what Options.Leadership says, or nil.
func (s *Server) leadership() *Leadership {
	if s.opts.Leadership == nil {
		return nil
	}
	l := s.opts.Leadership()
	return &l
}

// withBase is implemented by every page's data, through the embedded page.
type withBase interface{ basePage() *page }

func (pg *page) basePage() *page { return pg }

// render writes the page called name with data, whose embedded page it
// fills in when its Title is empty.
func (p *pages) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	if wb, ok := data.(withBase); ok {
		b := wb.basePage()
		if b.Now.IsZero() {
			title, nav := b.Title, b.Nav
			*b = p.base(w, r, title, nav)
		}
	}
	var buf bytes.Buffer
	if err := p.sets[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		p.s.log.Error("render page", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error; see lockstep's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the data of the error page.
type errorData struct {
	page
	Message string
	// SignIn, when set, is where the page offers to sign in.
	SignIn string
}

func (p *pages) errorPage(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	p.render(w, r, status, "error", &errorData{page: page{Title: title}, Message: message})
}

// internalError logs err and answers with a page that says where to look.
func (p *pages) internalError(w http.ResponseWriter, r *http.Request, err error) {
	p.s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	p.errorPage(w, r, http.StatusInternalServerError, "Something went wrong", "lockstep could not answer this request. Its log says why.")
}

// actionError answers a failed re-run or abort.
func (p *pages) actionError(w http.ResponseWriter, r *http.Request, action string, err error) {
	status, internal := actionStatus(err)
	if internal {
		p.internalError(w, r, err)
		return
	}
	p.errorPage(w, r, status, action+" refused", err.Error())
}

// pathID reads the {id} path value as a run ID, answering the request
// itself when it is not one.
func (p *pages) pathID(w http.ResponseWriter, r *http.Request) (run.ID, bool) {
	var id int64
	if _, err := fmt.Sscan(r.PathValue("id"), &id); err != nil || id <= 0 || fmt.Sprint(id) != r.PathValue("id") {
		p.errorPage(w, r, http.StatusNotFound, "No such run", fmt.Sprintf("%q is not a run number.", r.PathValue("id")))
		return 0, false
	}
	return run.ID(id), true
}

// pageURL returns p with query q, or p alone when q is empty.
func pageURL(p string, q url.Values) string {
	if len(q) == 0 {
		return p
	}
	return p + "?" + q.Encode()
}
