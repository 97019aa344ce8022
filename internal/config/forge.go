package config

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults of the forge settings.
const (
	DefaultGitHubEndpoint = "https://api.github.com"
	DefaultResyncInterval = 5 * time.Minute
	DefaultTrustCacheTTL  = 10 * time.Minute
)

// GitHub says how lockstep reaches GitHub: its API endpoint, its
// credentials (a personal token, or a GitHub App) and the webhook secret.
type GitHub struct {
	// Endpoint is the REST API's base URL; default https://api.github.com.
	// GitHub Enterprise uses https://HOST/api/v3.
	Endpoint string `yaml:"endpoint"`
	// TokenFile holds a personal access token. Set it, or AppID and
	// PrivateKeyFile, not both.
	TokenFile      string `yaml:"token_file"`
	AppID          int64  `yaml:"app_id"`
	PrivateKeyFile string `yaml:"private_key_file"`
	// WebhookSecretFile holds the secret GitHub signs deliveries with.
	WebhookSecretFile string `yaml:"webhook_secret_file"`
	// BotLogin is the login lockstep acts as; default asked from GitHub.
	BotLogin string `yaml:"bot_login"`
	// HourlyTokens and AllowedBurst bound how many API calls lockstep
	// makes per hour, like Prow's --github-hourly-tokens and
	// --github-allowed-burst; zero means no budget beyond GitHub's own.
	HourlyTokens int `yaml:"hourly_tokens"`
	AllowedBurst int `yaml:"allowed_burst"`
}

// Configured reports whether g gives lockstep a way to call GitHub.
func (g GitHub) Configured() bool { return g.TokenFile != "" || g.AppID != 0 }

// EffectiveEndpoint returns Endpoint or the default.
func (g GitHub) EffectiveEndpoint() string {
	if g.Endpoint == "" {
		return DefaultGitHubEndpoint
	}
	return strings.TrimRight(g.Endpoint, "/")
}

// Trust says whose pull requests and commands lockstep acts on
// (COMMANDS.md, "Who is trusted").
type Trust struct {
	// Orgs whose members are trusted, besides each repository's own owner.
	Orgs []string `yaml:"orgs"`
	// Users are trusted logins, bots included.
	Users []string `yaml:"users"`
	// Apps are GitHub App names whose "NAME[bot]" accounts are trusted.
	Apps []string `yaml:"apps"`
	// OnlyOrgMembers stops trusting collaborators who are not members.
	OnlyOrgMembers bool `yaml:"only_org_members"`
	// CacheTTL is how long membership answers are kept; default 10m.
	CacheTTL Duration `yaml:"cache_ttl"`
}

// EffectiveCacheTTL returns CacheTTL or its default.
func (t Trust) EffectiveCacheTTL() time.Duration {
	if t.CacheTTL.Duration <= 0 {
		return DefaultTrustCacheTTL
	}
	return t.CacheTTL.Duration
}

// TrustsUser reports whether login is listed in Users (case-insensitive,
// as GitHub logins are) or is the bot account of a listed App.
func (t Trust) TrustsUser(login string) bool {
	if slices.ContainsFunc(t.Users, func(u string) bool { return strings.EqualFold(u, login) }) {
		return true
	}
	if name, ok := strings.CutSuffix(login, "[bot]"); ok {
		return slices.ContainsFunc(t.Apps, func(a string) bool { return strings.EqualFold(a, name) })
	}
	return false
}

// EffectiveResyncInterval returns ResyncInterval or its default.
func (c *Config) EffectiveResyncInterval() time.Duration {
	if c.ResyncInterval.Duration <= 0 {
		return DefaultResyncInterval
	}
	return c.ResyncInterval.Duration
}

