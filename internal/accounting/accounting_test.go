package accounting

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"braid/internal/pgtest"
	"braid/internal/usage"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// rec is record i of concentrator id, with figures that differ by i.
func rec(id string, i int) usage.Record {
	r := usage.Record{Start: t0.Add(time.Duration(i) * time.Second), End: t0.Add(time.Duration(i+1) * time.Second),
		Concentrator: id, Tenant: fmt.Sprintf("t-%d", i%3), Tier: []string{"gold", "none"}[i%2],
		Class: []string{"default", "interactive"}[i%2], Path: []string{"fiber", "cell", "sat"}[i%3],
		BytesUp: uint64(100 + i), BytesDown: uint64(1000 * (i + 1)), CostUSD: 0.001 * float64(i+1),
		RevenueUSD: 0.003 * float64(i+1), SLAMetS: 0.5, SLAMissedS: 0.25 * float64(i%2)}
	r.ProfitUSD = r.RevenueUSD - r.CostUSD
	return r
}

func count(t *testing.T, dsn string) int64 {
	t.Helper()
	db, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.Report(context.Background(), Query{By: ByPath})
	if err != nil {
		t.Fatal(err)
	}
	return r.Total.Records
}

func newWriter(t *testing.T, dsn string, interval time.Duration, log *slog.Logger) *Writer {
	t.Helper()
	w, err := NewWriter(context.Background(), Config{DSN: dsn, Interval: interval, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func each(t *testing.T, f func(t *testing.T, dsn string, srv *pgtest.Server)) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			dsn, srv := mk(t)
			f(t, dsn, srv)
		})
	}
}

