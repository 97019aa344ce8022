// Package pgtest gives each test its own empty PostgreSQL schema, so that
// tests run in parallel on one server and leave nothing behind.
//
// The server is named by the environment variable LOCKSTEP_TEST_POSTGRES,
// a PostgreSQL URL, by default postgres://postgres@127.0.0.1:5432/postgres
// (the PostgreSQL of the CI machine, which .ci/run starts). A server that
// cannot be reached fails the test: it never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the environment variable that points the tests at a
// PostgreSQL server.
const EnvVar = "LOCKSTEP_TEST_POSTGRES"

// DefaultURL is the server tests use when EnvVar is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres"

// ServerURL returns the URL of the tests' server.
func ServerURL() string {
	if u := os.Getenv(EnvVar); u != "" {
		return u
	}
	return DefaultURL
}

// URL creates a new, empty schema for t on the tests' server, drops it
// when t ends, and returns a URL whose connections use it (search_path).
func URL(t testing.TB) string {
	t.Helper()
	server := ServerURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL at %s (set %s to another server): %v", server, EnvVar, err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 8)
	rand.Read(b)
	schema := "lockstep_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvVar, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
