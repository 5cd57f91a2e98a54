// Package accounting keeps the concentrator's usage records
// (internal/usage) in a database and sums them into reports: SQLite, in
// one file, when the DSN is a file path (a pure-Go driver, so the binary
// stays static), PostgreSQL when it is a postgres:// URL, so several
// concentrators can write to one database.
//
// Writer takes records from the collector without ever blocking it: a
// bounded queue that drops to a counter when full, written in one
// transaction per batch (every Interval and at Close). A crash loses the
// records queued since the last batch, at most one Interval's worth; a
// database that goes away keeps the batch and retries it each Interval
// until the queue's bound is reached, then drops the oldest to a counter.
package accounting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// dialect is what differs between the two databases.
type dialect int

const (
	sqlite dialect = iota
	postgres
)

func (d dialect) String() string {
	if d == postgres {
		return "postgres"
	}
	return "sqlite"
}

// placeholder returns the n-th (from 1) query parameter's marker.
func (d dialect) placeholder(n int) string {
	if d == postgres {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// DSNError is a DSN that names no database braid can open.
type DSNError struct {
	DSN, Reason string
}

func (e *DSNError) Error() string { return fmt.Sprintf("accounting DSN %s: %s", e.DSN, e.Reason) }

// parseDSN picks the backend: postgres:// or postgresql:// URLs are
// PostgreSQL, any other URL is refused, and everything else is an SQLite
// file path. For SQLite it returns the driver's DSN: WAL journaling (a
// report reads while the concentrator writes), a busy timeout (two
// writers take turns) and immediate transactions.
func parseDSN(dsn string, create bool) (dialect, string, error) {
	if dsn == "" {
		return 0, "", &DSNError{dsn, "empty"}
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		switch scheme := strings.ToLower(dsn[:i]); scheme {
		case "postgres", "postgresql":
			if _, err := url.Parse(dsn); err != nil {
				return 0, "", &DSNError{redact(dsn), "not a URL: " + errors.Unwrap(err).Error()}
			}
			return postgres, dsn, nil
		default:
			return 0, "", &DSNError{redact(dsn), fmt.Sprintf("unknown scheme %q (postgres:// for PostgreSQL, a file path for SQLite)", scheme)}
		}
	}
	path := strings.TrimPrefix(dsn, "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return 0, "", &DSNError{dsn, "an SQLite DSN is a plain file path, without options"}
	}
	if create {
		dir := filepath.Dir(path)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return 0, "", &DSNError{dsn, fmt.Sprintf("directory %s does not exist", dir)}
		}
	} else if _, err := os.Stat(path); err != nil {
		return 0, "", &DSNError{dsn, "no such database file"}
	}
	return sqlite, "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate", nil
}

// redact hides a URL's secrets for messages: the password in its user
// part and password or sslpassword parameters. A URL that does not parse
// shows only its scheme (its password may be what breaks it); a file
// path holds none and shows whole.
func redact(dsn string) string {
	i := strings.Index(dsn, "://")
	if i < 0 {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn[:i] + "://(unreadable URL, not shown)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	for k := range q {
		if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// DB is an open accounting database.
type DB struct {
	db      *sql.DB
	dialect dialect
	dsn     string // redacted, for messages
}

// openTimeout bounds connecting to the database at start.
const openTimeout = 10 * time.Second

// open connects to dsn and checks the database answers; create says an
// SQLite file may be created.
func open(ctx context.Context, dsn string, create bool) (*DB, error) {
	d, driverDSN, err := parseDSN(dsn, create)
	if err != nil {
		return nil, err
	}
	driver := "sqlite"
	if d == postgres {
		driver = "pgx"
	}
	db, err := sql.Open(driver, driverDSN)
	if err != nil {
		return nil, &DSNError{redact(dsn), err.Error()}
	}
	if d == sqlite {
		// One connection: SQLite writes one at a time anyway, and the
		// pragmas hold for the connection they were set on.
		db.SetMaxOpenConns(1)
	} else {
		db.SetMaxOpenConns(4)
	}
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("accounting database %s unreachable: %s", redact(dsn), oneLine(err))
	}
	return &DB{db: db, dialect: d, dsn: redact(dsn)}, nil
}

// Open connects to the database dsn names for reading (braid report);
// the schema must be there already.
func Open(ctx context.Context, dsn string) (*DB, error) {
	db, err := open(ctx, dsn, false)
	if err != nil {
		return nil, err
	}
	v, err := db.version(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if v == 0 {
		db.Close()
		return nil, fmt.Errorf("accounting database %s has no braid accounting tables (braid server --accounting creates them)", db.dsn)
	}
	if v > SchemaVersion {
		db.Close()
		return nil, fmt.Errorf("accounting database %s has schema version %d, newer than this braid's %d", db.dsn, v, SchemaVersion)
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error { return db.db.Close() }

// oneLine folds an error's text onto one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