// TestMigrate: a version 1 database with a row is brought to version 2
// at start; the row is kept, with the new columns at 0, and a second
// start changes nothing.
func TestMigrate(t *testing.T) {
	each(t, func(t *testing.T, dsn string, _ *pgtest.Server) {
		ctx := context.Background()
		db, err := open(ctx, dsn, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.migrate(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if v, err := db.version(ctx); err != nil || v != 1 {
			t.Fatalf("version %d, %v; want 1", v, err)
		}
		if _, err := db.db.ExecContext(ctx, `INSERT INTO braid_usage VALUES (1, 2, 'c', 't', 'gold', 'default', 'fiber', 10, 20, 0.5, 1.5, 1.0)`); err != nil {
			t.Fatal(err)
		}
		db.Close()
		for range 2 {
			w := newWriter(t, dsn, time.Hour, nil)
			w.Close()
		}
		db, err = Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if v, err := db.version(ctx); err != nil || v != SchemaVersion {
			t.Fatalf("version %d, %v; want %d", v, err, SchemaVersion)
		}
		var n int
		if err := db.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM braid_schema`).Scan(&n); err != nil || n != SchemaVersion {
			t.Errorf("braid_schema rows %d, %v; want one per version", n, err)
		}
		r, err := db.Report(ctx, Query{By: ByTier})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Lines) != 1 || r.Lines[0].BytesDown != 20 || r.Lines[0].SLAMetS != 0 || r.Lines[0].RevenueUSD != 1.5 {
			t.Errorf("after migration: %+v", r.Lines)
		}
	})
}

// TestBatches: records wait for the interval, then go in one batch.
func TestBatches(t *testing.T) {
	each(t, func(t *testing.T, dsn string, _ *pgtest.Server) {
		w := newWriter(t, dsn, 300*time.Millisecond, nil)
		defer w.Close()
		for i := range 500 {
			if !w.Add(rec("a", i)) {
				t.Fatal("Add refused with room in the queue")
			}
		}
		if n := count(t, dsn); n != 0 {
			t.Errorf("%d records written before the interval", n)
		}
		deadline := time.Now().Add(10 * time.Second)
		for w.Stats().Written < 500 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := count(t, dsn); n != 500 {
			t.Errorf("%d records after the interval, want 500", n)
		}
		if st := w.Stats(); st.Written != 500 || st.Dropped != 0 || st.FailedBatches != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestRestart: a writer that dies (no final write) loses only what was
// queued since its last batch; one that closes loses nothing; the next
// start finds every written record.
func TestRestart(t *testing.T) {
	each(t, func(t *testing.T, dsn string, _ *pgtest.Server) {
		w := newWriter(t, dsn, time.Hour, nil)
		for i := range 300 {
			w.Add(rec("a", i))
		}
		w.Flush() // a batch
		for i := 300; i < 400; i++ {
			w.Add(rec("a", i)) // queued since the last batch
		}
		close(w.abort) // a crash
		<-w.done
		w.db.Close()

		w = newWriter(t, dsn, time.Hour, nil)
		if n := count(t, dsn); n != 300 {
			t.Errorf("after a crash: %d records, want the 300 of the last batch", n)
		}
		for i := 400; i < 450; i++ {
			w.Add(rec("a", i))
		}
		w.Close() // writes at shutdown
		if n := count(t, dsn); n != 350 {
			t.Errorf("after a clean stop: %d records, want 350", n)
		}
	})
}

// TestTwoWriters: two concentrators write one database at once.
func TestTwoWriters(t *testing.T) {
	each(t, func(t *testing.T, dsn string, _ *pgtest.Server) {
		var wg sync.WaitGroup
		ws := make([]*Writer, 2)
		for k := range ws {
			ws[k] = newWriter(t, dsn, 20*time.Millisecond, nil)
		}
		for k, w := range ws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("conc-%d", k)
				for i := range 3000 {
					for !w.Add(rec(id, i)) {
						time.Sleep(time.Millisecond)
					}
					if i%500 == 0 {
						time.Sleep(10 * time.Millisecond)
					}
				}
			}()
		}
		wg.Wait()
		for _, w := range ws {
			w.Close()
			if st := w.Stats(); st.Written != 3000 || st.FailedBatches != 0 {
				t.Errorf("stats %+v", st)
			}
		}
		db, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for k := range ws {
			r, err := db.Report(context.Background(), Query{By: ByPath, Concentrator: fmt.Sprintf("conc-%d", k)})
			if err != nil {
				t.Fatal(err)
			}
			if r.Total.Records != 3000 {
				t.Errorf("concentrator %d: %d records, want 3000", k, r.Total.Records)
			}
		}
	})
}

// TestReportTotals: every grouping's lines sum to the total, which is
// the sum of the records written; Since and Until select by the end of
// the interval.
func TestReportTotals(t *testing.T) {
	each(t, func(t *testing.T, dsn string, _ *pgtest.Server) {
		w := newWriter(t, dsn, time.Hour, nil)
		var want Line
		for i := range 100 {
			r := rec("a", i)
			w.Add(r)
			want.add(&Line{BytesUp: int64(r.BytesUp), BytesDown: int64(r.BytesDown), CostUSD: r.CostUSD,
				RevenueUSD: r.RevenueUSD, ProfitUSD: r.ProfitUSD, SLAMetS: r.SLAMetS, SLAMissedS: r.SLAMissedS, Records: 1})
		}
		w.Close()
		db, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, by := range []Group{ByTenant, ByTier, ByClass, ByPath} {
			r, err := db.Report(context.Background(), Query{By: by})
			if err != nil {
				t.Fatal(err)
			}
			var sum Line
			for i := range r.Lines {
				sum.add(&r.Lines[i])
			}
			sum.Key = r.Total.Key
			if sum != r.Total {
				t.Errorf("by %s: lines sum to %+v, total %+v", by, sum, r.Total)
			}
			if r.Total.BytesUp != want.BytesUp || r.Total.BytesDown != want.BytesDown || r.Total.Records != 100 ||
				!near(r.Total.CostUSD, want.CostUSD) || !near(r.Total.RevenueUSD, want.RevenueUSD) ||
				!near(r.Total.ProfitUSD, want.ProfitUSD) || !near(r.Total.SLAMetS, want.SLAMetS) || !near(r.Total.SLAMissedS, want.SLAMissedS) {
				t.Errorf("by %s: total %+v, want %+v", by, r.Total, want)
			}
			wantLines := map[Group]int{ByTenant: 3, ByTier: 2, ByClass: 2, ByPath: 3}[by]
			if len(r.Lines) != wantLines {
				t.Errorf("by %s: %d lines, want %d", by, len(r.Lines), wantLines)
			}
		}
		// Records 10..19 end in (t0+10s, t0+20s].
		r, err := db.Report(context.Background(), Query{Since: t0.Add(10 * time.Second), Until: t0.Add(20 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Total.Records != 10 {
			t.Errorf("since/until: %d records, want 10", r.Total.Records)
		}
		var buf bytes.Buffer
		for _, f := range []string{"table", "csv", "json"} {
			buf.Reset()
			if err := r.Write(&buf, f); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), "TOTAL") && f != "json" || f == "json" && !strings.Contains(buf.String(), `"total"`) {
				t.Errorf("%s report has no total:\n%s", f, buf.String())
			}
		}
	})
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestBadDSN: a wrong DSN and an unreachable database fail at start with
// one line.
func TestBadDSN(t *testing.T) {
	for _, dsn := range []string{"", "mysql://localhost/x", t.TempDir() + "/no/such/dir/acct.db", "acct.db?mode=ro",
		"postgres://braid@127.0.0.1:1/x?connect_timeout=2"} {
		_, err := NewWriter(context.Background(), Config{DSN: dsn})
		if err == nil {
			t.Errorf("%q: no error", dsn)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "accounting") {
			t.Errorf("%q: %q is not one line naming accounting", dsn, msg)
		}
	}
	if _, err := Open(context.Background(), t.TempDir()+"/none.db"); err == nil || !strings.Contains(err.Error(), "no such database file") {
		t.Errorf("report on a missing file: %v", err)
	}
}

// lockedBuffer is a log destination for several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDatabaseGone: the database goes away under a running writer. Add
// never blocks, the failed batches are counted and kept within the
// queue's bound (the rest dropped to a counter), one line says so, and
// (PostgreSQL, restarted) the kept batch is written when it is back.
func TestDatabaseGone(t *testing.T) {
	each(t, func(t *testing.T, dsn string, srv *pgtest.Server) {
		var logs lockedBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		w, err := NewWriter(context.Background(), Config{DSN: dsn, Interval: 50 * time.Millisecond, QueueLen: 1000, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		w.Add(rec("a", 0))
		w.Flush()
		if w.Stats().Written != 1 {
			t.Fatalf("stats %+v before the database went", w.Stats())
		}
		if srv != nil {
			srv.Stop()
		} else {
			// SQLite has no server to stop: the file's handle closes
			// under the writer instead.
			w.db.db.Close()
		}
		start := time.Now()
		for i := range 5000 {
			w.Add(rec("a", i+1))
			if i%1000 == 0 {
				time.Sleep(120 * time.Millisecond) // a few failed batches
			}
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("5000 Adds took %v with the database gone", d)
		}
		w.Flush()
		st := w.Stats()
		if st.FailedBatches < 2 || st.Dropped < 4000 || st.Written != 1 {
			t.Errorf("stats %+v: want failed batches counted and what passed the queue's bound dropped", st)
		}
		if n := strings.Count(logs.String(), "accounting database write failed"); n != 1 {
			t.Errorf("%d lines about the failure, want 1:\n%s", n, logs.String())
		}
		if srv == nil {
			return
		}
		srv.Start()
		deadline := time.Now().Add(20 * time.Second)
		for w.Stats().Written < 1001 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if st := w.Stats(); st.Written != 1001 {
			t.Errorf("after the database came back: %+v, want the 1000 kept written", st)
		}
		if !strings.Contains(logs.String(), "accounting database writes again") {
			t.Errorf("no line about the database coming back:\n%s", logs.String())
		}
	})
}

// BenchmarkBatch8000 writes one batch of 8000 records: the records of
// 1000 sessions of 4 paths and 2 classes, each interval. The time is the
// concentrator's (and, for PostgreSQL, the server's on the same machine).
func BenchmarkBatch8000(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			dsn := filepath.Join(b.TempDir(), "acct.db")
			if name == "postgres" {
				dsn = pgtest.Start(b).DSN()
			}
			w, err := NewWriter(context.Background(), Config{DSN: dsn, Interval: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			recs := make([]usage.Record, 8000)
			for i := range recs {
				recs[i] = rec("a", i)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := w.db.insert(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestQueueFull: records that come faster than the queue holds between
// two batches are dropped, counted and told in one line a batch.
func TestQueueFull(t *testing.T) {
	var logs lockedBuffer
	w, err := NewWriter(context.Background(), Config{DSN: filepath.Join(t.TempDir(), "a.db"), Interval: time.Hour, QueueLen: 10,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ok := 0
	for i := range 25 {
		if w.Add(rec("a", i)) {
			ok++
		}
	}
	w.Flush()
	if st := w.Stats(); ok != 10 || st.Written != 10 || st.Dropped != 15 {
		t.Errorf("%d taken, stats %+v; want 10 written and 15 dropped", ok, st)
	}
	if n := strings.Count(logs.String(), "accounting queue full"); n != 1 || !strings.Contains(logs.String(), "dropped=15") {
		t.Errorf("want one line about 15 drops:\n%s", logs.String())
	}
	w.Flush()
	if n := strings.Count(logs.String(), "accounting queue full"); n != 1 {
		t.Errorf("a batch without drops told of them again:\n%s", logs.String())
	}
}

// Names come from clients' paths: in CSV one a spreadsheet would run as
// a formula is quoted, and a line named as the total is told apart from
// it in CSV and the table.
func TestReportNamesQuoted(t *testing.T) {
	r := &Report{By: ByPath, Lines: []Line{{Key: "=HYPERLINK(\"x\")"}, {Key: "TOTAL"}, {Key: "-1"}, {Key: "lte"}}, Total: Line{Key: totalKey}}
	var csvOut, table bytes.Buffer
	if err := r.Write(&csvOut, "csv"); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var first []string
	for _, row := range rows[1:] {
		first = append(first, row[0])
	}
	if want := []string{"'=HYPERLINK(\"x\")", "'TOTAL", "'-1", "lte", "TOTAL"}; !slices.Equal(first, want) {
		t.Errorf("CSV names %q, want %q", first, want)
	}
	if err := r.Write(&table, "table"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(table.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "TOTAL ") {
			n++
		}
	}
	if n != 1 || !strings.Contains(table.String(), "'TOTAL") {
		t.Errorf("table:\n%s", table.String())
	}
}

// No password reaches a message: not in the user part, not as a
// parameter, not in a URL that does not parse.
func TestRedact(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u:s3cret@h/db":                    "postgres://u:xxxxx@h/db",
		"postgres://u@h/db?password=s3cret&sslmode=x": "postgres://u@h/db?password=xxxxx&sslmode=x",
		"postgres://u@h/db?SSLPassword=s3cret":        "postgres://u@h/db?SSLPassword=xxxxx",
		"postgres://u:s3%cret@h/db":                   "postgres://(unreadable URL, not shown)",
		"/var/lib/braid/acct.db":                      "/var/lib/braid/acct.db",
	} {
		if got := redact(dsn); got != want || strings.Contains(got, "s3") {
			t.Errorf("redact(%q) = %q, want %q", dsn, got, want)
		}
	}
}
