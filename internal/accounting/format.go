package accounting

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Formats are the forms Report.Write writes.
var Formats = []string{"table", "csv", "json"}

// Write writes the report as a table (for people), CSV or JSON (for
// programs); each has one line per group and the total last.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "table":
		return r.table(w)
	case "csv":
		return r.csv(w)
	case "json":
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(r)
	}
	return fmt.Errorf("format %q is not table, csv or json", format)
}

var header = []string{"bytes_up", "bytes_down", "cost_usd", "revenue_usd", "profit_usd", "sla_met_s", "sla_missed_s", "records"}

func (l *Line) fields() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	return []string{strconv.FormatInt(l.BytesUp, 10), strconv.FormatInt(l.BytesDown, 10), f(l.CostUSD), f(l.RevenueUSD),
		f(l.ProfitUSD), strconv.FormatFloat(l.SLAMetS, 'f', 1, 64), strconv.FormatFloat(l.SLAMissedS, 'f', 1, 64),
		strconv.FormatInt(l.Records, 10)}
}

// cell keeps a name a spreadsheet would read as a formula (=, +, -, @,
// a tab or a carriage return first) a name, with a leading quote, as
// OWASP's advice on CSV injection has it: names come from clients'
// paths and operators' tiers.
// A line named as the total ("TOTAL": a client may name a path so) is
// quoted too, in the table as well, so it is not read as the total.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) || s == totalKey {
		return "'" + s
	}
	return s
}

// totalKey names the total line.
const totalKey = "TOTAL"

func (r *Report) csv(w io.Writer) error {
	c := csv.NewWriter(w)
	c.Write(append([]string{string(r.By)}, header...))
	for i := range r.Lines {
		c.Write(append([]string{cell(r.Lines[i].Key)}, r.Lines[i].fields()...))
	}
	c.Write(append([]string{r.Total.Key}, r.Total.fields()...))
	c.Flush()
	return c.Error()
}

func (r *Report) table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	mb := func(n int64) string { return strconv.FormatFloat(float64(n)/1e6, 'f', 3, 64) }
	usd := func(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
	// Names read left-aligned, figures right-aligned: every name is
	// padded to the longest, so right-aligning it aligns its start.
	width := max(len(r.By), len(r.Total.Key))
	for i := range r.Lines {
		width = max(width, len(r.Lines[i].Key)+1)
	}
	row := func(l *Line) {
		key := l.Key
		if l != &r.Total && key == totalKey {
			key = "'" + key
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t\n", width, key, mb(l.BytesUp), mb(l.BytesDown), usd(l.CostUSD),
			usd(l.RevenueUSD), usd(l.ProfitUSD), l.SLAMetS, l.SLAMissedS)
	}
	fmt.Fprintf(tw, "%-*s\tMB up\tMB down\tcost USD\trevenue USD\tprofit USD\tSLA met s\tSLA missed s\t\n", width, r.By)
	for i := range r.Lines {
		row(&r.Lines[i])
	}
	row(&r.Total)
	return tw.Flush()
}
