package accounting

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"braid/internal/pgtest"
	"braid/internal/usage"
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

// A record no database would take (a NUL or invalid UTF-8 in a name, an
// infinite figure) is made one it takes: it does not stop the batch it
// rides in, nor every later one, and no sum becomes infinite.
func TestOddRecordsWritten(t *testing.T) {
	each(t, func(t *testing.T, dsn string, srv *pgtest.Server) {
		w := newWriter(t, dsn, time.Hour, nil)
		odd := []func(*usage.Record){
			func(r *usage.Record) { r.Path = "evil\x00" },
			func(r *usage.Record) { r.Path = "\xff\xfe" },
			func(r *usage.Record) { r.Tier = "t\x00" },
			func(r *usage.Record) { r.CostUSD, r.ProfitUSD = math.Inf(1), math.Inf(-1) },
			func(r *usage.Record) { r.RevenueUSD = math.NaN() },
		}
		for i := range 20 {
			r := rec("c1", i)
			if i < len(odd) {
				odd[i](&r)
			}
			w.Add(r)
		}
		w.Flush()
		st := w.Stats()
		w.Close()
		if st.Written != 20 || st.FailedBatches != 0 {
			t.Fatalf("stats %+v, want 20 written and no failed batch", st)
		}
		db, err := Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rep, err := db.Report(t.Context(), Query{By: ByPath})
		if err != nil {
			t.Fatal(err)
		}
		if tot := rep.Total; math.IsInf(tot.CostUSD, 0) || math.IsNaN(tot.CostUSD) || math.IsInf(tot.ProfitUSD, 0) || math.IsNaN(tot.RevenueUSD) || tot.Records != 20 {
			t.Fatalf("total %+v", tot)
		}
	})
}
