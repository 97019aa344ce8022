package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/utils/clock"
)

// DefaultReloadDelay is how long Watch waits after the last change to the
// configuration's directory before reading the file, so that an editor's
// truncate-then-write is read once, whole.
const DefaultReloadDelay = 100 * time.Millisecond

// Watch reloads the configuration file at path into g whenever it changes,
// until ctx is done, waiting DefaultReloadDelay for changes to settle. See
// Watcher.
func Watch(ctx context.Context, path string, g *Getter, logger *slog.Logger) error {
	w := &Watcher{Path: path, Getter: g, Logger: logger, Delay: DefaultReloadDelay}
	return w.Run(ctx)
}

// Watcher reloads a configuration file into a Getter when the file
// changes. It watches the file's directory, not the file, because editors
// and Kubernetes ConfigMap volumes replace a file by renaming another over
// it or by swapping a symbolic link; it also watches the directory of the
// file's resolved target when path is a symbolic link. On any change it
// reads the file and, if its content differs from the current
// configuration's, loads it: a valid file replaces the configuration and
// is logged at info level as "config reloaded"; an invalid one (or an
// empty one, which is what a file being rewritten looks like) leaves the
// current configuration in place and is logged at error level with
// every problem.
type Watcher struct {
	// Path is the configuration file. Required.
	Path string
	// Getter receives each valid configuration. Required.
	Getter *Getter
	// Logger reports reloads and their problems; nil discards them.
	Logger *slog.Logger
	// Clock times Delay; nil means the real clock.
	Clock clock.Clock
	// Delay is how long to wait after the last change before reading the
	// file; zero reads it at once.
	Delay time.Duration
}

// Run watches until ctx is done, then returns nil. It returns an error
// only if the watch cannot be set up or the file system watcher stops.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Getter == nil {
		return errors.New("watch config: no Getter")
	}
	clk := w.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	logger := w.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path, err := filepath.Abs(w.Path)
	if err != nil {
		return fmt.Errorf("watch config %s: %w", w.Path, err)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config %s: %w", path, err)
	}
	defer fw.Close()
	dir := filepath.Dir(path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch config directory %s: %w", dir, err)
	}

	r := reloader{path: path, getter: w.Getter, logger: logger.With("path", path), fw: fw, dir: dir}
	r.last = r.getter.Get().digest
	r.followTarget()
	r.check() // the file may have changed before the watch began
	logger.Debug("watching config", "path", path, "dir", dir)

	var timer clock.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	changed := func() {
		if w.Delay <= 0 {
			r.check()
			return
		}
		if timer != nil {
			timer.Stop()
		}
		timer = clk.NewTimer(w.Delay)
		fire = timer.C()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return fmt.Errorf("watch config %s: file system watcher closed", path)
			}
			logger.Debug("config directory changed", "event", ev.String())
			changed()
		case err, ok := <-fw.Errors:
			if !ok {
				return fmt.Errorf("watch config %s: file system watcher closed", path)
			}
			// Events may have been lost (an overflow): read the file anyway.
			logger.Warn("watching config", "path", path, "error", err)
			changed()
		case <-fire:
			timer, fire = nil, nil
			r.check()
		}
	}
}

// reloader is the state of one Watcher.Run.
type reloader struct {
	path   string
	getter *Getter
	logger *slog.Logger
	fw     *fsnotify.Watcher
	dir    string // path's directory, always watched
	target string // the resolved target's directory, when watched too
	// last is the digest of the content last acted upon, and lastErr the
	// read error last logged, so that one state is logged once.
	last    [sha256.Size]byte
	lastErr string
}

// check reads the file and loads it if it changed.
func (r *reloader) check() {
	defer r.followTarget()
	data, err := os.ReadFile(r.path)
	if err != nil {
		if msg := err.Error(); msg != r.lastErr {
			r.lastErr = msg
			r.logger.Error("config reload failed; keeping the previous configuration", "error", err)
		}
		return
	}
	r.lastErr = ""
	digest := sha256.Sum256(data)
	if digest == r.last {
		return
	}
	r.last = digest
	if digest == r.getter.Get().digest {
		return
	}
	if len(bytes.TrimSpace(data)) == 0 {
		r.logger.Error("config reload failed; keeping the previous configuration",
			"problems", []string{"the file is empty (write `repos: {}` for a configuration without repositories)"})
		return
	}
	c, err := load(r.path, data)
	if err != nil {
		var problems []string
		for _, p := range Problems(err) {
			problems = append(problems, p.Error())
		}
		r.logger.Error("config reload failed; keeping the previous configuration", "problems", problems)
		return
	}
	r.getter.Set(c)
	r.logger.Info("config reloaded", "repos", len(c.Repos), "jobs", len(c.Jobs()))
}

// followTarget watches the directory of the file path resolves to, when
// it is not path's own, so that edits to a symbolic link's target are
// seen. A Kubernetes ConfigMap swaps its target directory on every
// update; the old one is dropped.
func (r *reloader) followTarget() {
	resolved, err := filepath.EvalSymlinks(r.path)
	if err != nil {
		return
	}
	dir := filepath.Dir(resolved)
	if dir == r.dir || dir == r.target {
		return
	}
	if r.target != "" {
		_ = r.fw.Remove(r.target) // it is usually gone already
		r.target = ""
	}
	if err := r.fw.Add(dir); err != nil {
		r.logger.Debug("cannot watch the config file's target directory", "dir", dir, "error", err)
		return
	}
	r.target = dir
}
