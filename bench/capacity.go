package bench

// What the emulated paths could carry, over time: the base of efficiency
// and of the limit system. Traces and schedules are read here a second
// time (after emu validated them) because the emulator only exposes their
// means, and a 20-second run sees a part of a 140-second trace.

import (
	"bufio"
	"encoding/csv"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"braid/bench/emu"
)

// capProfile is one direction's capacity over time, before outages and
// kill events.
type capProfile struct {
	base        float64 // bits/s
	trace       *tracePrefix
	traceOffset time.Duration
	sched       []schedRow
}

// tracePrefix counts a Mahimahi trace's delivery opportunities: cum[i] is
// how many fall before millisecond i of a period.
type tracePrefix struct {
	cum      []int64
	periodMs int64
}

// schedRow is when a schedule's rate takes effect (rows that leave the
// rate unchanged are left out).
type schedRow struct {
	at   time.Duration
	rate float64 // bits/s; 0 is unlimited
}

func traceCounts(path string) (*tracePrefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t := strings.TrimSpace(sc.Text())
		if t == "" {
			continue
		}
		v, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return nil, err
		}
		ms = append(ms, v)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	p := &tracePrefix{periodMs: max(1, ms[len(ms)-1])}
	p.cum = make([]int64, p.periodMs+2)
	for _, v := range ms {
		p.cum[min(v, p.periodMs)+1]++
	}
	for i := 1; i < len(p.cum); i++ {
		p.cum[i] += p.cum[i-1]
	}
	return p, nil
}

// before counts the opportunities before trace time t (t >= 0).
func (p *tracePrefix) before(t time.Duration) float64 {
	ms := float64(t) / 1e6
	loops := math.Floor(ms / float64(p.periodMs))
	r := ms - loops*float64(p.periodMs)
	i := int64(r)
	frac := r - float64(i)
	n := float64(p.cum[i]) + frac*float64(p.cum[i+1]-p.cum[i])
	return loops*float64(p.cum[len(p.cum)-1]) + n
}

// scheduleRates reads the rate column of a schedule CSV (its format was
// checked by emu.LoadSchedule).
func scheduleRates(path string) ([]schedRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	ti, ri := -1, -1
	for i, h := range recs[0] {
		switch strings.TrimPrefix(strings.TrimSpace(h), "\ufeff") {
		case "time_s":
			ti = i
		case "rate_mbps":
			ri = i
		}
	}
	var rows []schedRow
	if ri < 0 {
		return nil, nil
	}
	for _, rec := range recs[1:] {
		if ri >= len(rec) || strings.TrimSpace(rec[ri]) == "" {
			continue
		}
		t, _ := strconv.ParseFloat(strings.TrimSpace(rec[ti]), 64)
		r, _ := strconv.ParseFloat(strings.TrimSpace(rec[ri]), 64)
		rows = append(rows, schedRow{at: seconds(t), rate: r * 1e6})
	}
	return rows, nil
}

// mean returns the average capacity over [a, b) in bits/s, NaN when it is
// unlimited (a schedule's rate 0).
func (c *capProfile) mean(a, b time.Duration) float64 {
	if b <= a {
		return 0
	}
	if c.trace != nil {
		n := c.trace.before(b+c.traceOffset) - c.trace.before(a+c.traceOffset)
		return n * emu.TraceMTU * 8 / (b - a).Seconds()
	}
	// Piecewise constant: integrate over the rows that fall in [a, b).
	sum := 0.0
	t := a
	rate := c.base
	i := 0
	for ; i < len(c.sched) && c.sched[i].at <= a; i++ {
		rate = c.sched[i].rate
	}
	for t < b {
		end := b
		if i < len(c.sched) && c.sched[i].at < b {
			end = c.sched[i].at
		}
		if rate == 0 {
			return math.NaN()
		}
		sum += rate * (end - t).Seconds()
		t = end
		if i < len(c.sched) && c.sched[i].at == end {
			rate = c.sched[i].rate
			i++
		}
	}
	return sum / (b - a).Seconds()
}

