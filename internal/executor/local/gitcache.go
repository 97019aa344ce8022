package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// gitCache keeps one bare mirror per clone URL, under its directory, from
// which every execution's repository is seeded: lockstep writes the
// workspace's .git itself (seed), borrowing the mirror's objects
// (objects/info/alternates) and copying its branches as the remote's, as
// `git clone --shared --no-checkout` would, but without the three
// processes a clone starts. The workspace then only checks out. So a
// thousand runs of one repository fetch it once and clone it never.
//
// A mirror is fetched only when it lacks what a run needs: a commit the
// run names (base or head SHA) that it does not have, or, for a run that
// names only a branch, a fetch of that branch begun after the run was
// created (so the run sees the branch at least as new as when it was
// asked for). Fetches of one mirror are serialized by a mutex within
// lockstep and by flock(2) on MIRROR.lock across processes (lockstep run
// and lockstep serve may share a data directory). Clones read the mirror
// meanwhile: git updates refs and adds packs atomically.
//
// Objects are never deleted from a mirror (gc.auto=0, no prune), since
// workspaces seeded from the mirror depend on them for as long as they
// live. Jobs only ever read the mirror, through their clone's alternates.
//
// It is safe for concurrent use.
type gitCache struct {
	dir   string
	git   string
	clock clock.PassiveClock
	log   *slog.Logger

	mu sync.Mutex
	// mu guards mirrors.
	mirrors map[string]*mirror
}

// mirror is the cache of one clone URL.
type mirror struct {
	url, path string

	// mu serializes the preparation and fetches of the mirror in this
	// process, and guards the fields below.
	mu    sync.Mutex
	ready bool                 // initialized by this process
	have  map[string]bool      // commits known to be in the mirror
	since map[string]time.Time // branch → when its last good fetch began
	heads []string             // "SHA refs/heads/NAME" lines, as of the last fetch
}

// mirrorTimeout bounds one fetch into a mirror.
const mirrorTimeout = 10 * time.Minute

