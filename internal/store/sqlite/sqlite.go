// Package sqlite is lockstep's embedded store: a store.Runs kept in one
// SQLite file.
//
// The file is in WAL mode with synchronous=NORMAL: a committed write
// survives a crash of the lockstep process (kill -9 included), because it is
// in the write-ahead log before the call returns; a power loss or an
// operating system crash may lose the last writes before the log was synced,
// but never corrupts the file.
//
// A Store writes through one connection, so its writers queue in the
// process instead of failing with SQLITE_BUSY; writes that queue together
// commit together, one BEGIN IMMEDIATE transaction for the lot (group
// commit). It reads through a separate pool of read-only connections, which
// WAL lets run beside the writer. Several processes may open the same file:
// their writers wait for each other up to the busy timeout, and their
// watchers see each other's writes at the next poll (WithPollInterval).
//
// The schema is migrated on Open. Every write advances one revision
// counter, which the written object takes as its ResourceVersion; the watch
// feed reads objects in the order of those versions.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
)

var _ store.Runs = (*Store)(nil)

// Store is a store.Runs kept in a SQLite file. It is safe for concurrent
// use by many goroutines. Open it with Open and release it with Close.
type Store struct {
	// write holds the only connection this Store writes through.
	write *sql.DB
	// read is the pool of read-only connections.
	read  *sql.DB
	clock clock.Clock
	poll  time.Duration

	// wmu guards pending and leading.
	wmu sync.Mutex
	// pending holds the writes waiting for the next transaction.
	pending []*writeOp
	// leading is true while a caller commits a batch of writes or has been
	// told to.
	leading bool

	// mu guards changed.
	mu sync.Mutex
	// changed is closed, and replaced, after every committed write, to
	// wake the watchers of this Store.
	changed chan struct{}
}

// Option changes how Open sets up a Store.
type Option func(*options)

type options struct {
	clock        clock.Clock
	pollInterval time.Duration
	busyTimeout  time.Duration
}

// WithClock sets the clock that stamps CreatedAt and times the watchers'
// polls. The default is the real clock.
func WithClock(c clock.Clock) Option {
	return func(o *options) { o.clock = c }
}

// WithPollInterval sets how often a caught-up watcher looks for writes made
// by other processes sharing the file; writes made through the same Store
// wake its watchers at once. The default is DefaultPollInterval.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) { o.pollInterval = d }
}

// WithBusyTimeout sets how long a write waits for another process holding
// the file's write lock before failing. The default is DefaultBusyTimeout.
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) { o.busyTimeout = d }
}

// Defaults of the options.
const (
	DefaultPollInterval = time.Second
	DefaultBusyTimeout  = 10 * time.Second
)

// Open opens the store in the SQLite file at path, creating the file if
// needed, and brings its schema up to date. It fails if the file was
// written by a newer lockstep whose schema it does not know.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{
		clock:        clock.RealClock{},
		pollInterval: DefaultPollInterval,
		busyTimeout:  DefaultBusyTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.pollInterval <= 0 {
		return nil, fmt.Errorf("open store %s: poll interval %v is not positive", path, o.pollInterval)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	write := sql.OpenDB(connector{dsn: dsn(abs, o.busyTimeout, false), driver: &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec(fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, walAutocheckpoint), nil)
			return err
		},
	}})
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	if err := migrate(ctx, write); err != nil {
		write.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	read := sql.OpenDB(connector{dsn: dsn(abs, o.busyTimeout, true), driver: &sqlite3.SQLiteDriver{}})
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	if err := read.PingContext(ctx); err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	return &Store{
		write:   write,
		read:    read,
		clock:   o.clock,
		poll:    o.pollInterval,
		changed: make(chan struct{}),
	}, nil
}

// dsn returns the go-sqlite3 data source name of the file at abs. Every
// connection gets WAL mode, synchronous=NORMAL, foreign keys and the busy
// timeout; the write connection starts its transactions with BEGIN
// IMMEDIATE, so that it takes the write lock before reading what it will
// change, and the read connections are query-only.
func dsn(abs string, busy time.Duration, readOnly bool) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_foreign_keys", "1")
	q.Set("_busy_timeout", fmt.Sprint(busy.Milliseconds()))
	q.Set("_stmt_cache_size", "32")
	if readOnly {
		q.Set("_query_only", "1")
	} else {
		q.Set("_txlock", "immediate")
	}
	// A file: URI, so that a path holding '?' or '#' is escaped rather than
	// taken for parameters.
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return "file:" + u.EscapedPath() + "?" + u.RawQuery
}

// walAutocheckpoint is how many pages the write-ahead log grows to before
// a commit copies it into the database file, syncing both: 16 MiB with
// 4 KiB pages. The default, 1000, syncs four times as often.
const walAutocheckpoint = 4000

// connector opens connections to one file with one driver, so that each
// Store sets up its own connections without registering a driver name.
type connector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

// Connect opens a connection.
func (c connector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }

// Driver returns the connector's driver.
func (c connector) Driver() driver.Driver { return c.driver }

// Close closes the store's connections. Watchers still running fail; close
// a Store after its users are done with it.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// notify wakes every watcher waiting on the current changed channel.
func (s *Store) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// changes returns a channel closed at the next committed write. Taking it
// before reading guarantees that a write committed after the read wakes the
// reader.
func (s *Store) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.read.QueryRowContext(ctx, `SELECT rev FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}
