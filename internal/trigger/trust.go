package trigger

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// userTrusted reports whether login may run code in repo (COMMANDS.md
// rule 1).
func (t *Trigger) userTrusted(ctx context.Context, cfg *config.Config, repo, login string) (bool, error) {
	if login == "" {
		return false, nil
	}
	if isBot(login, t.botLogin(ctx)) || cfg.Trust.TrustsUser(login) {
		return true, nil
	}
	if strings.HasSuffix(login, "[bot]") {
		return false, nil // App accounts are trusted by name only
	}
	ttl := cfg.Trust.EffectiveCacheTTL()
	owner, _, _ := strings.Cut(repo, "/")
	orgs := append([]string{owner}, cfg.Trust.Orgs...)
	for _, org := range orgs {
		ok, err := t.trust.isMember(ctx, org, login, ttl)
		if err != nil || ok {
			return ok, err
		}
	}
	if cfg.Trust.OnlyOrgMembers {
		return false, nil
	}
	return t.trust.isCollaborator(ctx, repo, login, ttl)
}

// pullTrusted reports whether the pull request's code may run (rule 2):
// its author is trusted, or it carries the ok-to-test label.
func (t *Trigger) pullTrusted(ctx context.Context, cfg *config.Config, p *store.PullState) (bool, error) {
	for _, l := range p.Labels {
		if l == LabelOKToTest {
			return true, nil
		}
	}
	return t.userTrusted(ctx, cfg, p.Repo, p.Author)
}

// trustCache keeps the forge's answers about membership and collaboration
// for a while: one question per user and TTL, however many events ask.
type trustCache struct {
	forge forge.Trust
	clock clock.PassiveClock
	calls singleflight.Group

	mu      sync.Mutex // mu guards answers
	answers map[string]trustAnswer
}

type trustAnswer struct {
	yes     bool
	expires time.Time
}

func newTrustCache(f forge.Trust, clk clock.PassiveClock) *trustCache {
	return &trustCache{forge: f, clock: clk, answers: map[string]trustAnswer{}}
}

func (c *trustCache) isMember(ctx context.Context, org, user string, ttl time.Duration) (bool, error) {
	return c.ask(ctx, "member:"+strings.ToLower(org+"/"+user), ttl, func() (bool, error) {
		return c.forge.IsMember(ctx, org, user)
	})
}

func (c *trustCache) isCollaborator(ctx context.Context, repo, user string, ttl time.Duration) (bool, error) {
	return c.ask(ctx, "collaborator:"+strings.ToLower(repo+"/"+user), ttl, func() (bool, error) {
		return c.forge.IsCollaborator(ctx, repo, user)
	})
}

func (c *trustCache) ask(ctx context.Context, key string, ttl time.Duration, q func() (bool, error)) (bool, error) {
	now := c.clock.Now()
	c.mu.Lock()
	a, ok := c.answers[key]
	c.mu.Unlock()
	if ok && now.Before(a.expires) {
		return a.yes, nil
	}
	v, err, _ := c.calls.Do(key, func() (any, error) {
		// Another caller may have just answered.
		c.mu.Lock()
		a, ok := c.answers[key]
		c.mu.Unlock()
		if ok && c.clock.Now().Before(a.expires) {
			return a.yes, nil
		}
		yes, err := q()
		if err != nil {
			return false, fmt.Errorf("ask the forge about %s: %w", key, err)
		}
		c.mu.Lock()
		if len(c.answers) > 100_000 {
			c.answers = map[string]trustAnswer{} // bound memory; answers are cheap to ask again
		}
		c.answers[key] = trustAnswer{yes: yes, expires: c.clock.Now().Add(ttl)}
		c.mu.Unlock()
		return yes, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// filesCache keeps the changed files of pull requests per head SHA: they
// are fetched once per head, however many events and jobs need them.
type filesCache struct {
	forge forge.Pulls
	calls singleflight.Group

	mu    sync.Mutex // mu guards files and order
	files map[string][]string
	order []string
}

const maxCachedHeads = 2048

func newFilesCache(f forge.Pulls) *filesCache {
	return &filesCache{forge: f, files: map[string][]string{}}
}

// get returns the files changed by pull request number of repo at head.
func (c *filesCache) get(ctx context.Context, repo string, number int, head string) ([]string, error) {
	key := fmt.Sprintf("%s#%d@%s", repo, number, head)
	c.mu.Lock()
	files, ok := c.files[key]
	c.mu.Unlock()
	if ok {
		return files, nil
	}
	v, err, _ := c.calls.Do(key, func() (any, error) {
		c.mu.Lock()
		files, ok := c.files[key]
		c.mu.Unlock()
		if ok {
			return files, nil
		}
		files, err := c.forge.ListPullFiles(ctx, repo, number)
		if err != nil {
			return nil, fmt.Errorf("list files of %s#%d: %w", repo, number, err)
		}
		c.mu.Lock()
		c.files[key] = files
		c.order = append(c.order, key)
		if len(c.order) > maxCachedHeads {
			delete(c.files, c.order[0])
			c.order = c.order[1:]
		}
		c.mu.Unlock()
		return files, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]string), nil
}
