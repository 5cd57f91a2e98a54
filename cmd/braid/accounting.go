package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"braid/internal/accounting"
	"braid/server"
)

func accountingFlags(fs *flag.FlagSet, o *serverOpts) {
	fs.StringVar(&o.accounting, "accounting", "", "keep usage per tenant, tier, class and path (bytes, cost, revenue, profit, SLA seconds) in `DSN`: an SQLite file path, or a postgres:// URL that several concentrators share; read it with braid report")
	fs.StringVar(&o.accountingID, "accounting-id", "", "`ID` of this concentrator in the accounting records (default: the host's name)")
}

// accountingOpts reads --accounting and --accounting-id from the command
// line and the config file.
func accountingOpts(args []string) (dsn, id string) {
	o, err := serverEdge(args)
	if err != nil {
		return "", ""
	}
	return o.accounting, o.accountingID
}

// startAccounting opens the accounting database when the command line
// asks for one and points cfg at it; the returned func writes the last
// batch and closes it, after the concentrator has stopped. A database
// braid cannot use is a usage error (exit 2), in one line.
func startAccounting(args []string, cfg *server.Config) (func(), error) {
	dsn, id := accountingOpts(args)
	if dsn == "" {
		if id != "" {
			return nil, badf("--accounting-id", "needs --accounting")
		}
		return func() {}, nil
	}
	if id == "" {
		id, _ = os.Hostname()
	}
	if id == "" || len(id) > 255 || strings.ContainsFunc(id, func(r rune) bool { return r < ' ' }) {
		return nil, badf("--accounting-id", "%q is not 1 to 255 printable characters", id)
	}
	w, err := accounting.NewWriter(context.Background(), accounting.Config{DSN: dsn, Logger: cfg.Logger})
	if err != nil {
		return nil, badf("--accounting", "%v", err)
	}
	cfg.Accounting, cfg.AccountingID = w, id
	cfg.Logger.Info("accounting", "db", w.Backend(), "id", id)
	return func() {
		w.Close()
		st := w.Stats()
		cfg.Logger.Info("accounting closed", "records_written", st.Written, "records_dropped", st.Dropped,
			"failed_batches", st.FailedBatches)
	}, nil
}

func init() {
	commandHelp["report"] = `Usage: braid report --db DSN [--since T] [--until T] [--by tenant|tier|class|path] [--format table|csv|json]

Sums the usage a concentrator kept with --accounting DSN into a bill: per
tenant (a hash of the token, never the token), tier, traffic class or path,
the bytes on the wire each way, their cost at the paths' prices, the revenue
at the tiers' rates, the profit, and the seconds the SLA was met and missed;
then the total, which the lines add up to. T is a time (RFC 3339, or a date
2006-01-02 in UTC) or a duration before now (24h).
`
}

type reportOpts struct {
	db, since, until, by, format, concentrator string
}

func reportFlags(o *reportOpts) *flag.FlagSet {
	fs := newFlagSet("report")
	fs.StringVar(&o.db, "db", "", "the accounting `DSN`: an SQLite file path or a postgres:// URL (required)")
	fs.StringVar(&o.since, "since", "", "only usage after `T`")
	fs.StringVar(&o.until, "until", "", "only usage up to `T`")
	fs.StringVar(&o.by, "by", "tenant", "sum by `GROUP`: tenant, tier, class or path")
	fs.StringVar(&o.format, "format", "table", "`FORMAT`: table, csv or json")
	fs.StringVar(&o.concentrator, "concentrator", "", "only the usage of the concentrator with this --accounting-id `ID`")
	return fs
}

// parseWhen reads a --since or --until value relative to now.
func parseWhen(flagName, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, badf(flagName, "%q is not a time (2026-12-01T10:00:00Z, 2026-12-01) or a duration before now (24h)", v)
}

func runReport(args []string, stdout, stderr io.Writer) int {
	var o reportOpts
	fs := reportFlags(&o)
	if err := parseFlags(fs, args); err != nil {
		return fail(stdout, stderr, "report", fs, err)
	}
	now := time.Now()
	q := accounting.Query{Concentrator: o.concentrator}
	var err error
	if q.Since, err = parseWhen("--since", o.since, now); err != nil {
		return fail(stdout, stderr, "report", nil, err)
	}
	if q.Until, err = parseWhen("--until", o.until, now); err != nil {
		return fail(stdout, stderr, "report", nil, err)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return fail(stdout, stderr, "report", nil, badf("--until", "must be after --since"))
	}
	if q.By, err = accounting.ParseGroup(o.by); err != nil {
		return fail(stdout, stderr, "report", nil, badf("--by", "%v", err))
	}
	switch o.format {
	case "table", "csv", "json":
	default:
		return fail(stdout, stderr, "report", nil, badf("--format", "%q is not table, csv or json", o.format))
	}
	if o.db == "" {
		return fail(stdout, stderr, "report", nil, badf("--db", "is required"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := accounting.Open(ctx, o.db)
	if err != nil {
		var de *accounting.DSNError
		if errors.As(err, &de) {
			return fail(stdout, stderr, "report", nil, badf("--db", "%v", err))
		}
		return fail(stdout, stderr, "report", nil, err)
	}
	defer db.Close()
	r, err := db.Report(ctx, q)
	if err != nil {
		return fail(stdout, stderr, "report", nil, err)
	}
	if err := r.Write(stdout, o.format); err != nil {
		return fail(stdout, stderr, "report", nil, fmt.Errorf("write: %w", err))
	}
	return 0
}
