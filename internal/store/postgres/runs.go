package postgres

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// watchBatch is how many runs a watcher reads per query.
const watchBatch = 256

// runColumns are the columns scanRun reads, in its order.
const runColumns = `id, rv, created_at, labels, spec, status`

// CreateRun stores r as a new run and returns it as stored. A run needs a
// job, a known type and a trigger key; its state defaults to pending. If a
// run with the same trigger key exists, CreateRun returns that run and an
// error wrapping store.ErrAlreadyExists, and writes nothing. r's ID,
// ResourceVersion and CreatedAt are ignored.
func (s *Store) CreateRun(ctx context.Context, r *run.Run) (*run.Run, error) {
	key := r.Spec.TriggerKey
	if err := validateNew(r); err != nil {
		return nil, fmt.Errorf("create run %s: %w", key, err)
	}
	status := r.Status
	if status.State == "" {
		status.State = run.Pending
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("create run %s: encode spec: %w", key, err)
	}
	statusJSON, err := json.Marshal(status)
	if err != nil {
		return nil, fmt.Errorf("create run %s: encode status: %w", key, err)
	}
	labels, err := encodeLabels(r.Labels)
	if err != nil {
		return nil, fmt.Errorf("create run %s: %w", key, err)
	}
	created := s.clock.Now().UnixNano()

	var got *run.Run
	var exists bool
	// One statement, pipelined with the other writes of its batch: the
	// run takes the next revision only if its trigger key is free, and
	// otherwise the statement returns the run that holds the key.
	err = s.inStmt(ctx, stmtWrite{
		sql: `WITH ins AS (
	INSERT INTO runs (trigger_key, repo, pull, sha, job, type, state, created_at, rv, labels, spec, status)
	SELECT ?, ?, ?, ?, ?, ?, ?, ?, rev + 1, ?, ?, ? FROM revision WHERE id = 1
	ON CONFLICT (trigger_key) DO NOTHING
	RETURNING ` + runColumns + `
), bump AS (
	UPDATE revision SET rev = ins.rv FROM ins WHERE revision.id = 1
)
SELECT true, ` + runColumns + ` FROM ins
UNION ALL
SELECT false, ` + runColumns + ` FROM runs WHERE trigger_key = ? AND NOT EXISTS (SELECT 1 FROM ins)`,
		args: []any{key, r.Spec.Refs.Repo, r.Spec.Refs.Pull, r.Spec.Refs.SHA(), r.Spec.Job, string(r.Spec.Type),
			string(status.State), created, labels, spec, statusJSON, key},
		result: func(row pgx.Row) (bool, error) {
			var inserted bool
			var err error
			got, err = scanRun(prefixed{row, []any{&inserted}})
			if err != nil {
				// No row cannot be: the key is free or taken.
				return false, fmt.Errorf("insert: %w", err)
			}
			exists = !inserted
			return inserted, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create run %s: %w", key, err)
	}
	if exists {
		return got, fmt.Errorf("create run %s: run %d has that trigger key: %w", key, got.ID, store.ErrAlreadyExists)
	}
	return got, nil
}

// insertRun inserts r at revision rev, unless its trigger key is taken, in
// which case it returns pgx.ErrNoRows. spec, status and labels are r's,
// encoded.
func insertRun(tx *writeTx, rev, created int64, r *run.Run, state run.State, spec, status, labels []byte) (*run.Run, error) {
	return scanRun(tx.QueryRow(`
INSERT INTO runs (trigger_key, repo, pull, sha, job, type, state, created_at, rv, labels, spec, status)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trigger_key) DO NOTHING
RETURNING `+runColumns,
		r.Spec.TriggerKey, r.Spec.Refs.Repo, r.Spec.Refs.Pull, r.Spec.Refs.SHA(), r.Spec.Job, string(r.Spec.Type),
		string(state), created, rev, labels, spec, status))
}

// validateNew reports what makes r unfit to be created, wrapping
// store.ErrInvalid.
func validateNew(r *run.Run) error {
	var problems []string
	if r.Spec.Job == "" {
		problems = append(problems, "spec.job is empty")
	}
	if !r.Spec.Type.Valid() {
		problems = append(problems, fmt.Sprintf("spec.type %q is not presubmit, postsubmit, periodic or manual", r.Spec.Type))
	}
	if r.Spec.TriggerKey == "" {
		problems = append(problems, "spec.trigger_key is empty")
	}
	if r.Status.State != "" && !r.Status.State.Valid() {
		problems = append(problems, fmt.Sprintf("status.state %q is not a run state", r.Status.State))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", store.ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// GetRun returns the run with id, or an error wrapping store.ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id run.ID) (*run.Run, error) {
	r, err := scanRun(s.queryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, int64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get run %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get run %d: %w", id, err)
	}
	return r, nil
}

// UpdateRunStatus replaces the status of run r.ID with r.Status if
// r.ResourceVersion is current, and returns the run as stored. r.Spec and
// r.Labels are ignored. A change of state must be allowed by
// run.CanTransition, or the error wraps store.ErrInvalid and a
// *run.TransitionError; a status that keeps the state may change anything
// else, even in a terminal state (a reporter records what it reported). A
// status equal to the stored one writes nothing and keeps the version.
func (s *Store) UpdateRunStatus(ctx context.Context, r *run.Run) (*run.Run, error) {
	if !r.Status.State.Valid() {
		return nil, fmt.Errorf("update run %d status: %w: status.state %q is not a run state", r.ID, store.ErrInvalid, r.Status.State)
	}
	status, err := json.Marshal(r.Status)
	if err != nil {
		return nil, fmt.Errorf("update run %d status: encode status: %w", r.ID, err)
	}
	var got *run.Run
	err = s.inTx(ctx, func(tx *writeTx) (bool, error) {
		var state string
		var old []byte
		cur, err := current(tx, r, `state, status`, &state, &old)
		if err != nil {
			return false, err
		}
		from := run.State(state)
		if from != r.Status.State && !run.CanTransition(from, r.Status.State) {
			return false, fmt.Errorf("%w: %w", store.ErrInvalid, &run.TransitionError{From: from, To: r.Status.State})
		}
		if bytes.Equal(old, status) {
			got, err = scanRun(tx.QueryRow(`SELECT `+runColumns+` FROM runs WHERE id = ?`, int64(r.ID)))
			return false, err
		}
		rev, err := nextRevision(tx)
		if err != nil {
			return false, err
		}
		got, err = scanRun(tx.QueryRow(`
UPDATE runs SET state = ?, status = ?, rv = ? WHERE id = ? AND rv = ?
RETURNING `+runColumns, string(r.Status.State), status, rev, int64(r.ID), cur))
		if err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("update run %d status: %w", r.ID, err)
	}
	return got, nil
}

// UpdateRun replaces the labels of run r.ID with r.Labels if
// r.ResourceVersion is current, and returns the run as stored. r.Spec must
// equal the stored spec, or the error wraps store.ErrInvalid; r.Status is
// ignored. Labels equal to the stored ones write nothing and keep the
// version.
func (s *Store) UpdateRun(ctx context.Context, r *run.Run) (*run.Run, error) {
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("update run %d: encode spec: %w", r.ID, err)
	}
	labels, err := encodeLabels(r.Labels)
	if err != nil {
		return nil, fmt.Errorf("update run %d: %w", r.ID, err)
	}
	var got *run.Run
	err = s.inTx(ctx, func(tx *writeTx) (bool, error) {
		var oldSpec, oldLabels []byte
		cur, err := current(tx, r, `spec, labels`, &oldSpec, &oldLabels)
		if err != nil {
			return false, err
		}
		if !bytes.Equal(oldSpec, spec) {
			return false, fmt.Errorf("%w: the spec of a run cannot change", store.ErrInvalid)
		}
		if bytes.Equal(oldLabels, labels) {
			got, err = scanRun(tx.QueryRow(`SELECT `+runColumns+` FROM runs WHERE id = ?`, int64(r.ID)))
			return false, err
		}
		rev, err := nextRevision(tx)
		if err != nil {
			return false, err
		}
		got, err = scanRun(tx.QueryRow(`
UPDATE runs SET labels = ?, rv = ? WHERE id = ? AND rv = ?
RETURNING `+runColumns, labels, rev, int64(r.ID), cur))
		if err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("update run %d: %w", r.ID, err)
	}
	return got, nil
}

// current reads the resource version and cols of run r.ID in tx into dest,
// and checks that r.ResourceVersion is that version. It returns the version,
// or an error wrapping store.ErrNotFound or store.ErrConflict.
func current(tx *writeTx, r *run.Run, cols string, dest ...any) (int64, error) {
	var rv int64
	err := tx.QueryRow(`SELECT rv, `+cols+` FROM runs WHERE id = ?`, int64(r.ID)).Scan(append([]any{&rv}, dest...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if rv != r.ResourceVersion {
		return 0, fmt.Errorf("%w (stored version %d, written version %d)", store.ErrConflict, rv, r.ResourceVersion)
	}
	return rv, nil
}

// ListRuns returns one page of the runs matching opts, newest first. Pages
// follow the run ID, so runs created while paging never shift a page.
func (s *Store) ListRuns(ctx context.Context, opts store.ListOptions) (store.RunPage, error) {
	q, args, limit, err := listQuery(opts)
	if err != nil {
		return store.RunPage{}, fmt.Errorf("list runs: %w", err)
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return store.RunPage{}, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	page := store.RunPage{Runs: make([]*run.Run, 0, min(limit, 64))}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return store.RunPage{}, fmt.Errorf("list runs: %w", err)
		}
		page.Runs = append(page.Runs, r)
	}
	if err := rows.Err(); err != nil {
		return store.RunPage{}, fmt.Errorf("list runs: %w", err)
	}
	if len(page.Runs) > limit {
		page.Runs = page.Runs[:limit]
		page.Continue = encodeContinue(int64(page.Runs[limit-1].ID))
	}
	return page, nil
}

// listQuery returns the query that lists a page of opts, its arguments and
// the page size. The query asks for one run more than the page size, to
// tell whether another page follows.
func listQuery(opts store.ListOptions) (string, []any, int, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	limit = min(limit, store.MaxLimit)

	var where []string
	var args []any
	if opts.Repo != "" {
		where = append(where, `repo = ?`)
		args = append(args, opts.Repo)
	}
	if opts.Pull != 0 {
		where = append(where, `pull = ?`)
		args = append(args, opts.Pull)
	}
	if opts.SHA != "" {
		where = append(where, `sha = ?`)
		args = append(args, opts.SHA)
	}
	if opts.Job != "" {
		where = append(where, `job = ?`)
		args = append(args, opts.Job)
	}
	if opts.Type != "" {
		where = append(where, `type = ?`)
		args = append(args, string(opts.Type))
	}
	if opts.Continue != "" {
		after, err := decodeContinue(opts.Continue)
		if err != nil {
			return "", nil, 0, err
		}
		where = append(where, `id < ?`)
		args = append(args, after)
	}
	states := slices.Compact(slices.Sorted(slices.Values(opts.State)))
	if len(states) <= 1 {
		for _, st := range states {
			where = append(where, `state = ?`)
			args = append(args, string(st))
		}
		q := `SELECT ` + runColumns + ` FROM runs`
		if len(where) > 0 {
			q += ` WHERE ` + strings.Join(where, ` AND `)
		}
		q += ` ORDER BY id DESC LIMIT ?`
		return q, append(args, limit+1), limit, nil
	}
	// Several states: an index walk per state, each in id order, merged.
	// A single walk of state IN (...) would sort every matching run.
	where = append(where, `state = ?`)
	branch := `SELECT * FROM (SELECT ` + runColumns + ` FROM runs WHERE ` + strings.Join(where, ` AND `) + ` ORDER BY id DESC LIMIT ?) AS page`
	branches := make([]string, 0, len(states))
	var all []any
	for _, st := range states {
		branches = append(branches, branch)
		all = append(all, args...)
		all = append(all, string(st), limit+1)
	}
	q := strings.Join(branches, ` UNION ALL `) + ` ORDER BY id DESC LIMIT ?`
	return q, append(all, limit+1), limit, nil
}

// encodeContinue returns the continue token of a page whose last run has
// ID id.
func encodeContinue(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
}

// decodeContinue returns the run ID a continue token names.
func decodeContinue(token string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(b), "id:"); ok {
			if id, err := strconv.ParseInt(rest, 10, 64); err == nil && id > 0 {
				return id, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: continue token %q was not returned by a run listing", store.ErrInvalid, token)
}

// WatchRuns calls fn with every run written after revision from, in
// revision order, until ctx is done or fn fails, and returns ctx.Err() or
// fn's error. When it has caught up, it waits for a write through this
// Store, or for the poll interval to see writes made by other processes.
// It starts no goroutine.
func (s *Store) WatchRuns(ctx context.Context, from int64, fn func(store.RunEvent) error) error {
	return s.watch(ctx, from, func(from int64) (int64, int, error) {
		runs, err := s.runsAfter(ctx, from)
		if err != nil {
			return from, 0, err
		}
		for _, r := range runs {
			if err := ctx.Err(); err != nil {
				return from, len(runs), errStop{err}
			}
			if err := fn(store.RunEvent{Revision: r.ResourceVersion, Run: r}); err != nil {
				return from, len(runs), errStop{err}
			}
			from = r.ResourceVersion
		}
		return from, len(runs), nil
	})
}

// runsAfter returns up to watchBatch runs last written after revision
// from, in revision order.
func (s *Store) runsAfter(ctx context.Context, from int64) ([]*run.Run, error) {
	rows, err := s.query(ctx, `SELECT `+runColumns+` FROM runs WHERE rv > ? ORDER BY rv LIMIT ?`, from, watchBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var runs []*run.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, rows.Err()
}

// prefixed is a row whose first columns go to dest, the others to the
// Scan of its caller.
type prefixed struct {
	row  scanner
	dest []any
}

func (p prefixed) Scan(dest ...any) error {
	return p.row.Scan(append(p.dest[:len(p.dest):len(p.dest)], dest...)...)
}

// scanRun reads a run from the columns runColumns names. The run it
// returns shares nothing with the caller's values: labels, spec and status
// are decoded from what is stored.
func scanRun(sc scanner) (*run.Run, error) {
	var (
		id, rv, created      int64
		labels, spec, status []byte
	)
	if err := sc.Scan(&id, &rv, &created, &labels, &spec, &status); err != nil {
		return nil, err
	}
	r := &run.Run{Meta: run.Meta{
		ID:              run.ID(id),
		ResourceVersion: rv,
		CreatedAt:       time.Unix(0, created).UTC(),
	}}
	if err := json.Unmarshal(labels, &r.Labels); err != nil {
		return nil, fmt.Errorf("decode labels of run %d: %w", id, err)
	}
	if err := json.Unmarshal(spec, &r.Spec); err != nil {
		return nil, fmt.Errorf("decode spec of run %d: %w", id, err)
	}
	if err := json.Unmarshal(status, &r.Status); err != nil {
		return nil, fmt.Errorf("decode status of run %d: %w", id, err)
	}
	return r, nil
}

// encodeLabels returns labels as stored: JSON, with no labels as null, so
// that an empty map and a nil map are the same labels.
func encodeLabels(labels map[string]string) ([]byte, error) {
	if len(labels) == 0 {
		return []byte("null"), nil
	}
	b, err := json.Marshal(labels)
	if err != nil {
		return nil, fmt.Errorf("encode labels: %w", err)
	}
	return b, nil
}