func newGitCache(dir, git string, clk clock.PassiveClock, log *slog.Logger) *gitCache {
	return &gitCache{dir: dir, git: git, clock: clk, log: log, mirrors: map[string]*mirror{}}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// mirrorFor returns the mirror of url, DIR/<readable part>-<hash>.git.
func (c *gitCache) mirrorFor(url string) *mirror {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.mirrors[url]; ok {
		return m
	}
	sum := sha256.Sum256([]byte(url))
	base := strings.TrimSuffix(filepath.Base(strings.TrimRight(url, "/")), ".git")
	base = strings.Trim(unsafeName.ReplaceAllString(base, "_"), "._")
	if len(base) > 40 {
		base = base[:40]
	}
	m := &mirror{
		url:   url,
		path:  filepath.Join(c.dir, base+"-"+hex.EncodeToString(sum[:8])+".git"),
		have:  map[string]bool{},
		since: map[string]time.Time{},
	}
	c.mirrors[url] = m
	return m
}

// prepare makes the mirror of r's clone URL hold what r needs, seeds the
// repository in src from it, and returns the mirror's path; "" means the
// workspace clones from the URL itself: r clones nothing, or names no
// branch and no commit (its default branch), or the mirror could not get
// its branch. A commit the mirror could not get is left to the workspace
// to fetch, as without a cache.
func (c *gitCache) prepare(ctx context.Context, r *run.Run, src string) string {
	refs := r.Spec.Refs
	if c == nil || refs.CloneURL == "" || (refs.BaseRef == "" && refs.BaseSHA == "") ||
		!safeRefName(refs.BaseRef) || strings.ContainsAny(refs.CloneURL, "\n\x00") {
		return ""
	}
	m := c.mirrorFor(refs.CloneURL)
	var shas []string
	var branches []string // branches fetched for their own sake: no SHA pins them
	if refs.BaseSHA != "" {
		shas = append(shas, refs.BaseSHA)
	} else {
		branches = append(branches, refs.BaseRef)
	}
	if refs.Pull != 0 && refs.HeadSHA != "" {
		shas = append(shas, refs.HeadSHA)
	}

	heads, err := c.update(ctx, m, r, shas, branches)
	if err == nil {
		err = seed(src, m.path, refs, heads)
	}
	if err != nil {
		c.log.Warn("git cache: cloning from the repository itself", "run", r.ID, "url", refs.CloneURL, "err", err)
		if rerr := os.RemoveAll(filepath.Join(src, ".git")); rerr != nil {
			c.log.Warn("git cache: cannot remove a partly seeded repository", "run", r.ID, "err", rerr)
		}
		return ""
	}
	return m.path
}

// update fetches into m what r needs unless it has it, and returns the
// mirror's branches.
func (c *gitCache) update(ctx context.Context, m *mirror, r *run.Run, shas, branches []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.fresh(shas, branches, r.CreatedAt) {
		if err := c.lockAndFetch(ctx, m, r, shas, branches); err != nil {
			return nil, err
		}
	}
	return m.heads, nil
}

// seed writes in src the .git of a clone of refs.CloneURL whose objects
// are the mirror's, as `git clone --shared --no-checkout --template=`
// lays it out (gitrepository-layout(5)): HEAD on the base branch, origin
// naming the repository itself, the mirror's branches as origin's. heads
// are "SHA refs/heads/NAME" lines.
func seed(src, mirror string, refs run.Refs, heads []string) error {
	git := filepath.Join(src, ".git")
	for _, d := range []string{"objects/info", "objects/pack", "refs/heads", "refs/tags"} {
		if err := os.MkdirAll(filepath.Join(git, d), 0o755); err != nil {
			return fmt.Errorf("seed repository: %w", err)
		}
	}
	head := "ref: refs/heads/" + refs.BaseRef
	if refs.BaseRef == "" {
		head = refs.BaseSHA // detached, as the checkout leaves it
	}
	var packed strings.Builder
	for _, h := range heads {
		sha, name, _ := strings.Cut(h, " ")
		fmt.Fprintf(&packed, "%s refs/remotes/origin/%s\n", sha, strings.TrimPrefix(name, "refs/heads/"))
	}
	quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(refs.CloneURL)
	files := []struct{ name, data string }{
		{"HEAD", head + "\n"},
		{"config", "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n" +
			"[remote \"origin\"]\n\turl = \"" + quoted + "\"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"},
		{"objects/info/alternates", filepath.Join(mirror, "objects") + "\n"},
		{"packed-refs", packed.String()},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(git, f.name), []byte(f.data), 0o644); err != nil {
			return fmt.Errorf("seed repository: %w", err)
		}
	}
	return nil
}

// safeRefName reports whether a branch name can be written into a seeded
// repository as it is; others (which git would refuse anyway) clone.
func safeRefName(name string) bool {
	return name == "" || (refName.MatchString(name) && !strings.Contains(name, "..") &&
		!strings.HasPrefix(name, "/") && !strings.HasSuffix(name, "/") && !strings.HasSuffix(name, ".lock"))
}

var (
	refName  = regexp.MustCompile(`^[A-Za-z0-9._/+-]+$`)
	headLine = regexp.MustCompile(`^[0-9a-f]{40,64} refs/heads/[^ ]+$`)
)

// fresh reports whether m has every commit of shas and a fetch of every
// branch begun no earlier than created. m.mu must be held.
func (m *mirror) fresh(shas, branches []string, created time.Time) bool {
	if !m.ready {
		return false
	}
	for _, s := range shas {
		if !m.have[s] {
			return false
		}
	}
	for _, b := range branches {
		if t, ok := m.since[b]; !ok || t.Before(created) {
			return false
		}
	}
	return true
}