func (c *Config) validateForge(p *problemList) {
	g := c.GitHub
	if g.Endpoint != "" {
		u, err := url.Parse(g.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.addf("github.endpoint", "%q is not an http(s) URL", g.Endpoint)
		}
	}
	if g.TokenFile != "" && (g.AppID != 0 || g.PrivateKeyFile != "") {
		p.addf("github", "set token_file or app_id with private_key_file, not both")
	}
	if (g.AppID != 0) != (g.PrivateKeyFile != "") {
		p.addf("github", "a GitHub App needs both app_id and private_key_file")
	}
	if g.AppID < 0 {
		p.addf("github.app_id", "must be positive")
	}
	if g.HourlyTokens < 0 {
		p.addf("github.hourly_tokens", "must not be negative")
	}
	if g.AllowedBurst < 0 || (g.AllowedBurst > 0 && g.HourlyTokens == 0) {
		p.addf("github.allowed_burst", "needs hourly_tokens and must not be negative")
	}
	if g.BotLogin != "" && !loginRE.MatchString(strings.TrimSuffix(g.BotLogin, "[bot]")) {
		p.addf("github.bot_login", "%q is not a GitHub login", g.BotLogin)
	}
	for i, org := range c.Trust.Orgs {
		if !ownerRE.MatchString(org) {
			p.addf(indexPath("trust.orgs", i), "%q is not a GitHub organization name", org)
		}
	}
	for i, u := range c.Trust.Users {
		if !loginRE.MatchString(strings.TrimSuffix(u, "[bot]")) {
			p.addf(indexPath("trust.users", i), "%q is not a GitHub login", u)
		}
	}
	for i, a := range c.Trust.Apps {
		if strings.HasSuffix(a, "[bot]") || !ownerRE.MatchString(a) {
			p.addf(indexPath("trust.apps", i), "%q: give the App's name, without [bot]", a)
		}
	}
	if !c.Trust.CacheTTL.Valid() {
		p.addf("trust.cache_ttl", "invalid duration %q", c.Trust.CacheTTL.String())
	} else if c.Trust.CacheTTL.Duration < 0 {
		p.addf("trust.cache_ttl", "must not be negative")
	}
	if !c.ResyncInterval.Valid() {
		p.addf("resync_interval", "invalid duration %q", c.ResyncInterval.String())
	} else if d := c.ResyncInterval.Duration; d != 0 && d < 10*time.Second {
		p.addf("resync_interval", "%s is too short: at least 10s", d)
	}
	if c.BaseURL != "" {
		if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.addf("base_url", "%q is not an http(s) URL", c.BaseURL)
		}
	}
}

// loginRE matches GitHub logins.
var loginRE = ownerRE

// fileKind says what a file the configuration names must hold.
type fileKind int

const (
	secretFile fileKind = iota // a non-empty secret (a token, the webhook secret)
	pemKeyFile                 // a PEM-encoded private key
)

// namedFile is a file the configuration names: a field whose YAML name
// ends in _file.
type namedFile struct {
	path  string // the field's path, as problems name it
	value *string
	kind  fileKind
}

// files returns every file field of the configuration. resolveFiles and
// checkFiles read this one list, so a field added here is both resolved
// against the configuration's directory and checked by Load; a test
// fails if a *_file field is missing from it.
func (c *Config) files() []namedFile {
	return []namedFile{
		{"github.token_file", &c.GitHub.TokenFile, secretFile},
		{"github.private_key_file", &c.GitHub.PrivateKeyFile, pemKeyFile},
		{"github.webhook_secret_file", &c.GitHub.WebhookSecretFile, secretFile},
		{"gitlab.token_file", &c.GitLab.TokenFile, secretFile},
		{"gitlab.webhook_token_file", &c.GitLab.WebhookTokenFile, secretFile},
	}
}

// resolveFiles makes the relative file paths of the forge settings
// absolute against dir, the configuration file's directory.
func (c *Config) resolveFiles(dir string) {
	for _, f := range c.files() {
		if *f.value != "" && !filepath.IsAbs(*f.value) {
			*f.value = filepath.Join(dir, *f.value)
		}
	}
}

// checkFiles reads every file the configuration names (relative paths
// against dir) and returns a problem, with the field's path, for each
// that is missing, unreadable, empty, or not what the field needs: a
// missing secret found at start is better than every webhook refused
// later.
func (c *Config) checkFiles(dir string) problemList {
	var p problemList
	for _, f := range c.files() {
		name := *f.value
		if name == "" {
			continue
		}
		var note string
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
			note = fmt.Sprintf(" (relative paths are read from the configuration file's directory, %s)", dir)
		}
		problem := func(format string, args ...any) { p.addf(f.path, "%s%s", fmt.Sprintf(format, args...), note) }
		fi, err := os.Stat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problem("file %s does not exist", name)
			continue
		case err != nil:
			problem("cannot read %s: %v", name, unwrapPathError(err))
			continue
		case fi.IsDir():
			problem("%s is a directory, not a file", name)
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			problem("cannot read %s: %v", name, unwrapPathError(err))
			continue
		}
		switch f.kind {
		case secretFile:
			if len(bytes.TrimSpace(b)) == 0 {
				problem("file %s is empty", name)
			}
		case pemKeyFile:
			if block, _ := pem.Decode(b); block == nil || !strings.HasSuffix(block.Type, "PRIVATE KEY") {
				problem("file %s holds no PEM-encoded private key (the .pem file GitHub gives for the App)", name)
			}
		}
	}
	return p
}

// unwrapPathError returns the reason of a *fs.PathError, whose path the
// message already names.
func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
