package accounting

import (
	"context"
	"database/sql"
	"fmt"
)

// SchemaVersion is the version of the tables this braid writes.
const SchemaVersion = 2

// migrations[v-1] takes the schema from version v-1 to v. Statements are
// in the SQL both databases speak. Version 1 held bytes, cost and
// revenue; version 2 adds the SLA seconds and an index on the interval's
// end, which reports filter on.
var migrations = [][]string{
	{`CREATE TABLE braid_usage (
		start_us BIGINT NOT NULL,
		end_us BIGINT NOT NULL,
		concentrator TEXT NOT NULL,
		tenant TEXT NOT NULL,
		tier TEXT NOT NULL,
		class TEXT NOT NULL,
		path TEXT NOT NULL,
		bytes_up BIGINT NOT NULL,
		bytes_down BIGINT NOT NULL,
		cost_usd DOUBLE PRECISION NOT NULL,
		revenue_usd DOUBLE PRECISION NOT NULL,
		profit_usd DOUBLE PRECISION NOT NULL)`},
	{`ALTER TABLE braid_usage ADD COLUMN sla_met_s DOUBLE PRECISION NOT NULL DEFAULT 0`,
		`ALTER TABLE braid_usage ADD COLUMN sla_missed_s DOUBLE PRECISION NOT NULL DEFAULT 0`,
		`CREATE INDEX braid_usage_end ON braid_usage (end_us)`},
}

// version returns the schema's version, 0 when there is none.
func (db *DB) version(ctx context.Context) (int, error) {
	var v int
	err := db.db.QueryRowContext(ctx, `SELECT MAX(version) FROM braid_schema`).Scan(&sqlNullInt{&v})
	if err != nil {
		if db.tableMissing(ctx) {
			return 0, nil
		}
		return 0, fmt.Errorf("accounting database %s: read schema version: %s", db.dsn, oneLine(err))
	}
	return v, nil
}

// tableMissing reports whether braid_schema does not exist.
func (db *DB) tableMissing(ctx context.Context) bool {
	var q string
	if db.dialect == postgres {
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'braid_schema' AND table_schema = current_schema()`
	} else {
		q = `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'braid_schema'`
	}
	var n int
	return db.db.QueryRowContext(ctx, q).Scan(&n) == nil && n == 0
}

// sqlNullInt scans a possibly NULL integer as 0.
type sqlNullInt struct{ v *int }

func (s *sqlNullInt) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*s.v = int(n.Int64)
	return nil
}

// migrate brings the schema to version target in one transaction, so
// that concentrators starting together against one PostgreSQL take turns
// (an advisory lock) and a failed step leaves the schema as it was.
func (db *DB) migrate(ctx context.Context, target int) error {
	if target < 1 || target > len(migrations) {
		return fmt.Errorf("no schema version %d", target)
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("accounting database %s: %s", db.dsn, oneLine(err))
	}
	defer tx.Rollback()
	if db.dialect == postgres {
		// Any constant: braid's key among the database's advisory locks.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7270141)`); err != nil {
			return fmt.Errorf("accounting database %s: lock for migration: %s", db.dsn, oneLine(err))
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS braid_schema (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("accounting database %s: create schema table: %s", db.dsn, oneLine(err))
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM braid_schema`).Scan(&sqlNullInt{&v}); err != nil {
		return fmt.Errorf("accounting database %s: read schema version: %s", db.dsn, oneLine(err))
	}
	if v > len(migrations) {
		return fmt.Errorf("accounting database %s has schema version %d, newer than this braid's %d", db.dsn, v, len(migrations))
	}
	for ; v < target; v++ {
		for _, stmt := range migrations[v] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("accounting database %s: migrate to schema version %d: %s", db.dsn, v+1, oneLine(err))
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO braid_schema (version) VALUES (`+db.dialect.placeholder(1)+`)`, v+1); err != nil {
			return fmt.Errorf("accounting database %s: record schema version %d: %s", db.dsn, v+1, oneLine(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("accounting database %s: commit migration: %s", db.dsn, oneLine(err))
	}
	return nil
}