// lockAndFetch takes the mirror's file lock, creates the mirror if need
// be, and fetches what is missing. m.mu must be held.
func (c *gitCache) lockAndFetch(ctx context.Context, m *mirror, r *run.Run, shas, branches []string) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("create cache directory: %w", err)
	}
	lock, err := os.OpenFile(m.path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open mirror lock: %w", err)
	}
	defer lock.Close() // releases the flock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock mirror: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, mirrorTimeout)
	defer cancel()

	if !m.ready {
		// Idempotent: init leaves an existing repository as it is.
		for _, args := range [][]string{
			{"init", "--quiet", "--bare", m.path},
			{"-C", m.path, "config", "remote.origin.url", m.url},
			{"-C", m.path, "config", "gc.auto", "0"},
			{"-C", m.path, "config", "gc.pruneExpire", "never"},
			{"-C", m.path, "config", "core.logAllRefUpdates", "false"},
		} {
			if out, err := c.run(ctx, args...); err != nil {
				return fmt.Errorf("create mirror %s: git %s: %w: %s", m.path, args[0], err, out)
			}
		}
		m.ready = true
	}
	// Another process may have fetched while this one waited for the
	// lock: look before fetching.
	missing := c.missing(ctx, m, shas)
	refs := r.Spec.Refs
	var specs []string
	if len(missing) > 0 || len(branches) > 0 {
		if refs.BaseRef != "" {
			specs = append(specs, "refs/heads/"+refs.BaseRef)
		}
	}
	if refs.Pull != 0 && len(missing) > 0 {
		specs = append(specs, "refs/pull/"+strconv.Itoa(refs.Pull)+"/head")
		if refs.HeadRef != "" {
			specs = append(specs, "refs/heads/"+refs.HeadRef)
		}
	}
	// One refspec a fetch, so that a ref the remote does not have (no
	// refs/pull outside GitHub) does not stop the others.
	fetched := map[string]bool{}
	for _, ref := range specs {
		began := c.clock.Now()
		if out, err := c.run(ctx, "-C", m.path, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "origin", "+"+ref+":"+ref); err != nil {
			c.log.Debug("git cache: fetch failed", "url", m.url, "ref", ref, "err", err, "output", string(out))
			continue
		}
		fetched[ref] = true
		if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
			m.since[b] = began
		}
	}
	if missing = c.missing(ctx, m, missing); len(missing) > 0 {
		// Servers that allow it (GitHub does) give a commit by its SHA.
		args := append([]string{"-C", m.path, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "origin"}, missing...)
		if out, err := c.run(ctx, args...); err != nil {
			c.log.Debug("git cache: fetch by SHA failed", "url", m.url, "err", err, "output", string(out))
		}
		c.missing(ctx, m, missing)
	}
	for _, b := range branches {
		if !fetched["refs/heads/"+b] {
			return fmt.Errorf("cannot fetch branch %s into the mirror", b)
		}
	}
	out, err := c.run(ctx, "-C", m.path, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
	if err != nil {
		return fmt.Errorf("list the mirror's branches: %w: %s", err, out)
	}
	m.heads = m.heads[:0]
	for _, line := range strings.Split(string(out), "\n") {
		if headLine.MatchString(line) {
			m.heads = append(m.heads, line)
		}
	}
	return nil
}

// missing returns the commits of shas that m lacks, and records the
// others as present: nothing is ever removed from a mirror.
func (c *gitCache) missing(ctx context.Context, m *mirror, shas []string) []string {
	var out []string
	for _, s := range shas {
		if m.have[s] {
			continue
		}
		if _, err := c.run(ctx, "-C", m.path, "cat-file", "-e", s+"^{commit}"); err != nil {
			out = append(out, s)
			continue
		}
		m.have[s] = true
	}
	return out
}

// run runs git with args and returns its combined output.
func (c *gitCache) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.git, args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if os.Getenv("GIT_SSH_COMMAND") == "" {
		cmd.Env = append(cmd.Env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	return cmd.CombinedOutput()
}
