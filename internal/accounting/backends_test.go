package accounting

import (
	"path/filepath"
	"testing"

	"braid/internal/pgtest"
)

// backends are the databases every test runs against: an SQLite file,
// and a PostgreSQL server the test starts (nil for SQLite).
func backends(t *testing.T) map[string]func(t *testing.T) (dsn string, srv *pgtest.Server) {
	return map[string]func(t *testing.T) (string, *pgtest.Server){
		"sqlite": func(t *testing.T) (string, *pgtest.Server) {
			return filepath.Join(t.TempDir(), "acct.db"), nil
		},
		"postgres": func(t *testing.T) (string, *pgtest.Server) {
			s := pgtest.Start(t)
			return s.DSN(), s
		},
	}
}
