package bench

import (
	"regexp"
	"strings"
	"testing"
)

// tableAfter returns the rows (cells trimmed, header and rule dropped)
// of the first table after the line heading in md.
func tableAfter(t *testing.T, md, heading string) (head []string, rows [][]string) {
	t.Helper()
	i := strings.Index(md, heading)
	if i < 0 {
		t.Fatalf("no %q in:\n%s", heading, md)
	}
	lines := strings.Split(md[i:], "\n")
	in := false
	for _, l := range lines {
		if !strings.HasPrefix(l, "|") {
			if in {
				break
			}
			continue
		}
		in = true
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for k := range cells {
			cells[k] = strings.TrimSpace(cells[k])
		}
		switch {
		case head == nil:
			head = cells
		case cells[0] == "---":
		default:
			rows = append(rows, cells)
		}
	}
	return head, rows
}

var oneFigure = regexp.MustCompile(`^(-|-?[0-9]+(\.[0-9]+)?)$`)

// The results table has one figure per cell; the ratios to the best
// system and to the limit are tables of their own, one ratio a cell.
func TestReportOneFigurePerCell(t *testing.T) {
	res := testResults()
	res.Systems[2].GoodputBps = ptr(10e6) // quic-direct: half the best
	var b strings.Builder
	WriteReport(&b, res, []string{"cost-goodput.png"})
	md := b.String()

	head, rows := tableAfter(t, md, "## Results")
	if len(rows) != len(res.Systems) || head[1] != "goodput Mbit/s" {
		t.Fatalf("results table %q with %d rows:\n%s", head, len(rows), md)
	}
	for _, r := range rows {
		for k, c := range r[1:] {
			if !oneFigure.MatchString(c) {
				t.Errorf("%s, %s: %q is not one figure", r[0], head[k+1], c)
			}
		}
	}

	for _, c := range []struct {
		heading string
		want    map[string]string // system: goodput ratio
	}{
		{"### Ratio to the best system", map[string]string{"bestvalue": "1.00", "quic-direct": "0.50", "limit": "1.00"}},
		{"### Ratio to the limit", map[string]string{"minrtt": "1.00", "quic-direct": "0.50"}},
	} {
		head, rows := tableAfter(t, md, c.heading)
		if head[1] != "goodput Mbit/s" {
			t.Fatalf("%s: columns %q", c.heading, head)
		}
		for _, r := range rows {
			for k, cell := range r[1:] {
				if !oneFigure.MatchString(cell) {
					t.Errorf("%s: %s, %s: %q is not one ratio", c.heading, r[0], head[k+1], cell)
				}
			}
			if w, ok := c.want[r[0]]; ok && r[1] != w {
				t.Errorf("%s: %s goodput %s, want %s", c.heading, r[0], r[1], w)
			}
		}
		for _, h := range head {
			if h == "bytes lost" || h == "plan optimum $/GB" {
				t.Errorf("%s: a column without ratios: %q", c.heading, h)
			}
		}
	}
	// Limit has no CPU: that column has no ratio to the limit, and is left out.
	head, _ = tableAfter(t, md, "### Ratio to the limit")
	for _, h := range head {
		if h == "CPU s/GB" {
			t.Errorf("a ratio-to-limit column of dashes: %q", head)
		}
	}
}
