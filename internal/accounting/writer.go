package accounting

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"braid/internal/usage"
)

// Config is a Writer's settings.
type Config struct {
	// DSN is an SQLite file path or a postgres:// URL.
	DSN string
	// Interval is how often queued records are written (default 10 s).
	Interval time.Duration
	// QueueLen bounds the records waiting to be written, a failed batch
	// kept for retry included (default 65536).
	QueueLen int
	// Logger receives one line when the database goes away and one when
	// it is back; nil discards them.
	Logger *slog.Logger
}

// Stats counts what a Writer did.
type Stats struct {
	// Written is the records stored; Dropped those lost to a full queue
	// (the database away too long, or records coming faster than it
	// takes them); FailedBatches the writes that failed and were kept
	// for retry.
	Written, Dropped, FailedBatches uint64
}

// Writer writes usage records in batches. Add is safe for any goroutine
// and never blocks; Close writes what is queued and waits.
type Writer struct {
	db  *DB
	cfg Config
	log *slog.Logger

	queue chan usage.Record
	stop  chan struct{}
	abort chan struct{} // tests: end as a crash would, writing nothing
	flush chan chan struct{}
	done  chan struct{}
	once  sync.Once

	written, dropped, failed atomic.Uint64
	// pending is the batch being written or kept for retry (the loop's
	// own).
	pending []usage.Record
	down    bool   // the last write failed (the loop's own)
	told    uint64 // Dropped when the last line about drops was written (the loop's own)
}

// NewWriter connects to cfg.DSN, creates or migrates the schema and
// starts writing. An error means the database cannot be used: a wrong
// DSN, or one unreachable now.
func NewWriter(ctx context.Context, cfg Config) (*Writer, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 65536
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := open(ctx, cfg.DSN, true)
	if err != nil {
		return nil, err
	}
	if err := db.migrate(ctx, SchemaVersion); err != nil {
		db.Close()
		return nil, err
	}
	w := &Writer{db: db, cfg: cfg, log: cfg.Logger, queue: make(chan usage.Record, cfg.QueueLen),
		stop: make(chan struct{}), abort: make(chan struct{}), flush: make(chan chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w, nil
}

// Backend names the database kind: "sqlite" or "postgres".
func (w *Writer) Backend() string { return w.db.dialect.String() }

// Add queues r; false when the queue is full and r was dropped (counted
// in Stats.Dropped). It never blocks.
func (w *Writer) Add(r usage.Record) bool {
	select {
	case w.queue <- r:
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), Dropped: w.dropped.Load(), FailedBatches: w.failed.Load()}
}

// Flush writes what is queued now and returns when that write is done
// (or failed); for tests and shutdown.
func (w *Writer) Flush() {
	ch := make(chan struct{})
	select {
	case w.flush <- ch:
		<-ch
	case <-w.done:
	}
}

// Close writes what is queued (one try) and closes the database.
func (w *Writer) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.db.Close()
}

func (w *Writer) loop() {
	defer close(w.done)
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.write()
		case ch := <-w.flush:
			w.write()
			close(ch)
		case <-w.abort:
			return
		case <-w.stop:
			w.write()
			if n := len(w.pending); n > 0 {
				w.dropped.Add(uint64(n))
				w.log.Error("accounting records lost at shutdown: the database did not take them", "records", n, "db", w.db.dsn)
			}
			return
		}
	}
}

