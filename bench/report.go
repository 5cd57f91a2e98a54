package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"braid/bench/emu"
)

// Write puts results.json, report.md and the plots into dir (created if
// needed) and returns the names of the files written.
func Write(dir string, res *Results) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	files := []string{"results.json"}
	plots, err := WritePlots(dir, res)
	if err != nil {
		return files, fmt.Errorf("plots: %w", err)
	}
	var md strings.Builder
	WriteReport(&md, res, plots)
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()), 0o644); err != nil {
		return files, err
	}
	return append(append(files, "report.md"), plots...), nil
}

// metric is one column of the report.
type metric struct {
	head   string
	get    func(*SystemResult) *float64
	format string
	// higher is better (goodput); otherwise lower is (latency).
	higher bool
	// ratios: whether ratios to best and limit mean anything (the
	// ratio tables show only these).
	ratios bool
}

func f64(p *int64) *float64 {
	if p == nil {
		return nil
	}
	v := float64(*p)
	return &v
}

func scaled(p *float64, k float64) *float64 {
	if p == nil {
		return nil
	}
	v := *p * k
	return &v
}

var reportMetrics = []metric{
	{"goodput Mbit/s", func(s *SystemResult) *float64 { return scaled(s.GoodputBps, 1e-6) }, "%.1f", true, true},
	{"efficiency", func(s *SystemResult) *float64 { return s.Efficiency }, "%.2f", true, true},
	{"max stall ms", func(s *SystemResult) *float64 { return s.MaxStallMs }, "%.0f", false, true},
	{"bytes lost", func(s *SystemResult) *float64 { return f64(s.BytesLost) }, "%.0f", false, false},
	{"rr p50 ms", func(s *SystemResult) *float64 { return s.RRP50Ms }, "%.1f", false, true},
	{"rr p99 ms", func(s *SystemResult) *float64 { return s.RRP99Ms }, "%.1f", false, true},
	{"block p99 ms", func(s *SystemResult) *float64 { return s.BlockP99Ms }, "%.1f", false, true},
	{"cost $/GB", func(s *SystemResult) *float64 { return s.CostUSDPerGB }, "%.2f", false, true},
	{"redundancy", func(s *SystemResult) *float64 { return s.Redundancy }, "%.2f", false, true},
	{"plan optimum $/GB", func(s *SystemResult) *float64 { return s.PlanCostUSDPerGB }, "%.2f", false, false},
	{"SLA ok", func(s *SystemResult) *float64 { return s.SLAOKFraction }, "%.2f", true, true},
	{"CPU s/GB", func(s *SystemResult) *float64 { return s.CPUSPerGB }, "%.2f", false, true},
	{"peak RSS MiB", func(s *SystemResult) *float64 { return scaled(f64(s.PeakRSSBytes), 1.0/(1<<20)) }, "%.0f", false, true},
}

