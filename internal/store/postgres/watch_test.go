package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
)

// TestSequenceRevisionsSkipWrites shows, on the tests' server, the hole
// the revision row closes: with revisions from a sequence, a transaction
// that took revision 1 but commits after the one that took revision 2 is
// never seen by a reader that already read past 2.
func TestSequenceRevisionsSkipWrites(t *testing.T) {
	ctx := t.Context()
	u := pgtest.URL(t)
	conn := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	reader, a, b := conn(), conn(), conn()
	if _, err := reader.Exec(ctx, `CREATE SEQUENCE rev; CREATE TABLE objs (rv BIGINT)`); err != nil {
		t.Fatal(err)
	}
	txA, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txA.Exec(ctx, `INSERT INTO objs VALUES (nextval('rev'))`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, `INSERT INTO objs VALUES (nextval('rev'))`); err != nil {
		t.Fatal(err)
	}
	var last int64
	if err := reader.QueryRow(ctx, `SELECT coalesce(max(rv), 0) FROM objs WHERE rv > 0`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var missed int
	if err := reader.QueryRow(ctx, `SELECT count(*) FROM objs WHERE rv > $1`, last).Scan(&missed); err != nil {
		t.Fatal(err)
	}
	var total int
	if err := reader.QueryRow(ctx, `SELECT count(*) FROM objs`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	// The reader saw revision 2, resumed after it, and will never see 1.
	if last != 2 || missed != 0 || total != 2 {
		t.Fatalf("sequence revisions: reader at %d, %d left to read of %d; want 2, 0 of 2 (the hole)", last, missed, total)
	}
}

// TestWriteWaitsForEarlierRevision checks the fix for that hole: a write
// that starts while another holds an uncommitted revision waits for it,
// so that the watcher sees the earlier revision before the later one.
func TestWriteWaitsForEarlierRevision(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// Two stores on one database, as two replicas: the writes of one
	// store queue in the process, those of two meet in the database.
	u := pgtest.URL(t)
	s := openURL(t, u, WithPollInterval(10*time.Millisecond))
	other := openURL(t, u, WithPollInterval(10*time.Millisecond))
	from, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The first write takes its revision and holds it open.
	release := make(chan struct{})
	taken := make(chan int64, 1)
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- s.inTx(ctx, func(tx *writeTx) (bool, error) {
			rev, err := nextRevision(tx)
			if err != nil {
				return false, err
			}
			if _, err := tx.Exec(`INSERT INTO effects (key, state, created_at) VALUES ('first', 'done', ?)`, rev); err != nil {
				return false, err
			}
			taken <- rev
			<-release
			return true, nil
		})
	}()
	first := <-taken

	// The second write must wait for the first: it shows as a backend
	// waiting on a lock.
	secondDone := make(chan error, 1)
	go func() {
		r, err := other.CreateRun(ctx, testRun("after-first"))
		if err == nil && r.ResourceVersion != first+1 {
			t.Errorf("second write: got revision %d, want %d", r.ResourceVersion, first+1)
		}
		secondDone <- err
	}()
	for {
		var waiting int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%FROM revision WHERE id = 1 FOR UPDATE%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-secondDone:
			t.Fatalf("the second write ended (%v) while the first held an earlier revision", err)
		case <-ctx.Done():
			t.Fatal("the second write never waited for the first")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Meanwhile a reader sees neither.
	if rev, err := s.Revision(ctx); err != nil || rev != from {
		t.Fatalf("Revision while both are uncommitted: got %d, %v; want %d", rev, err, from)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	if rev, err := s.Revision(ctx); err != nil || rev != first+1 {
		t.Fatalf("Revision after both: got %d, %v; want %d", rev, err, first+1)
	}
}
