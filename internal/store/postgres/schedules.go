package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

var _ store.Schedules = (*Store)(nil)

// scheduleColumns are the columns scanSchedule reads, in its order.
const scheduleColumns = `created_at, rv, data`

// GetSchedule returns the schedule of job in repo, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetSchedule(ctx context.Context, repo, job string) (*store.Schedule, error) {
	sc, err := scanSchedule(s.queryRow(ctx,
		`SELECT `+scheduleColumns+` FROM schedules WHERE repo = ? AND job = ?`, repo, job))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get schedule %s/%s: %w", repo, job, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get schedule %s/%s: %w", repo, job, err)
	}
	return sc, nil
}

// ListSchedules returns every schedule, ordered by repo and job.
func (s *Store) ListSchedules(ctx context.Context) ([]*store.Schedule, error) {
	rows, err := s.query(ctx, `SELECT `+scheduleColumns+` FROM schedules ORDER BY repo, job`)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	defer rows.Close()
	var out []*store.Schedule
	for rows.Next() {
		sc, err := scanSchedule(rows)
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out, nil
}

// CreateSchedule stores sc as a new schedule and returns it as stored. If
// the job has a schedule, it returns that one and an error wrapping
// store.ErrAlreadyExists, and writes nothing.
func (s *Store) CreateSchedule(ctx context.Context, sc *store.Schedule) (*store.Schedule, error) {
	name := sc.Repo + "/" + sc.Job
	if sc.Repo == "" || sc.Job == "" {
		return nil, fmt.Errorf("create schedule %s: %w: repo and job are required", name, store.ErrInvalid)
	}
	var got *store.Schedule
	var exists bool
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		rev, err := nextRevision(tx)
		if err != nil {
			return false, err
		}
		in := *sc
		in.CreatedAt = s.clock.Now().UTC()
		in.ResourceVersion = rev
		data, err := encodeSchedule(&in)
		if err != nil {
			return false, err
		}
		got, err = scanSchedule(tx.QueryRow(`
INSERT INTO schedules (repo, job, next, created_at, rv, data) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (repo, job) DO NOTHING
RETURNING `+scheduleColumns,
			in.Repo, in.Job, in.Next.UnixNano(), in.CreatedAt.UnixNano(), rev, data))
		if errors.Is(err, pgx.ErrNoRows) {
			exists = true
			got, err = scanSchedule(tx.QueryRow(`SELECT `+scheduleColumns+` FROM schedules WHERE repo = ? AND job = ?`, sc.Repo, sc.Job))
			if err != nil {
				return false, fmt.Errorf("read existing schedule: %w", err)
			}
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("insert: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create schedule %s: %w", name, err)
	}
	if exists {
		return got, fmt.Errorf("create schedule %s: %w", name, store.ErrAlreadyExists)
	}
	return got, nil
}

// UpdateSchedule replaces sc if sc.ResourceVersion is current, and returns
// it as stored; a stale version fails with an error wrapping
// store.ErrConflict.
func (s *Store) UpdateSchedule(ctx context.Context, sc *store.Schedule) (*store.Schedule, error) {
	var got *store.Schedule
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		var err error
		got, err = writeSchedule(tx, sc)
		return err == nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("update schedule %s/%s: %w", sc.Repo, sc.Job, err)
	}
	return got, nil
}

