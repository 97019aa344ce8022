package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/s2"
	"github.com/mattn/go-sqlite3"

	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

// TestDeliveryBodyEncoding checks that a body comes back as it was
// accepted, stored compressed only when that makes it smaller.
func TestDeliveryBodyEncoding(t *testing.T) {
	payload := testfixtures.GitHubPayload(t, "pull_request", "labeled.payload.json").Body
	random := make([]byte, 8192)
	for i := range random {
		random[i] = byte(rand.N(256))
	}
	tests := []struct {
		name         string
		body         []byte
		want         []byte
		wantEncoding string
	}{
		{"webhook payload", payload, payload, bodyS2},
		{"small", []byte(`{"a":1}`), []byte(`{"a":1}`), bodyAsReceived},
		{"incompressible", random, random, bodyAsReceived},
		{"repetitive", bytes.Repeat([]byte("x"), 1<<20), bytes.Repeat([]byte("x"), 1<<20), bodyS2},
		{"nil", nil, []byte{}, bodyAsReceived},
	}
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("d-%d", i)
			if _, err := s.AcceptDelivery(t.Context(), &store.Delivery{ID: id, Event: "push", Body: tt.body}); err != nil {
				t.Fatalf("AcceptDelivery: %v", err)
			}
			d, err := s.GetDelivery(t.Context(), id)
			if err != nil {
				t.Fatalf("GetDelivery: %v", err)
			}
			if !bytes.Equal(d.Body, tt.want) || d.Body == nil {
				t.Errorf("body: got %d bytes (nil %v), want the %d accepted", len(d.Body), d.Body == nil, len(tt.want))
			}
			var (
				encoding string
				size     int
			)
			if err := s.read.QueryRow(`SELECT body_encoding, length(body) FROM deliveries WHERE id = ?`, id).Scan(&encoding, &size); err != nil {
				t.Fatal(err)
			}
			if encoding != tt.wantEncoding {
				t.Errorf("stored encoding: got %q, want %q", encoding, tt.wantEncoding)
			}
			if encoding == bodyS2 && size >= len(tt.body) {
				t.Errorf("stored size: got %d bytes, want fewer than the %d of the body", size, len(tt.body))
			}
		})
	}
}

// TestStoredDeliveryBodies checks how GetDelivery reads bodies stored by
// other means: as received (as before bodies were compressed), and with
// an encoding or data it cannot read.
func TestStoredDeliveryBodies(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "lockstep.db"))
	tests := []struct {
		name     string
		body     []byte
		encoding string
		want     []byte
		wantErr  string
	}{
		{"as received", []byte(`{"action":"opened"}`), "", []byte(`{"action":"opened"}`), ""},
		{"s2", s2.Encode(nil, []byte(strings.Repeat(`{"a":1}`, 100))), "s2", []byte(strings.Repeat(`{"a":1}`, 100)), ""},
		{"corrupt s2", []byte{0xff, 0xff, 0xff}, "s2", nil, "decode s2 body"},
		{"unknown encoding", []byte(`{}`), "zstd", nil, `unknown encoding "zstd"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("d-%d", i)
			if _, err := s.write.Exec(`INSERT INTO deliveries (id, event, received_at, state, rv, outcome, body, body_encoding)
VALUES (?, 'push', 0, 'pending', ?, '{}', ?, ?)`, id, 1000+i, tt.body, tt.encoding); err != nil {
				t.Fatal(err)
			}
			d, err := s.GetDelivery(t.Context(), id)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("GetDelivery: got %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetDelivery: %v", err)
			}
			if diff := cmp.Diff(tt.want, d.Body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMigrateDeliveryBodies checks that a delivery stored before bodies
// had an encoding reads back as it was once the schema is migrated.
func TestMigrateDeliveryBodies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lockstep.db")
	steps := migrations()
	before := slices.IndexFunc(steps, func(step string) bool { return strings.Contains(step, "ADD COLUMN body_encoding") })
	if before < 0 {
		t.Fatal("no migration step adds deliveries.body_encoding")
	}
	// A file with the schema of the steps before, and a delivery.
	db := sql.OpenDB(connector{dsn: dsn(path, time.Second, false), driver: &sqlite3.SQLiteDriver{}})
	for _, stmt := range append(steps[:before:before],
		`INSERT INTO deliveries (id, event, received_at, state, rv, outcome, body) VALUES ('old', 'push', 0, 'pending', 1, '{}', '{"old":true}')`,
		fmt.Sprintf(`PRAGMA user_version = %d`, before),
	) {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, path)
	d, err := s.GetDelivery(t.Context(), "old")
	if err != nil {
		t.Fatalf("GetDelivery after migrating: %v", err)
	}
	if got, want := string(d.Body), `{"old":true}`; got != want {
		t.Errorf("body after migrating: got %s, want %s", got, want)
	}
}
