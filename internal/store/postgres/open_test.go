package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
)

func testRun(key string) *run.Run {
	return &run.Run{Spec: run.Spec{
		Job:        "unit",
		Type:       run.Presubmit,
		Refs:       run.Refs{Repo: "acme/widgets", Pull: 1, BaseSHA: "b0", HeadSHA: "h1"},
		Script:     "make test",
		TriggerKey: key,
	}}
}

// TestOpenBadInput checks that what keeps a store from opening is one
// line that says what is wrong, returned promptly.
func TestOpenBadInput(t *testing.T) {
	// A port nobody listens on: listen, note the port, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	server, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	unknownUser := *server
	unknownUser.User = url.UserPassword("lockstep_no_such_role", "wrong")
	noDB := *server
	noDB.Path = "/lockstep_no_such_database"

	tests := []struct {
		name, url, want string
	}{
		{"unreachable", "postgres://postgres@" + closed + "/postgres", "cannot reach PostgreSQL"},
		{"bad credentials", unknownUser.String(), "refused the credentials"},
		{"no database", noDB.String(), "database does not exist"},
		{"not a URL", "postgres://[::1", "is not a PostgreSQL URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			s, err := Open(ctx, tt.url)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s): got nil error, want one", tt.url)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("Open(%s): got %q, want it to say %q", tt.url, msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("Open(%s): got %q, want one line", tt.url, msg)
			}
			if strings.Contains(msg, "wrong") {
				t.Errorf("Open(%s): got %q, want the password left out", tt.url, msg)
			}
		})
	}
}

// TestConnectErrorWrongPassword checks the message for the error a
// server with password authentication answers a wrong password with. (The
// tests' server trusts its clients, so it never answers with it.)
func TestConnectErrorWrongPassword(t *testing.T) {
	err := connectError("lockstep@db:5432/ci", &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "lockstep"`})
	want := `open store lockstep@db:5432/ci: PostgreSQL refused the credentials (password authentication failed for user "lockstep"): check the user and password in the store URL`
	if got := err.Error(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRedact(t *testing.T) {
	tests := map[string]string{
		"postgres://u:secret@h/db":    "postgres://u:xxxxx@h/db",
		"postgres://u@h/db":           "postgres://u@h/db",
		"postgres://h/db?sslmode=off": "postgres://h/db?sslmode=off",
	}
	for in, want := range tests {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q): got %q, want %q", in, got, want)
		}
	}
}

// TestMigrations checks that a database of an older schema is upgraded
// keeping its data, and that one of a newer schema is refused.
func TestMigrations(t *testing.T) {
	ctx := t.Context()
	u := pgtest.URL(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	// A database left by a lockstep that knew only the first step.
	s0, err := Open(ctx, u, WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	s0.Close()
	if _, err := conn.Exec(ctx, `DROP TABLE leases, log_chunks, refusals; DROP TRIGGER revision_notify ON revision; DROP FUNCTION lockstep_notify_change(); UPDATE schema_version SET version = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO runs (trigger_key, repo, pull, sha, job, type, state, created_at, rv, labels, spec, status)
VALUES ('old/1', 'acme/widgets', 0, 'abc', 'unit', 'manual', 'pending', 0, 1, 'null', '{"job":"unit","type":"manual","trigger_key":"old/1"}', '{"state":"pending"}');
UPDATE revision SET rev = 1`); err != nil {
		t.Fatal(err)
	}

	s := openURL(t, u)
	var version int
	if err := conn.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if want := len(migrations()); version != want {
		t.Errorf("schema version after upgrade: got %d, want %d", version, want)
	}
	old, err := s.GetRun(ctx, 1)
	if err != nil {
		t.Fatalf("run from before the upgrade: %v", err)
	}
	if old.Spec.TriggerKey != "old/1" {
		t.Errorf("run from before the upgrade: got key %q, want old/1", old.Spec.TriggerKey)
	}
	if _, err := s.AcquireLease(ctx, "leader", "a", time.Minute); err != nil {
		t.Errorf("AcquireLease after the upgrade: %v", err)
	}
	if err := s.AppendLog(ctx, old.ID, 0, []byte("hello")); err != nil {
		t.Errorf("AppendLog after the upgrade: %v", err)
	}

	// Opening it again changes nothing.
	openURL(t, u)

	// A newer lockstep migrated it further.
	future := len(migrations()) + 1
	if _, err := conn.Exec(ctx, `UPDATE schema_version SET version = $1`, future); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, u)
	if err == nil {
		s2.Close()
		t.Fatalf("Open of a database with schema version %d: got nil error, want one", future)
	}
	if want := fmt.Sprintf("schema version %d, newer than the %d this lockstep knows: upgrade lockstep", future, len(migrations())); !strings.Contains(err.Error(), want) {
		t.Errorf("Open error: got %q, want it to say %q", err, want)
	}
}

// TestConcurrentOpenMigratesOnce opens many stores on one empty schema at
// once, as replicas starting together do.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	u := pgtest.URL(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := Open(t.Context(), u, WithMaxConns(2))
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestWatchAcrossStores checks that a write through one Store wakes a
// watcher of another Store on the same database, through NOTIFY, well
// before the poll interval.
func TestWatchAcrossStores(t *testing.T) {
	u := pgtest.URL(t)
	a := openURL(t, u, WithPollInterval(time.Hour))
	b := openURL(t, u, WithPollInterval(time.Hour))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	from, err := b.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan store.RunEvent, 1)
	done := make(chan error, 1)
	go func() {
		done <- b.WatchRuns(ctx, from, func(ev store.RunEvent) error {
			got <- ev
			return errStopWatch
		})
	}()
	r, err := a.CreateRun(ctx, testRun("across/1"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Run.ID != r.ID {
			t.Errorf("event: got run %d, want %d", ev.Run.ID, r.ID)
		}
	case <-ctx.Done():
		t.Fatal("the watcher of the other store never saw the write")
	}
	if err := <-done; !errors.Is(err, errStopWatch) {
		t.Errorf("WatchRuns: got %v, want %v", err, errStopWatch)
	}
}

var errStopWatch = errors.New("stop")