// FireSchedule replaces sc, as UpdateSchedule does, and creates r, as
// CreateRun does, in one transaction. The stored schedule's LastRun is
// the created run, or the existing run with r's trigger key. The run's
// CreatedAt is stamped when the transaction runs.
func (s *Store) FireSchedule(ctx context.Context, sc *store.Schedule, r *run.Run) (*store.Schedule, *run.Run, error) {
	key := r.Spec.TriggerKey
	if err := validateNew(r); err != nil {
		return nil, nil, fmt.Errorf("fire schedule %s/%s: create run %s: %w", sc.Repo, sc.Job, key, err)
	}
	status := r.Status
	if status.State == "" {
		status.State = run.Pending
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("fire schedule %s/%s: encode spec: %w", sc.Repo, sc.Job, err)
	}
	statusJSON, err := json.Marshal(status)
	if err != nil {
		return nil, nil, fmt.Errorf("fire schedule %s/%s: encode status: %w", sc.Repo, sc.Job, err)
	}
	labels, err := encodeLabels(r.Labels)
	if err != nil {
		return nil, nil, fmt.Errorf("fire schedule %s/%s: %w", sc.Repo, sc.Job, err)
	}
	var gotSched *store.Schedule
	var gotRun *run.Run
	err = s.inTx(ctx, func(tx *writeTx) (bool, error) {
		cur, err := currentSchedule(tx, sc)
		if err != nil {
			return false, err
		}
		rev, err := nextRevision(tx)
		if err != nil {
			return false, err
		}
		gotRun, err = insertRun(tx, rev, s.clock.Now().UnixNano(), r, status.State, spec, statusJSON, labels)
		if errors.Is(err, pgx.ErrNoRows) {
			gotRun, err = scanRun(tx.QueryRow(`SELECT `+runColumns+` FROM runs WHERE trigger_key = ?`, key))
		}
		if err != nil {
			return false, fmt.Errorf("create run %s: %w", key, err)
		}
		next := *sc
		next.LastRun = gotRun.ID
		gotSched, err = putSchedule(tx, &next, cur)
		return err == nil, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("fire schedule %s/%s: %w", sc.Repo, sc.Job, err)
	}
	return gotSched, gotRun, nil
}

// currentSchedule reads the resource version of sc's stored schedule in
// tx and checks that sc.ResourceVersion is that version. It returns the
// version, or an error wrapping store.ErrNotFound or store.ErrConflict.
func currentSchedule(tx *writeTx, sc *store.Schedule) (int64, error) {
	var rv int64
	err := tx.QueryRow(`SELECT rv FROM schedules WHERE repo = ? AND job = ?`, sc.Repo, sc.Job).Scan(&rv)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if rv != sc.ResourceVersion {
		return 0, fmt.Errorf("%w (stored version %d, written version %d)", store.ErrConflict, rv, sc.ResourceVersion)
	}
	return rv, nil
}

// writeSchedule replaces sc in tx if its version is current, at a new
// revision, and returns it as stored. CreatedAt is kept as stored.
func writeSchedule(tx *writeTx, sc *store.Schedule) (*store.Schedule, error) {
	cur, err := currentSchedule(tx, sc)
	if err != nil {
		return nil, err
	}
	return putSchedule(tx, sc, cur)
}

// putSchedule replaces sc in tx, whose stored version cur was checked, at
// a new revision, and returns it as stored.
func putSchedule(tx *writeTx, sc *store.Schedule, cur int64) (*store.Schedule, error) {
	rev, err := nextRevision(tx)
	if err != nil {
		return nil, err
	}
	in := *sc
	in.ResourceVersion = rev
	data, err := encodeSchedule(&in)
	if err != nil {
		return nil, err
	}
	got, err := scanSchedule(tx.QueryRow(`
UPDATE schedules SET next = ?, rv = ?, data = ? WHERE repo = ? AND job = ? AND rv = ?
RETURNING `+scheduleColumns, in.Next.UnixNano(), rev, data, in.Repo, in.Job, cur))
	if err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	return got, nil
}

// encodeSchedule returns sc as stored in the data column: JSON, with every
// time in UTC. The metadata columns are authoritative for CreatedAt and
// ResourceVersion.
func encodeSchedule(sc *store.Schedule) ([]byte, error) {
	c := *sc
	c.Next = c.Next.UTC()
	c.CreatedAt = time.Time{}
	c.ResourceVersion = 0
	if c.LastDue != nil {
		t := c.LastDue.UTC()
		c.LastDue = &t
	}
	if len(c.Skips) > 0 {
		c.Skips = make([]store.Skip, len(sc.Skips))
		for i, k := range sc.Skips {
			k.Due, k.Last, k.At = k.Due.UTC(), k.Last.UTC(), k.At.UTC()
			c.Skips[i] = k
		}
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode schedule: %w", err)
	}
	return b, nil
}

// scanSchedule reads a schedule from the columns scheduleColumns names.
func scanSchedule(sc scanner) (*store.Schedule, error) {
	var created, rv int64
	var data []byte
	if err := sc.Scan(&created, &rv, &data); err != nil {
		return nil, err
	}
	var out store.Schedule
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decode schedule: %w", err)
	}
	out.CreatedAt = time.Unix(0, created).UTC()
	out.ResourceVersion = rv
	return &out, nil
}