// WriteReport writes report.md: the scenario, then the systems side by
// side, one figure a cell, then the ratios of those figures to the best
// system and to the limit in tables of their own.
func WriteReport(w io.Writer, res *Results, plots []string) {
	sc := res.Scn
	fmt.Fprintf(w, "# braid-bench: %s\n\n", res.Scenario)
	if sc.Description != "" {
		fmt.Fprintf(w, "%s.\n\n", strings.TrimSuffix(sc.Description, "."))
	}
	fmt.Fprintf(w, "%s of workloads, the first %s left out as warm-up; seed %d. Systems ran one after another, each over freshly emulated paths with the same seeds.\n\n",
		sc.Duration, sc.Warmup, res.Seed)

	fmt.Fprintln(w, "| path | down | up | RTT | loss | price $/GB | operator | medium | conns |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, p := range sc.Paths {
		if !p.Emulated {
			fmt.Fprintf(w, "| %s | loopback | loopback | - | - | %.2f | %s | %s | %s |\n", p.Name, p.PriceGB, p.Operator, p.Medium, connsOf(p))
			continue
		}
		loss := fmt.Sprintf("%.2g%%", p.Down.Loss*100)
		if p.Down.GE != nil {
			loss += fmt.Sprintf(" + bursts (%.2g%% mean)", p.Down.GE.LossRate()*100)
		}
		var extra []string
		if len(p.Down.Outages) > 0 {
			extra = append(extra, fmt.Sprintf("%d outage(s)", len(p.Down.Outages)))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.2f | %s | %s | %s |\n", p.Name, linkRate(p.Down), linkRate(p.Up),
			(p.Up.Delay + p.Down.Delay).Round(time.Millisecond), loss+strings.Join(extra, ", "), p.PriceGB, p.Operator, p.Medium, connsOf(p))
	}
	fmt.Fprintln(w)
	if len(sc.Events) > 0 {
		for _, e := range sc.Events {
			what := "restored"
			if e.Kill {
				what = "killed"
			}
			fmt.Fprintf(w, "- t=%v: path %s %s\n", e.At, e.Path, what)
		}
		fmt.Fprintln(w)
	}
	for _, wl := range sc.Workloads {
		fmt.Fprintf(w, "- workload: %s\n", describeWorkload(wl))
	}
	if sc.SLA != nil {
		var parts []string
		if sc.SLA.MinGoodputBps > 0 {
			parts = append(parts, fmt.Sprintf("goodput >= %.1f Mbit/s", sc.SLA.MinGoodputBps/1e6))
		}
		if sc.SLA.P99Latency > 0 {
			parts = append(parts, fmt.Sprintf("p99 latency <= %v", sc.SLA.P99Latency))
		}
		fmt.Fprintf(w, "- SLA, per 1-second window: %s\n", strings.Join(parts, " and "))
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "## Results")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "One figure per cell; `-`: does not apply. The ratios to the best system and to the limit follow in tables of their own.")
	fmt.Fprintln(w)
	// Only the columns some system has a value for.
	var cols []metric
	for _, m := range reportMetrics {
		for i := range res.Systems {
			if m.get(&res.Systems[i]) != nil {
				cols = append(cols, m)
				break
			}
		}
	}
	writeTable(w, res, cols, func(m metric, s *SystemResult) string { return value(m, s) })
	writeRatios(w, res, cols)

	// Bytes per path.
	fmt.Fprintln(w, "Bytes each path carried (both directions, on the wire), MB:")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| system |")
	for _, p := range sc.Paths {
		fmt.Fprintf(w, " %s |", p.Name)
	}
	fmt.Fprint(w, "\n| --- |")
	for range sc.Paths {
		fmt.Fprint(w, " --- |")
	}
	fmt.Fprintln(w)
	for _, s := range res.Systems {
		if s.BytesPerPath == nil {
			continue
		}
		fmt.Fprintf(w, "| %s |", s.Name)
		for _, p := range sc.Paths {
			fmt.Fprintf(w, " %.1f |", float64(s.BytesPerPath[p.Name])/1e6)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	writeUDP(w, res)

	var notes []string
	for _, s := range res.Systems {
		if s.Error != "" {
			notes = append(notes, fmt.Sprintf("- %s did not run: %s", s.Name, s.Error))
		}
		for _, n := range s.Notes {
			notes = append(notes, fmt.Sprintf("- %s: %s", s.Name, n))
		}
	}
	writeOverTime(w, res)
	if len(notes) > 0 {
		fmt.Fprintln(w, "## Notes")
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
		fmt.Fprintln(w)
	}
	if len(plots) > 0 {
		fmt.Fprintln(w, "## Plots")
		fmt.Fprintln(w)
		for _, p := range plots {
			fmt.Fprintf(w, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
		}
	}
	fmt.Fprintln(w, "Metrics are defined in docs/BENCH.md. CPU and peak RSS are of the whole process, emulator included.")
}

func linkRate(l emu.Link) string {
	var s string
	if l.Trace != nil {
		s = fmt.Sprintf("trace %s (mean %.1f Mbit/s)", filepath.Base(l.Trace.Name()), l.Trace.MeanRateBps()/1e6)
	} else {
		s = fmt.Sprintf("%g Mbit/s", l.RateBps/1e6)
	}
	if l.Schedule != nil {
		s += ", schedule " + filepath.Base(l.Schedule.Name())
	}
	return s
}

func describeWorkload(w Workload) string {
	window := ""
	if w.Start > 0 || w.Stop > 0 {
		window = fmt.Sprintf(", from %v", w.Start)
		if w.Stop > 0 {
			window += fmt.Sprintf(" to %v", w.Stop)
		}
	}
	if w.Kind == "rr" {
		return fmt.Sprintf("requests of %d B at %.0f/s (Poisson), responses of %v B%s", w.RequestBytes, w.RatePerS, w.ResponseBytes, window)
	}
	dir := "upload"
	if w.Download {
		dir = "download"
	}
	s := fmt.Sprintf("bulk %s, %d flow(s)", dir, w.Flows)
	if w.Size > 0 {
		s += fmt.Sprintf(" of %.1f MB each", float64(w.Size)/1e6)
	}
	if w.RateBps > 0 {
		s += fmt.Sprintf(", paced at %.1f Mbit/s", w.RateBps/1e6)
	}
	return s + window
}

// writeTable writes one row per system and one column per metric, each
// cell what fig gives.
func writeTable(w io.Writer, res *Results, cols []metric, fig func(metric, *SystemResult) string) {
	fmt.Fprint(w, "| system |")
	for _, m := range cols {
		fmt.Fprintf(w, " %s |", m.head)
	}
	fmt.Fprint(w, "\n| --- |")
	for range cols {
		fmt.Fprint(w, " --- |")
	}
	fmt.Fprintln(w)
	for i := range res.Systems {
		s := &res.Systems[i]
		fmt.Fprintf(w, "| %s |", s.Name)
		for _, m := range cols {
			fmt.Fprintf(w, " %s |", fig(m, s))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// writeRatios writes the ratios of the figures in cols, where they mean
// something, to the best system and to the limit: two tables of one
// ratio a cell, each with only the columns where some ratio exists.
func writeRatios(w io.Writer, res *Results, cols []metric) {
	for _, to := range append([]ratioRef{
		{"Ratio to the best system (the best in each column, the limit left out, is 1.00)", func(m metric) float64 { return best(m, res) }},
		{"Ratio to the limit (what the paths allow at best)", func(m metric) float64 { return deref(m.get(&res.Limit)) }},
	}, kernelRefs(res)...) {
		var rc []metric
		for _, m := range cols {
			if !m.ratios {
				continue
			}
			for i := range res.Systems {
				if ratio(m, &res.Systems[i], to.den(m)) != "-" {
					rc = append(rc, m)
					break
				}
			}
		}
		if len(rc) == 0 {
			continue
		}
		fmt.Fprintf(w, "### %s\n\n", to.title)
		writeTable(w, res, rc, func(m metric, s *SystemResult) string { return ratio(m, s, to.den(m)) })
	}
}

// ratioRef is a ratio table: its title and each metric's denominator.
type ratioRef struct {
	title string
	den   func(metric) float64
}

// kernelRefs are the ratio tables to the kernel systems that ran.
func kernelRefs(res *Results) []ratioRef {
	var refs []ratioRef
	for i := range res.Systems {
		k := &res.Systems[i]
		if (k.Name != "mptcp" && k.Name != "tcp") || k.Error != "" {
			continue
		}
		title := "Ratio to mptcp (Linux MPTCP over every path, " + kernelCC + ", in this run)"
		if k.Name == "tcp" {
			title = "Ratio to tcp (one Linux TCP connection per flow over the best path, " + kernelCC + ", in this run)"
		}
		refs = append(refs, ratioRef{title, func(m metric) float64 { return deref(m.get(k)) }})
	}
	return refs
}

// value formats one figure.
func value(m metric, s *SystemResult) string {
	v := m.get(s)
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(m.format, *v)
}

// ratio formats s's figure over den; "-" when either is missing or den
// is 0.
func ratio(m metric, s *SystemResult, den float64) string {
	v := m.get(s)
	if v == nil || math.IsNaN(den) || den == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", *v/den)
}

// best is the best figure of metric m over the systems but the limit;
// NaN when none has one.
func best(m metric, res *Results) float64 {
	b := math.NaN()
	for i := range res.Systems {
		o := &res.Systems[i]
		if o.Name == "limit" {
			continue
		}
		if x := m.get(o); x != nil && (math.IsNaN(b) || (m.higher && *x > b) || (!m.higher && *x < b)) {
			b = *x
		}
	}
	return b
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// Summary writes a short text table of the results, for a terminal.
func Summary(w io.Writer, res *Results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tgoodput Mbit/s\tefficiency\tmax stall ms\tbytes lost\trr p99 ms\tcost $/GB\tSLA ok\tCPU s/GB\t")
	show := func(p *float64, format string) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf(format, *p)
	}
	for i := range res.Systems {
		s := &res.Systems[i]
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\t\t\t\t\t\t\t\n", s.Name, s.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Name,
			show(scaled(s.GoodputBps, 1e-6), "%.1f"), show(s.Efficiency, "%.2f"), show(s.MaxStallMs, "%.0f"),
			show(f64(s.BytesLost), "%.0f"), show(s.RRP99Ms, "%.1f"), show(s.CostUSDPerGB, "%.2f"),
			show(s.SLAOKFraction, "%.2f"), show(s.CPUSPerGB, "%.1f"))
	}
	tw.Flush()
}

// connsOf says how many connections a path's pool keeps: a fixed number,
// or "plan" (as bestvalue's plans ask; one under other systems).
func connsOf(p Path) string {
	if p.Conns == 0 {
		return "plan"
	}
	return strconv.Itoa(p.Conns)
}

// writeOverTime reports, for runs long enough to show a leak (a minute or
// more), the process's resident set and goroutines at the start, at
// their highest and at the end.
func writeOverTime(w io.Writer, res *Results) {
	header := false
	for _, s := range res.Systems {
		if len(s.GoroutinesOverTime) < 60 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "## Memory and goroutines over time")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "Each second of the run (rss_bytes_over_time, goroutines_over_time in results.json); a leak climbs to the end.")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| system | RSS MiB first / highest / last | goroutines first / highest / last |")
			fmt.Fprintln(w, "| --- | --- | --- |")
			header = true
		}
		rss := "-"
		if r := s.RSSOverTime; len(r) > 0 {
			rss = fmt.Sprintf("%.0f / %.0f / %.0f", float64(r[0])/(1<<20), float64(slices.Max(r))/(1<<20), float64(r[len(r)-1])/(1<<20))
		}
		g := s.GoroutinesOverTime
		fmt.Fprintf(w, "| %s | %s | %d / %d / %d |\n", s.Name, rss, g[0], slices.Max(g), g[len(g)-1])
	}
	if header {
		fmt.Fprintln(w)
	}
}

// writeUDP is the UDP workload's table, one row per system and
// direction, when the scenario has one.
func writeUDP(w io.Writer, res *Results) {
	any := false
	for _, s := range res.Systems {
		any = any || s.UDP != nil
	}
	if !any {
		return
	}
	f := func(v *float64, format string) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf(format, *v)
	}
	fmt.Fprintln(w, "UDP datagrams (one-way, after the warmup; down counts the echoes of those that came up):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| system | direction | sent | delivered | p50 ms | p99 ms | jitter ms | longest gap ms | wire bytes per stream byte | datagrams sent per datagram |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range res.Systems {
		if s.UDP == nil {
			continue
		}
		for _, d := range []struct {
			name string
			r    *UDPDirResult
		}{{"up", &s.UDP.Up}, {"down", &s.UDP.Down}} {
			over, coded := "-", "-"
			if d.name == "up" {
				over, coded = f(s.UDP.BytesPerStreamByte, "%.2f"), f(s.UDP.CodedPerDatagram, "%.2f")
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", s.Name, d.name, d.r.Sent,
				f(d.r.DeliveredFraction, "%.4f"), f(d.r.LatencyP50Ms, "%.1f"), f(d.r.LatencyP99Ms, "%.1f"),
				f(d.r.JitterMs, "%.2f"), f(d.r.LongestGapMs, "%.0f"), over, coded)
		}
	}
	fmt.Fprintln(w)
}
