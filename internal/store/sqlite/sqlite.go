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
// A goroutine of the Store checkpoints the write-ahead log into the
// database file beside the writers, rather than the writer that crosses a
// size as SQLite does by default; see checkpoint.go.
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
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
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
	read *sql.DB
	// ckpt holds the connection the log is checkpointed through.
	ckpt  *sql.DB
	clock clock.Clock
	poll  time.Duration
	log   *slog.Logger

	// commitMu is held while a batch of writes runs, and by the
	// checkpointer while it makes the log restart.
	commitMu sync.Mutex
	// walDirty is set by every commit and cleared by the checkpointer.
	walDirty atomic.Bool
	// walRestart and walMax are the log lengths, in frames, from which
	// the checkpointer makes the log restart, and waits for readers to.
	walRestart, walMax int64
	// restartAfter is when the checkpointer may wait for readers again;
	// only the checkpointer uses it.
	restartAfter time.Time
	// stopCheckpoints ends the checkpointer, which then closes
	// checkpointsDone.
	stopCheckpoints context.CancelFunc
	checkpointsDone chan struct{}

	// wmu guards pending and leading.
	wmu sync.Mutex
	// pending holds the writes waiting for the next transaction.
	pending []*writeOp
	// leading is true while a caller commits a batch of writes or has been
	// told to.
	leading bool

	// bodyBuffers holds *[]byte buffers for compressed delivery bodies.
	bodyBuffers sync.Pool

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
	logger       *slog.Logger
	// walRestart and walMax set Store.walRestart and Store.walMax.
	walRestart, walMax int64
}

// WithClock sets the clock that stamps CreatedAt, times the watchers'
// polls and paces the checkpoints of the write-ahead log. The default is
// the real clock.
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

// WithLogger sets the logger told about failed checkpoints of the
// write-ahead log. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
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
		logger:       slog.Default(),
		walRestart:   walRestartFrames,
		walMax:       walMaxFrames,
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
			_, err := c.Exec(writePragmas(), nil)
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
	ckpt := sql.OpenDB(connector{dsn: dsn(abs, restartBusyTimeout, false), driver: &sqlite3.SQLiteDriver{}})
	ckpt.SetMaxOpenConns(1)
	ckpt.SetMaxIdleConns(1)
	ckpt.SetConnMaxLifetime(0)
	ckpt.SetConnMaxIdleTime(0)
	for _, db := range []*sql.DB{read, ckpt} {
		if err := db.PingContext(ctx); err != nil {
			write.Close()
			read.Close()
			ckpt.Close()
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}

	stop, cancel := context.WithCancel(context.Background())
	s := &Store{
		write:           write,
		read:            read,
		ckpt:            ckpt,
		clock:           o.clock,
		poll:            o.pollInterval,
		log:             o.logger.With("store", abs),
		walRestart:      o.walRestart,
		walMax:          o.walMax,
		stopCheckpoints: cancel,
		checkpointsDone: make(chan struct{}),
		changed:         make(chan struct{}),
	}
	// A log left by an earlier process may hold writes to copy.
	s.walDirty.Store(true)
	go s.checkpointLoop(stop, s.checkpointsDone)
	return s, nil
}

// dsn returns the go-sqlite3 data source name of the file at abs. Every
// connection gets WAL mode, synchronous=NORMAL, foreign keys and the busy
// timeout; the read connections are query-only, and the others (the write
// connection and the checkpointer's) start their transactions with BEGIN
// IMMEDIATE, so that they take the write lock before reading what they
// will change.
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

// writePragmas returns the statements that set up the write connection.
// It leaves checkpoints to the checkpointer (checkpoint.go) and truncates a
// long log when the log restarts. It keeps its statement journals in
// memory: each write of a batch runs behind a savepoint, which journals
// the pages the write changes, and SQLite otherwise keeps that journal in
// 64 KiB blocks, spilling to a file past the first. Allocating and freeing
// such a block for every write made the C allocator hand memory back to
// the system and take it again each time, a third of the cost of a write;
// an in-memory journal grows in 1 KiB blocks.
func writePragmas() string {
	return fmt.Sprintf(`PRAGMA wal_autocheckpoint = 0;
PRAGMA journal_size_limit = %d;
PRAGMA temp_store = MEMORY;`, walSizeLimit)
}

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

// Close stops the checkpointer and closes the store's connections; the
// last connection to the file to close checkpoints the whole log. Watchers
// still running fail; close a Store after its users are done with it.
func (s *Store) Close() error {
	s.stopCheckpoints()
	<-s.checkpointsDone
	return errors.Join(s.read.Close(), s.ckpt.Close(), s.write.Close())
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