// dirs says which directions carry the scenario's data: those of its bulk
// workloads, or down when it has none (rr responses dominate).
func (sc *Scenario) dirs() (up, down bool) {
	for _, w := range sc.Workloads {
		if w.Kind == "bulk" {
			if w.Download {
				down = true
			} else {
				up = true
			}
		}
	}
	if !up && !down {
		down = true
	}
	return up, down
}

// alive reports whether path i carries traffic at t: not in an outage and
// not killed by an event.
func (sc *Scenario) alive(i int, t time.Duration) bool {
	p := &sc.Paths[i]
	for _, o := range p.Down.Outages {
		if t >= o.From && t < o.To {
			return false
		}
	}
	up := true
	for _, e := range sc.Events {
		if e.Path == p.Name && e.At <= t {
			up = !e.Kill
		}
	}
	return up
}

// capStep is the resolution of capacity integrals.
const capStep = 10 * time.Millisecond

// pathCapacity is path i's mean capacity over [a, b) in the data
// directions, counting outages and kill events; NaN when unknown (a
// loopback path or an unlimited link).
func (sc *Scenario) pathCapacity(i int, a, b time.Duration) float64 {
	p := &sc.Paths[i]
	if !p.Emulated {
		return math.NaN()
	}
	up, down := sc.dirs()
	sum := 0.0
	for t := a; t < b; t += capStep {
		e := min(t+capStep, b)
		if !sc.alive(i, t) {
			continue
		}
		if down {
			sum += p.downCap.mean(t, e) * (e - t).Seconds()
		}
		if up {
			sum += p.upCap.mean(t, e) * (e - t).Seconds()
		}
	}
	return sum / (b - a).Seconds()
}

// capacity is the sum of the paths' capacities over [a, b).
func (sc *Scenario) capacity(a, b time.Duration) float64 {
	sum := 0.0
	for i := range sc.Paths {
		sum += sc.pathCapacity(i, a, b)
	}
	return sum
}

// minRTT is the lowest round-trip propagation delay of the paths (the
// base delays, before schedules).
func (sc *Scenario) minRTT() time.Duration {
	best := time.Duration(math.MaxInt64)
	for _, p := range sc.Paths {
		best = min(best, p.Up.Delay+p.Down.Delay)
	}
	return best
}

// offered is the workloads' demand at t in bits/s: +Inf while an unpaced
// bulk flow runs.
func (sc *Scenario) offered(t time.Duration) float64 {
	sum := 0.0
	for _, w := range sc.Workloads {
		stop := w.Stop
		if stop == 0 {
			stop = sc.Duration
		}
		if t < w.Start || t >= stop {
			continue
		}
		switch {
		case w.Kind == "bulk" && w.RateBps == 0:
			return math.Inf(1)
		case w.Kind == "bulk":
			sum += w.RateBps
		case w.Kind == "rr":
			sum += w.RatePerS * 8 * (float64(w.RequestBytes) + meanSize(w))
		}
	}
	return sum
}

func meanSize(w Workload) float64 {
	sum, wsum := 0.0, 0.0
	for i, n := range w.ResponseBytes {
		wt := 1.0
		if w.Weights != nil {
			wt = w.Weights[i]
		}
		sum += wt * float64(n)
		wsum += wt
	}
	return sum / wsum
}

// sizeQuantile is the q-quantile of an rr workload's response sizes.
func sizeQuantile(w Workload, q float64) int {
	type sw struct {
		n  int
		wt float64
	}
	var s []sw
	total := 0.0
	for i, n := range w.ResponseBytes {
		wt := 1.0
		if w.Weights != nil {
			wt = w.Weights[i]
		}
		s = append(s, sw{n, wt})
		total += wt
	}
	slices.SortFunc(s, func(a, b sw) int { return a.n - b.n })
	acc := 0.0
	for _, x := range s {
		acc += x.wt
		if acc >= q*total {
			return x.n
		}
	}
	return s[len(s)-1].n
}
