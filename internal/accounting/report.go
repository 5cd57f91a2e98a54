package accounting

import (
	"context"
	"fmt"
	"time"
)

// Group is what a report sums by.
type Group string

// The groupings a report offers, each a column of braid_usage.
const (
	ByTenant Group = "tenant"
	ByTier   Group = "tier"
	ByClass  Group = "class"
	ByPath   Group = "path"
)

// ParseGroup checks a --by value.
func ParseGroup(s string) (Group, error) {
	switch g := Group(s); g {
	case ByTenant, ByTier, ByClass, ByPath:
		return g, nil
	}
	return "", fmt.Errorf("%q is not tenant, tier, class or path", s)
}

// Query is a report's question.
type Query struct {
	// Since and Until bound the records by the end of their interval:
	// Since < end <= Until; zero means unbounded.
	Since, Until time.Time
	// By is the grouping; empty means ByTenant.
	By Group
	// Concentrator, when set, keeps only that concentrator's records.
	Concentrator string
}

// Line is one group's sums, or the total.
type Line struct {
	Key         string    `json:"key"`
	BytesUp     int64     `json:"bytes_up"`
	BytesDown   int64     `json:"bytes_down"`
	CostUSD     float64   `json:"cost_usd"`
	RevenueUSD  float64   `json:"revenue_usd"`
	ProfitUSD   float64   `json:"profit_usd"`
	SLAMetS     float64   `json:"sla_met_s"`
	SLAMissedS  float64   `json:"sla_missed_s"`
	Records     int64     `json:"records"`
	First, Last time.Time `json:"-"`
}

// add sums o into l.
func (l *Line) add(o *Line) {
	l.BytesUp += o.BytesUp
	l.BytesDown += o.BytesDown
	l.CostUSD += o.CostUSD
	l.RevenueUSD += o.RevenueUSD
	l.ProfitUSD += o.ProfitUSD
	l.SLAMetS += o.SLAMetS
	l.SLAMissedS += o.SLAMissedS
	l.Records += o.Records
}

// Report is a bill: one line per group, sorted by key, and their total
// (the lines' sum, so the lines add up to it by construction).
type Report struct {
	By    Group      `json:"by"`
	Since *time.Time `json:"since,omitempty"`
	Until *time.Time `json:"until,omitempty"`
	Lines []Line     `json:"lines"`
	Total Line       `json:"total"`
}

// Report sums the records q selects.
func (db *DB) Report(ctx context.Context, q Query) (*Report, error) {
	by := q.By
	if by == "" {
		by = ByTenant
	}
	if _, err := ParseGroup(string(by)); err != nil {
		return nil, err
	}
	where, args := "WHERE 1=1", []any{}
	if !q.Since.IsZero() {
		args = append(args, q.Since.UnixMicro())
		where += " AND end_us > " + db.dialect.placeholder(len(args))
	}
	if !q.Until.IsZero() {
		args = append(args, q.Until.UnixMicro())
		where += " AND end_us <= " + db.dialect.placeholder(len(args))
	}
	if q.Concentrator != "" {
		args = append(args, q.Concentrator)
		where += " AND concentrator = " + db.dialect.placeholder(len(args))
	}
	// by is one of four column names (ParseGroup), never user text.
	rows, err := db.db.QueryContext(ctx, fmt.Sprintf(`SELECT %[1]s, SUM(bytes_up), SUM(bytes_down), SUM(cost_usd), SUM(revenue_usd),
		SUM(profit_usd), SUM(sla_met_s), SUM(sla_missed_s), COUNT(*) FROM braid_usage %[2]s GROUP BY %[1]s ORDER BY %[1]s`, by, where), args...)
	if err != nil {
		return nil, fmt.Errorf("accounting database %s: report: %s", db.dsn, oneLine(err))
	}
	defer rows.Close()
	r := &Report{By: by, Lines: []Line{}, Total: Line{Key: totalKey}}
	if !q.Since.IsZero() {
		r.Since = &q.Since
	}
	if !q.Until.IsZero() {
		r.Until = &q.Until
	}
	for rows.Next() {
		var l Line
		if err := rows.Scan(&l.Key, &l.BytesUp, &l.BytesDown, &l.CostUSD, &l.RevenueUSD, &l.ProfitUSD,
			&l.SLAMetS, &l.SLAMissedS, &l.Records); err != nil {
			return nil, fmt.Errorf("accounting database %s: report: %s", db.dsn, oneLine(err))
		}
		r.Lines = append(r.Lines, l)
		r.Total.add(&l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("accounting database %s: report: %s", db.dsn, oneLine(err))
	}
	return r, nil
}
