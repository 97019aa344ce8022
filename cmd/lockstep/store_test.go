package main

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockstep-ci/lockstep/internal/store/postgres"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
)

// TestServeStoreErrors checks that a store lockstep serve cannot use is a
// one-line error at start, not a hang.
func TestServeStoreErrors(t *testing.T) {
	t.Parallel()
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
	badUser := *server
	badUser.User = url.UserPassword("lockstep_no_such_role", "hunter2")

	// A database a newer lockstep migrated.
	newer := pgtest.URL(t)
	st, err := postgres.Open(t.Context(), newer)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	conn, err := pgx.Connect(t.Context(), newer)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `UPDATE schema_version SET version = version + 100`); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, filepath.Join(t.TempDir(), "lockstep.yaml"), "repos: {}\n")

	tests := []struct {
		name, store, want string
	}{
		{"unreachable", "postgres://postgres@" + closed + "/postgres", "cannot reach PostgreSQL"},
		{"bad credentials", badUser.String(), "refused the credentials"},
		{"newer schema", newer, "newer than the"},
		{"unknown kind", "mysql://db/ci", `unknown kind "mysql"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := lockstepCmd(ctx, "serve", "--config", cfg, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
			cmd.Env = append(cmd.Env, storeEnv+"="+tt.store)
			out, err := cmd.CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("serve with store %s: got %v (%v), want it to fail at once\n%s", tt.store, err, ctx.Err(), out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "lockstep: ") || !strings.Contains(last, tt.want) {
				t.Errorf("serve with store %s: last line %q, want a lockstep: error saying %q\n%s", tt.store, last, tt.want, out)
			}
			if strings.Contains(string(out), "hunter2") {
				t.Errorf("serve printed the password:\n%s", out)
			}
		})
	}
}

// TestServeRefusesSecondOnDataDir checks that a second lockstep serve on
// the data directory of a running one is refused, naming the first.
func TestServeRefusesSecondOnDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), "repos: {}\n")
	data := filepath.Join(dir, "data")
	first := startServer(t, cfg, data)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := lockstepCmd(ctx, "serve", "--config", cfg, "--data-dir", data, "--listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("second serve: got %v (%v), want it refused at once\n%s", err, ctx.Err(), out)
	}
	pid := first.cmd.Process.Pid
	if want := "is in use by another lockstep serve (pid " + strconv.Itoa(pid) + ", listening on 127.0.0.1:0"; !strings.Contains(string(out), want) {
		t.Errorf("second serve: got\n%s\nwant it to say %q", out, want)
	}
}
