package postgres

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations returns the steps that build the schema, in order. The
// schema_version row holds the number of steps applied. Steps are only
// ever appended: a step that has shipped never changes. Times are Unix
// nanoseconds, as in the SQLite store, and JSON is kept as text, exactly
// as written, so that an update that changes nothing can be told from one
// that does by comparing bytes.
func migrations() []string {
	return []string{
		// 1: the revision counter, runs, deliveries, pull requests, effects,
		// schedules, builds and markers.
		`
CREATE TABLE revision (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	rev BIGINT  NOT NULL
);
INSERT INTO revision (id, rev) VALUES (1, 0);

CREATE TABLE runs (
	id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	trigger_key TEXT    NOT NULL UNIQUE,
	repo        TEXT    NOT NULL,
	pull        INTEGER NOT NULL,
	sha         TEXT    NOT NULL,
	job         TEXT    NOT NULL,
	type        TEXT    NOT NULL,
	state       TEXT    NOT NULL,
	created_at  BIGINT  NOT NULL,
	rv          BIGINT  NOT NULL UNIQUE,
	labels      TEXT    NOT NULL,
	spec        TEXT    NOT NULL,
	status      TEXT    NOT NULL
);
CREATE INDEX runs_repo_pull ON runs (repo, pull, id);
CREATE INDEX runs_repo ON runs (repo, id);
CREATE INDEX runs_sha ON runs (sha, id);
CREATE INDEX runs_job ON runs (job, id);
CREATE INDEX runs_state ON runs (state, id);

CREATE TABLE deliveries (
	seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id          TEXT   NOT NULL UNIQUE,
	event       TEXT   NOT NULL,
	received_at BIGINT NOT NULL,
	state       TEXT   NOT NULL,
	rv          BIGINT NOT NULL UNIQUE,
	outcome     TEXT   NOT NULL,
	body        BYTEA  NOT NULL,
	-- '' as received, 's2' as an S2 block, compressed by lockstep, which
	-- the server then stores as is.
	body_encoding TEXT NOT NULL DEFAULT ''
);
ALTER TABLE deliveries ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX deliveries_pending ON deliveries (seq) WHERE state = 'pending';

CREATE TABLE pulls (
	repo   TEXT    NOT NULL,
	number INTEGER NOT NULL,
	rv     BIGINT  NOT NULL,
	data   TEXT    NOT NULL,
	PRIMARY KEY (repo, number)
);

CREATE TABLE effects (
	key        TEXT   PRIMARY KEY,
	state      TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TABLE schedules (
	repo       TEXT   NOT NULL,
	job        TEXT   NOT NULL,
	next       BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	rv         BIGINT NOT NULL,
	data       TEXT   NOT NULL,
	PRIMARY KEY (repo, job)
);

CREATE TABLE builds (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run_id     BIGINT NOT NULL UNIQUE,
	repo       TEXT   NOT NULL,
	branch     TEXT   NOT NULL,
	created_at BIGINT NOT NULL,
	rv         BIGINT NOT NULL,
	data       TEXT   NOT NULL
);
CREATE INDEX builds_branch ON builds (repo, branch, id);

CREATE TABLE markers (
	name       TEXT   PRIMARY KEY,
	repo       TEXT   NOT NULL,
	branch     TEXT   NOT NULL,
	build_id   BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	rv         BIGINT NOT NULL,
	data       TEXT   NOT NULL
);

CREATE TABLE marker_history (
	seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	marker     TEXT   NOT NULL,
	from_build BIGINT NOT NULL,
	to_build   BIGINT NOT NULL,
	version    TEXT   NOT NULL,
	run_id     BIGINT NOT NULL,
	moved_at   BIGINT NOT NULL
);
CREATE INDEX marker_history_marker ON marker_history (marker, seq);
`,
		// 2: notify watchers of every committed write, once per transaction
		// (NOTIFY folds identical notifications of one transaction).
		`
CREATE FUNCTION lockstep_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('lockstep_changes_' || TG_TABLE_SCHEMA, '');
	RETURN NULL;
END $$;
CREATE TRIGGER revision_notify AFTER UPDATE ON revision
	FOR EACH STATEMENT EXECUTE FUNCTION lockstep_notify_change();
`,
		// 3: leader leases with their fencing term, and run logs in chunks.
		`
CREATE TABLE leases (
	name        TEXT   PRIMARY KEY,
	holder      TEXT   NOT NULL,
	term        BIGINT NOT NULL,
	acquired_at BIGINT NOT NULL,
	renewed_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL
);

CREATE TABLE log_chunks (
	run_id BIGINT NOT NULL,
	off    BIGINT NOT NULL, -- the offset of the chunk's first byte
	data   BYTEA  NOT NULL,
	PRIMARY KEY (run_id, off)
);
`,
		// 4: deliveries the intake refused, without their bodies; the
		// store keeps the newest store.MaxRefusals.
		`
CREATE TABLE refusals (
	seq         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id          TEXT    NOT NULL,
	event       TEXT    NOT NULL,
	received_at BIGINT  NOT NULL,
	status      INTEGER NOT NULL,
	outcome     TEXT    NOT NULL,
	message     TEXT    NOT NULL,
	remote      TEXT    NOT NULL
);
`,
	}
}

// migrate brings the schema up to date, under an advisory lock of the
// schema, so that replicas starting at once apply each step once.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	return migrateTo(ctx, pool, schema, len(migrations()))
}

// migrateTo applies the steps up to version.
func migrateTo(ctx context.Context, pool *pgxpool.Pool, schema string, version int) error {
	steps := migrations()[:version]
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate schema: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	h := fnv.New64a()
	h.Write([]byte("lockstep schema " + schema))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
		return fmt.Errorf("migrate schema: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL
)`); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	var cur int
	err = tx.QueryRow(ctx, `SELECT version FROM schema_version WHERE id = 1`).Scan(&cur)
	if err == pgx.ErrNoRows {
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (id, version) VALUES (1, 0)`); err != nil {
			return fmt.Errorf("migrate schema: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("migrate schema: read version: %w", err)
	}
	if cur > len(migrations()) {
		return fmt.Errorf("the database has schema version %d, newer than the %d this lockstep knows: upgrade lockstep", cur, len(migrations()))
	}
	if cur >= len(steps) {
		return nil
	}
	for i := cur; i < len(steps); i++ {
		if _, err := tx.Exec(ctx, steps[i]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE schema_version SET version = $1 WHERE id = 1`, len(steps)); err != nil {
		return fmt.Errorf("migrate schema: set version %d: %w", len(steps), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate schema: commit: %w", err)
	}
	return nil
}
