package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations returns the steps that build the schema, in order. The file's
// user_version is the number of steps applied to it. Steps are only ever
// appended: a step that has shipped never changes.
func migrations() []string {
	return []string{
		// 1: the revision counter and the runs.
		`
CREATE TABLE revision (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	rev INTEGER NOT NULL
);
INSERT INTO revision (id, rev) VALUES (1, 0);

CREATE TABLE runs (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	trigger_key TEXT    NOT NULL UNIQUE,
	repo        TEXT    NOT NULL,
	pull        INTEGER NOT NULL,
	sha         TEXT    NOT NULL, -- the head SHA, or the base SHA without one
	job         TEXT    NOT NULL,
	type        TEXT    NOT NULL,
	state       TEXT    NOT NULL,
	created_at  INTEGER NOT NULL, -- Unix nanoseconds
	rv          INTEGER NOT NULL,
	labels      TEXT    NOT NULL, -- JSON
	spec        TEXT    NOT NULL, -- JSON
	status      TEXT    NOT NULL  -- JSON
);
-- Every index ends with the rowid (id), so each serves its filter ordered
-- by id, for keyset pages.
CREATE UNIQUE INDEX runs_rv ON runs (rv);
CREATE INDEX runs_repo_pull ON runs (repo, pull);
CREATE INDEX runs_repo ON runs (repo);
CREATE INDEX runs_sha ON runs (sha);
CREATE INDEX runs_job ON runs (job);
CREATE INDEX runs_state ON runs (state);
-- No index on type: it has four values, each common, so a type filter
-- walks the table by id and stops at the page's end, and every index
-- costs each write a page.
`,
		// 2: webhook deliveries, the newest known state of each pull request,
		// and side effects done once (welcome comments, replies).
		`
CREATE TABLE deliveries (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	id          TEXT    NOT NULL UNIQUE, -- X-GitHub-Delivery
	event       TEXT    NOT NULL,
	received_at INTEGER NOT NULL, -- Unix nanoseconds
	state       TEXT    NOT NULL, -- pending, done, failed
	rv          INTEGER NOT NULL,
	outcome     TEXT    NOT NULL, -- JSON
	body        BLOB    NOT NULL
);
CREATE UNIQUE INDEX deliveries_rv ON deliveries (rv);
CREATE INDEX deliveries_pending ON deliveries (seq) WHERE state = 'pending';

CREATE TABLE pulls (
	repo   TEXT    NOT NULL,
	number INTEGER NOT NULL,
	rv     INTEGER NOT NULL,
	data   TEXT    NOT NULL, -- JSON
	PRIMARY KEY (repo, number)
);

CREATE TABLE effects (
	key        TEXT    PRIMARY KEY,
	state      TEXT    NOT NULL, -- pending, done
	created_at INTEGER NOT NULL
);
`,
		// 3: periodic schedules, builds, markers and their history.
		`
CREATE TABLE schedules (
	repo       TEXT    NOT NULL,
	job        TEXT    NOT NULL,
	next       INTEGER NOT NULL, -- Unix nanoseconds
	created_at INTEGER NOT NULL, -- Unix nanoseconds
	rv         INTEGER NOT NULL,
	data       TEXT    NOT NULL, -- JSON
	PRIMARY KEY (repo, job)
);

CREATE TABLE builds (
	id         INTEGER PRIMARY KEY AUTOINCREMENT, -- build order
	run_id     INTEGER NOT NULL UNIQUE,           -- the producing run
	repo       TEXT    NOT NULL,
	branch     TEXT    NOT NULL,
	created_at INTEGER NOT NULL, -- Unix nanoseconds
	rv         INTEGER NOT NULL,
	data       TEXT    NOT NULL  -- JSON
);
-- Ends with the rowid (id): a branch's builds in build order.
CREATE INDEX builds_branch ON builds (repo, branch);

CREATE TABLE markers (
	name       TEXT    PRIMARY KEY,
	repo       TEXT    NOT NULL,
	branch     TEXT    NOT NULL,
	build_id   INTEGER NOT NULL, -- 0 until the marker first moves
	created_at INTEGER NOT NULL, -- Unix nanoseconds
	rv         INTEGER NOT NULL,
	data       TEXT    NOT NULL  -- JSON
);

CREATE TABLE marker_history (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	marker     TEXT    NOT NULL,
	from_build INTEGER NOT NULL,
	to_build   INTEGER NOT NULL,
	version    TEXT    NOT NULL,
	run_id     INTEGER NOT NULL,
	moved_at   INTEGER NOT NULL -- Unix nanoseconds
);
CREATE INDEX marker_history_marker ON marker_history (marker);
`,
		// 4: how each delivery's body is stored: '' as received, 's2' as an
		// S2 block (github.com/klauspost/compress/s2). Rows written before
		// the step keep their bodies as received.
		`
ALTER TABLE deliveries ADD COLUMN body_encoding TEXT NOT NULL DEFAULT '';
`,
		// 5: deliveries the intake refused, without their bodies; the
		// store keeps the newest store.MaxRefusals.
		`
CREATE TABLE refusals (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	id          TEXT    NOT NULL, -- X-GitHub-Delivery, '' when missing
	event       TEXT    NOT NULL,
	received_at INTEGER NOT NULL, -- Unix nanoseconds
	status      INTEGER NOT NULL, -- the HTTP status answered
	outcome     TEXT    NOT NULL,
	message     TEXT    NOT NULL,
	remote      TEXT    NOT NULL
);
`,
		// 6: leases (one process holds them all, the data directory being
		// locked, but the leader elector is the same for every store), and
		// run logs in chunks, read by the web through the store.
		`
CREATE TABLE leases (
	name        TEXT    PRIMARY KEY,
	holder      TEXT    NOT NULL,
	term        INTEGER NOT NULL,
	acquired_at INTEGER NOT NULL,
	renewed_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
);

CREATE TABLE log_chunks (
	run_id INTEGER NOT NULL,
	off    INTEGER NOT NULL, -- the offset of the chunk's first byte
	data   BLOB    NOT NULL,
	PRIMARY KEY (run_id, off)
);
`,
	}
}

// migrate brings the schema of the database behind db up to date, in one
// write transaction, so that two processes opening one file at once apply
// each step once.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate schema: begin: %w", err)
	}
	defer tx.Rollback()
	steps := migrations()
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("migrate schema: read version: %w", err)
	}
	if version > len(steps) {
		return fmt.Errorf("migrate schema: the file has schema version %d, newer than the %d this lockstep knows: upgrade lockstep", version, len(steps))
	}
	if version == len(steps) {
		return nil
	}
	for i := version; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(steps))); err != nil {
		return fmt.Errorf("migrate schema: set version %d: %w", len(steps), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate schema: commit: %w", err)
	}
	return nil
}
