package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

var (
	_ store.Builds  = (*Store)(nil)
	_ store.Markers = (*Store)(nil)
)

// buildColumns are the columns scanBuild reads, in its order.
const buildColumns = `id, created_at, rv, data`

// CreateBuild stores b as a new build and returns it as stored. A build
// needs a repo, a branch, a version and its producing run. If that run
// already produced a build, CreateBuild returns it with an error wrapping
// store.ErrAlreadyExists, and writes nothing.
func (s *Store) CreateBuild(ctx context.Context, b *store.Build) (*store.Build, error) {
	var problems []string
	if b.Repo == "" {
		problems = append(problems, "repo is empty")
	}
	if b.Branch == "" {
		problems = append(problems, "branch is empty")
	}
	if b.Version == "" {
		problems = append(problems, "version is empty")
	}
	if b.Run <= 0 {
		problems = append(problems, "run is not set")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("create build of run %d: %w: %s", b.Run, store.ErrInvalid, strings.Join(problems, "; "))
	}
	in := *b
	in.ID, in.ResourceVersion, in.CreatedAt = 0, 0, time.Time{}
	data, err := json.Marshal(&in)
	if err != nil {
		return nil, fmt.Errorf("create build of run %d: encode: %w", b.Run, err)
	}
	var got *store.Build
	var exists bool
	err = s.inTx(ctx, func(tx *writeTx) (bool, error) {
		rev, err := nextRevision(tx)
		if err != nil {
			return false, err
		}
		got, err = scanBuild(tx.QueryRow(`
INSERT INTO builds (run_id, repo, branch, created_at, rv, data) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO NOTHING
RETURNING `+buildColumns, int64(b.Run), b.Repo, b.Branch, s.clock.Now().UnixNano(), rev, data))
		if errors.Is(err, pgx.ErrNoRows) {
			exists = true
			got, err = scanBuild(tx.QueryRow(`SELECT `+buildColumns+` FROM builds WHERE run_id = ?`, int64(b.Run)))
			if err != nil {
				return false, fmt.Errorf("read existing build: %w", err)
			}
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("insert: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create build of run %d: %w", b.Run, err)
	}
	if exists {
		return got, fmt.Errorf("create build of run %d: build %d: %w", b.Run, got.ID, store.ErrAlreadyExists)
	}
	return got, nil
}

// GetBuild returns the build with id, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetBuild(ctx context.Context, id int64) (*store.Build, error) {
	b, err := scanBuild(s.queryRow(ctx, `SELECT `+buildColumns+` FROM builds WHERE id = ?`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get build %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get build %d: %w", id, err)
	}
	return b, nil
}

// buildFilter returns the WHERE clause (empty or starting with " WHERE")
// and arguments that select the builds opts matches.
func buildFilter(opts store.BuildListOptions) (string, []any) {
	var where []string
	var args []any
	if opts.Repo != "" {
		where = append(where, `repo = ?`)
		args = append(args, opts.Repo)
	}
	if opts.Branch != "" {
		where = append(where, `branch = ?`)
		args = append(args, opts.Branch)
	}
	if opts.AfterID != 0 {
		where = append(where, `id > ?`)
		args = append(args, opts.AfterID)
	}
	if opts.BeforeID != 0 {
		where = append(where, `id < ?`)
		args = append(args, opts.BeforeID)
	}
	if len(where) == 0 {
		return "", nil
	}
	return ` WHERE ` + strings.Join(where, ` AND `), args
}

// ListBuilds returns the builds matching opts, newest first.
func (s *Store) ListBuilds(ctx context.Context, opts store.BuildListOptions) ([]*store.Build, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	limit = min(limit, store.MaxLimit)
	where, args := buildFilter(opts)
	rows, err := s.query(ctx, `SELECT `+buildColumns+` FROM builds`+where+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	defer rows.Close()
	var out []*store.Build
	for rows.Next() {
		b, err := scanBuild(rows)
		if err != nil {
			return nil, fmt.Errorf("list builds: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	return out, nil
}

// CountBuilds returns how many builds match opts.
func (s *Store) CountBuilds(ctx context.Context, opts store.BuildListOptions) (int, error) {
	where, args := buildFilter(opts)
	var n int
	if err := s.queryRow(ctx, `SELECT count(*) FROM builds`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count builds: %w", err)
	}
	return n, nil
}

// scanBuild reads a build from the columns buildColumns names.
func scanBuild(sc scanner) (*store.Build, error) {
	var id, created, rv int64
	var data []byte
	if err := sc.Scan(&id, &created, &rv, &data); err != nil {
		return nil, err
	}
	var b store.Build
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("decode build %d: %w", id, err)
	}
	b.ID, b.ResourceVersion, b.CreatedAt = id, rv, time.Unix(0, created).UTC()
	return &b, nil
}

// markerColumns are the columns scanMarker reads, in its order.
const markerColumns = `created_at, rv, data`

// GetMarker returns the marker called name, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetMarker(ctx context.Context, name string) (*store.Marker, error) {
	m, err := scanMarker(s.queryRow(ctx, `SELECT `+markerColumns+` FROM markers WHERE name = ?`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get marker %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get marker %s: %w", name, err)
	}
	return m, nil
}

// ListMarkers returns every marker, ordered by name.
func (s *Store) ListMarkers(ctx context.Context) ([]*store.Marker, error) {
	rows, err := s.query(ctx, `SELECT `+markerColumns+` FROM markers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list markers: %w", err)
	}
	defer rows.Close()
	var out []*store.Marker
	for rows.Next() {
		m, err := scanMarker(rows)
		if err != nil {
			return nil, fmt.Errorf("list markers: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list markers: %w", err)
	}
	return out, nil
}

// CreateMarker stores m as a new marker naming no build, and returns it as
// stored; m's build, move and status fields are ignored. If a marker of
// that name exists, it returns it with an error wrapping
// store.ErrAlreadyExists, and writes nothing.
func (s *Store) CreateMarker(ctx context.Context, m *store.Marker) (*store.Marker, error) {
	if m.Name == "" || m.Repo == "" || m.Branch == "" {
		return nil, fmt.Errorf("create marker %q: %w: name, repo and branch are required", m.Name, store.ErrInvalid)
	}
	in := store.Marker{Name: m.Name, Repo: m.Repo, Branch: m.Branch}
	data, err := encodeMarker(&in)
	if err != nil {
		return nil, fmt.Errorf("create marker %s: %w", m.Name, err)
	}
	var got *store.Marker
	var exists bool
	err = s.inTx(ctx, func(tx *writeTx) (bool, error) {
		rev, err := nextRevision(tx)
		if err != nil {
			return false, err
		}
		got, err = scanMarker(tx.QueryRow(`
INSERT INTO markers (name, repo, branch, build_id, created_at, rv, data) VALUES (?, ?, ?, 0, ?, ?, ?)
ON CONFLICT (name) DO NOTHING
RETURNING `+markerColumns, m.Name, m.Repo, m.Branch, s.clock.Now().UnixNano(), rev, data))
		if errors.Is(err, pgx.ErrNoRows) {
			exists = true
			got, err = scanMarker(tx.QueryRow(`SELECT `+markerColumns+` FROM markers WHERE name = ?`, m.Name))
			if err != nil {
				return false, fmt.Errorf("read existing marker: %w", err)
			}
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("insert: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create marker %s: %w", m.Name, err)
	}
	if exists {
		return got, fmt.Errorf("create marker %s: %w", m.Name, store.ErrAlreadyExists)
	}
	return got, nil
}

// UpdateMarker replaces m if m.ResourceVersion is current and returns it as
// stored. A changed BuildID moves the marker, forward only, to a build of
// its branch, recording the move in its history; Version, Commit and
// MovedAt are then taken from the build and the store's clock, and are
// otherwise kept as stored, as are Run and CreatedAt. An update that
// changes nothing writes nothing and keeps the version.
func (s *Store) UpdateMarker(ctx context.Context, m *store.Marker) (*store.Marker, error) {
	var got *store.Marker
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		cur, err := scanMarker(tx.QueryRow(`SELECT `+markerColumns+` FROM markers WHERE name = ?`, m.Name))
		if errors.Is(err, pgx.ErrNoRows) {
			return false, store.ErrNotFound
		}
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		if cur.ResourceVersion != m.ResourceVersion {
			return false, fmt.Errorf("%w (stored version %d, written version %d)", store.ErrConflict, cur.ResourceVersion, m.ResourceVersion)
		}
		if m.Repo != cur.Repo || m.Branch != cur.Branch {
			return false, fmt.Errorf("%w: the repo and branch of a marker cannot change (stored %s@%s, written %s@%s)",
				store.ErrInvalid, cur.Repo, cur.Branch, m.Repo, m.Branch)
		}
		next := *cur
		next.Status = m.Status
		moved := m.BuildID != cur.BuildID
		if moved {
			if m.BuildID < cur.BuildID {
				return false, fmt.Errorf("%w: a marker never moves backward: build %d is older than build %d, which it names",
					store.ErrInvalid, m.BuildID, cur.BuildID)
			}
			b, err := scanBuild(tx.QueryRow(`SELECT `+buildColumns+` FROM builds WHERE id = ?`, m.BuildID))
			if errors.Is(err, pgx.ErrNoRows) {
				return false, fmt.Errorf("%w: build %d does not exist", store.ErrInvalid, m.BuildID)
			}
			if err != nil {
				return false, fmt.Errorf("read build %d: %w", m.BuildID, err)
			}
			if b.Repo != cur.Repo || b.Branch != cur.Branch {
				return false, fmt.Errorf("%w: build %d is of %s@%s, not of the marker's %s@%s",
					store.ErrInvalid, b.ID, b.Repo, b.Branch, cur.Repo, cur.Branch)
			}
			now := s.clock.Now().UTC()
			next.BuildID, next.Version, next.Commit, next.MovedAt, next.Run = b.ID, b.Version, b.Commit, &now, m.Run
			if _, err := tx.Exec(`
INSERT INTO marker_history (marker, from_build, to_build, version, run_id, moved_at) VALUES (?, ?, ?, ?, ?, ?)`,
				cur.Name, cur.BuildID, b.ID, b.Version, int64(m.Run), now.UnixNano()); err != nil {
				return false, fmt.Errorf("record move: %w", err)
			}
		}
		oldData, err := encodeMarker(cur)
		if err != nil {
			return false, err
		}
		data, err := encodeMarker(&next)
		if err != nil {
			return false, err
		}
		if !moved && bytes.Equal(oldData, data) {
			got = cur
			return false, nil
		}
		rev, err := nextRevision(tx)
		if err != nil {
			return false, err
		}
		got, err = scanMarker(tx.QueryRow(`
UPDATE markers SET build_id = ?, rv = ?, data = ? WHERE name = ? AND rv = ?
RETURNING `+markerColumns, next.BuildID, rev, data, cur.Name, cur.ResourceVersion))
		if err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("update marker %s: %w", m.Name, err)
	}
	return got, nil
}

// MarkerHistory returns the moves of the marker called name, newest first.
func (s *Store) MarkerHistory(ctx context.Context, name string, limit int) ([]store.MarkerMove, error) {
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	limit = min(limit, store.MaxLimit)
	rows, err := s.query(ctx, `
SELECT from_build, to_build, version, run_id, moved_at FROM marker_history
WHERE marker = ? ORDER BY seq DESC LIMIT ?`, name, limit)
	if err != nil {
		return nil, fmt.Errorf("marker %s history: %w", name, err)
	}
	defer rows.Close()
	var out []store.MarkerMove
	for rows.Next() {
		mv := store.MarkerMove{Marker: name}
		var runID, at int64
		if err := rows.Scan(&mv.FromBuild, &mv.ToBuild, &mv.Version, &runID, &at); err != nil {
			return nil, fmt.Errorf("marker %s history: %w", name, err)
		}
		mv.Run, mv.At = run.ID(runID), time.Unix(0, at).UTC()
		out = append(out, mv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("marker %s history: %w", name, err)
	}
	return out, nil
}

// encodeMarker returns m as stored in the data column: JSON with times in
// UTC, without the metadata the columns hold.
func encodeMarker(m *store.Marker) ([]byte, error) {
	c := *m
	c.CreatedAt, c.ResourceVersion = time.Time{}, 0
	if c.MovedAt != nil {
		t := c.MovedAt.UTC()
		c.MovedAt = &t
	}
	st := c.Status
	if st.NewestAt != nil {
		t := st.NewestAt.UTC()
		st.NewestAt = &t
	}
	if st.GateFailingSince != nil {
		t := st.GateFailingSince.UTC()
		st.GateFailingSince = &t
	}
	if len(st.Conditions) > 0 {
		st.Conditions = make([]run.Condition, len(m.Status.Conditions))
		for i, cond := range m.Status.Conditions {
			cond.Time = cond.Time.UTC()
			st.Conditions[i] = cond
		}
	}
	c.Status = st
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode marker: %w", err)
	}
	return b, nil
}

// scanMarker reads a marker from the columns markerColumns names.
func scanMarker(sc scanner) (*store.Marker, error) {
	var created, rv int64
	var data []byte
	if err := sc.Scan(&created, &rv, &data); err != nil {
		return nil, err
	}
	var m store.Marker
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode marker: %w", err)
	}
	m.CreatedAt, m.ResourceVersion = time.Unix(0, created).UTC(), rv
	return &m, nil
}
