package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/postgres"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// storeEnv names the environment variable that chooses the store when
// --store is not given.
const storeEnv = "LOCKSTEP_STORE"

// openStore opens the store url names: empty for the embedded SQLite file
// in the data directory, postgres://… (or postgresql://…) for PostgreSQL.
// It reports whether several replicas may share the store.
func openStore(ctx context.Context, url, dataDir string, log *slog.Logger) (st store.Store, shared bool, err error) {
	switch {
	case url == "":
		s, err := sqlite.Open(ctx, filepath.Join(dataDir, "lockstep.db"), sqlite.WithLogger(log))
		if err != nil {
			return nil, false, err
		}
		return s, false, nil
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		s, err := postgres.Open(ctx, url, postgres.WithLogger(log))
		if err != nil {
			return nil, false, err
		}
		return s, true, nil
	default:
		scheme, _, _ := strings.Cut(url, "://")
		return nil, false, fmt.Errorf("store %q: unknown kind %q: leave --store empty for the embedded SQLite file, or give a postgres:// URL", postgres.Redact(url), scheme)
	}
}

// lockDataDir takes the lock of the data directory dir, so that a second
// lockstep serve on the same directory is refused instead of running its
// controllers on the same database and workspaces. The lock is the
// operating system's (flock), so a killed process leaves none behind. The
// returned function releases it.
func lockDataDir(dir, listen string) (func(), error) {
	path := filepath.Join(dir, "lockstep.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("data directory %s is in use by another lockstep serve (%s): stop it, or give this one another --data-dir", dir, who)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	// Who holds it, for the message of the next one to try.
	info := "pid " + strconv.Itoa(os.Getpid()) + ", listening on " + listen + ", since " + time.Now().UTC().Format(time.RFC3339)
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info+"\n"), 0)
	}
	return func() {
		_ = f.Truncate(0)
		f.Close()
	}, nil
}