// write takes what is queued into the pending batch, keeping it within
// QueueLen (the oldest go first), and writes the batch in one
// transaction. A failed write keeps the batch for the next try.
func (w *Writer) write() {
	for n := len(w.queue); n > 0; n-- {
		r := <-w.queue
		clean(&r)
		w.pending = append(w.pending, r)
	}
	if over := len(w.pending) - w.cfg.QueueLen; over > 0 {
		w.dropped.Add(uint64(over))
		w.pending = append(w.pending[:0], w.pending[over:]...)
	}
	if len(w.pending) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(w.cfg.Interval, 5*time.Second))
	defer cancel()
	if err := w.db.insert(ctx, w.pending); err != nil {
		w.failed.Add(1)
		if !w.down {
			w.down = true
			w.log.Error("accounting database write failed: keeping records and retrying every interval; the data path goes on",
				"db", w.db.dsn, "records", len(w.pending), "err", oneLine(err))
		}
		return
	}
	dropped := w.dropped.Load()
	if w.down {
		w.down = false
		w.log.Info("accounting database writes again", "db", w.db.dsn, "records", len(w.pending),
			"dropped_total", dropped)
	} else if dropped > w.told {
		// Records came faster than the queue holds between two batches:
		// one line a batch at most.
		w.log.Warn("accounting queue full: records dropped", "dropped", dropped-w.told, "dropped_total", dropped,
			"queue", w.cfg.QueueLen)
	}
	w.told = dropped
	w.written.Add(uint64(len(w.pending)))
	w.pending = w.pending[:0]
}

// clean makes a record one every database takes: names valid UTF-8
// without NUL (PostgreSQL refuses either, and with it the whole batch,
// for every try), figures finite (an infinite cost would make every sum
// over it infinite). Names and figures are checked where they come in
// (a peer's path name and price at its join); this holds whatever the
// source.
func clean(r *usage.Record) {
	for _, p := range []*string{&r.Concentrator, &r.Tenant, &r.Tier, &r.Class, &r.Path} {
		if !utf8.ValidString(*p) || strings.IndexByte(*p, 0) >= 0 {
			*p = strings.ReplaceAll(strings.ToValidUTF8(*p, "\uFFFD"), "\x00", "\uFFFD")
		}
	}
	for _, f := range []*float64{&r.CostUSD, &r.RevenueUSD, &r.ProfitUSD, &r.SLAMetS, &r.SLAMissedS} {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
}

// columns are braid_usage's columns in the order insert gives them.
var columns = []string{"start_us", "end_us", "concentrator", "tenant", "tier", "class", "path",
	"bytes_up", "bytes_down", "cost_usd", "revenue_usd", "profit_usd", "sla_met_s", "sla_missed_s"}

// insertRows is the rows one INSERT statement carries: one statement a
// row costs a round trip each (PostgreSQL: 8000 rows took 400 ms so,
// 200 to a statement some 20 times less); 200 rows of 14 columns stay
// far below both databases' limits on parameters.
const insertRows = 200

// insert writes recs in one transaction.
func (db *DB) insert(ctx context.Context, recs []usage.Record) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var stmt *sql.Stmt
	stmtRows := 0
	args := make([]any, 0, insertRows*len(columns))
	for len(recs) > 0 {
		n := min(len(recs), insertRows)
		if stmt == nil || n != stmtRows {
			if stmt != nil {
				stmt.Close()
			}
			if stmt, err = tx.PrepareContext(ctx, db.insertSQL(n)); err != nil {
				return err
			}
			stmtRows = n
		}
		args = args[:0]
		for i := range recs[:n] {
			r := &recs[i]
			args = append(args, r.Start.UnixMicro(), r.End.UnixMicro(), r.Concentrator, r.Tenant, r.Tier, r.Class, r.Path,
				clampInt64(r.BytesUp), clampInt64(r.BytesDown), r.CostUSD, r.RevenueUSD, r.ProfitUSD, r.SLAMetS, r.SLAMissedS)
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			stmt.Close()
			return err
		}
		recs = recs[n:]
	}
	if stmt != nil {
		stmt.Close()
	}
	return tx.Commit()
}

// insertSQL is an INSERT of n rows.
func (db *DB) insertSQL(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO braid_usage (%s) VALUES ", strings.Join(columns, ", "))
	k := 0
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range columns {
			if j > 0 {
				b.WriteString(", ")
			}
			k++
			b.WriteString(db.dialect.placeholder(k))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// clampInt64 stores a byte count in a signed column.
func clampInt64(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
