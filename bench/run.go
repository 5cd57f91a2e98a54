package bench

// The runner: each system in turn, fresh, over freshly emulated paths
// with the same seeds; the same workloads and events on the same clock;
// then the metrics of docs/BENCH.md.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"braid/server"
)

// Options change a run from what its scenario says.
type Options struct {
	// Duration replaces the scenario's (0: keep it). Unless the scenario
	// sets warmup_s, the warm-up follows (DefaultWarmup).
	Duration time.Duration
	// Systems replaces the scenario's list (nil: keep it).
	Systems []string
	// Seed replaces the scenario's (nil: keep it).
	Seed *int64
	// Progress receives a status line while the run goes on (nil: none).
	Progress io.Writer
	// DrainTimeout bounds the wait, after the end, for bytes in flight
	// (default 20 s); what has not arrived by then counts as lost.
	DrainTimeout time.Duration
	// Logger receives braid's logs (both ends) during braid systems; nil
	// discards them.
	Logger *slog.Logger
	// Accounting, when set, receives each braid system's concentrator's
	// usage records (server.Config.Accounting), under the id
	// SCENARIO/SYSTEM, to compare with bytes_per_path and the cost.
	Accounting server.UsageSink
}

// Results is what a run measured; its JSON form is results.json, a
// contract documented in docs/BENCH.md.
type Results struct {
	Scenario  string         `json:"scenario"`
	DurationS float64        `json:"duration_s"`
	WarmupS   float64        `json:"warmup_s"`
	Seed      int64          `json:"seed"`
	Systems   []SystemResult `json:"systems"`

	// Limit is the limit system, computed whether or not it is listed,
	// for the report's ratios.
	Limit SystemResult `json:"-"`
	// Timelines holds, per system run, what it did over time (plots).
	Timelines map[string]*Timeline `json:"-"`
	// Scn is the scenario as run (after Options).
	Scn *Scenario `json:"-"`
}

// SystemResult holds one system's metrics. A nil pointer is a metric
// that does not apply (JSON null), never 0.
type SystemResult struct {
	Name        string   `json:"name"`
	GoodputBps  *float64 `json:"goodput_bps"`
	CapacityBps *float64 `json:"capacity_bps"`
	Efficiency  *float64 `json:"efficiency"`
	MaxStallMs  *float64 `json:"max_stall_ms"`
	BytesLost   *int64   `json:"bytes_lost"`
	RRP50Ms     *float64 `json:"rr_p50_ms"`
	RRP99Ms     *float64 `json:"rr_p99_ms"`
	BlockP99Ms  *float64 `json:"block_p99_ms"`
	// Redundancy is the bytes every path carried (both directions, on
	// the wire) over the bytes delivered: 1 plus parity, copies, re-sends
	// and headers. An additive field, like warmup_s.
	Redundancy *float64 `json:"redundancy"`
	// PlanCostUSDPerGB, on the limit row, is the cheapest cost per GB a
	// plan meeting the scenario's SLA reaches with the true path
	// parameters (scheduler.Solve offline). Additive.
	PlanCostUSDPerGB *float64 `json:"plan_cost_usd_per_gb"`
	CostUSDPerGB     *float64 `json:"cost_usd_per_gb"`
	SLAOKFraction    *float64 `json:"sla_ok_fraction"`
	CPUSPerGB        *float64 `json:"cpu_s_per_gb"`
	PeakRSSBytes     *int64   `json:"peak_rss_bytes"`
	// RSSOverTime and GoroutinesOverTime are the process's resident set
	// and goroutines each second of the run, for leaks (the soak
	// scenario). Additive.
	RSSOverTime        []int64          `json:"rss_bytes_over_time,omitempty"`
	GoroutinesOverTime []int            `json:"goroutines_over_time,omitempty"`
	BytesPerPath       map[string]int64 `json:"bytes_per_path"`
	// GoodputVs is the goodput over that of each kernel system (mptcp,
	// tcp) measured in the same run. Additive.
	GoodputVs map[string]float64 `json:"goodput_vs,omitempty"`
	// Error says why the system could not be measured; its metrics are
	// then all null. It starts with "skipped: " for a system this host
	// cannot run (the kernel systems without root).
	// UDP is the first UDP workload's figures (bench/udp.go).
	UDP *UDPResult `json:"udp,omitempty"`
	// AccountingWindow, with --accounting, is when the concentrator's
	// usage was read at the start and at the end of bytes_per_path's
	// window: `braid report --since SINCE --until UNTIL` bills that
	// window alone. Additive.
	AccountingWindow *Window `json:"accounting_window,omitempty"`

	Error string `json:"error,omitempty"`
	// Notes are problems seen during the run (a flow that failed).
	Notes []string `json:"notes,omitempty"`
}

// Window is a span of time, RFC 3339 with nanoseconds.
type Window struct {
	Since string `json:"since"`
	Until string `json:"until"`
}

// Timeline is one system's run over time.
type Timeline struct {
	Step time.Duration
	// Paths, in scenario order, and each one's rate in the data
	// directions per Step.
	Paths   []string
	PathBps [][]float64
	// GoodputBps is what the receivers got per Step.
	GoodputBps []float64
	// CapacityBps is the sum of the paths' capacities per Step (nil for
	// loopback paths).
	CapacityBps []float64
	// RR and Block are the latencies after warm-up, sorted.
	RR, Block []time.Duration
}

// sampleStep is the resolution of the per-path timelines, a multiple of
// binWidth.
const sampleStep = 200 * time.Millisecond

// num returns a pointer to v, or nil when v is NaN or infinite.
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func integer(v int64) *int64 { return &v }

// With returns a copy of sc with opt's overrides applied and checked.
func (sc *Scenario) With(opt Options) (*Scenario, error) {
	c := *sc
	if opt.Duration < 0 {
		return nil, fmt.Errorf("duration must be > 0")
	}
	if opt.Duration > 0 {
		c.Duration = opt.Duration
		if !c.warmupSet {
			c.Warmup = DefaultWarmup(c.Duration)
		}
		if c.Warmup >= c.Duration {
			return nil, fmt.Errorf("duration %v is not longer than the scenario's warm-up %v", c.Duration, c.Warmup)
		}
	}
	if opt.Systems != nil {
		if err := CheckSystems(opt.Systems, c.Paths); err != nil {
			return nil, fmt.Errorf("systems: %w", err)
		}
		c.Systems = opt.Systems
	}
	if opt.Seed != nil {
		c.Seed = *opt.Seed
	}
	return &c, nil
}

// Run runs every system of the scenario, one after another, and returns
// the results. A system that fails to start is reported in its result's
// Error; Run itself fails only when ctx ends or opt is wrong.
func Run(ctx context.Context, sc *Scenario, opt Options) (*Results, error) {
	sc, err := sc.With(opt)
	if err != nil {
		return nil, err
	}
	if opt.DrainTimeout == 0 {
		opt.DrainTimeout = 20 * time.Second
	}
	id, err := newIdentity()
	if err != nil {
		return nil, err
	}
	res := &Results{Scenario: sc.Name, DurationS: sc.Duration.Seconds(), WarmupS: sc.Warmup.Seconds(),
		Seed: sc.Seed, Timelines: map[string]*Timeline{}, Scn: sc}
	res.Limit = limitResult(sc)
	for i, name := range sc.Systems {
		sys, _ := ParseSystem(name)
		if sys.Kind == "limit" {
			res.Systems = append(res.Systems, res.Limit)
			continue
		}
		prog := func(string) {}
		if opt.Progress != nil {
			prefix := fmt.Sprintf("bench %s [%d/%d] %s", sc.Name, i+1, len(sc.Systems), name)
			prog = func(s string) { fmt.Fprintf(opt.Progress, "\r%-78s", prefix+": "+s) }
		}
		r, tl := runSystem(ctx, sc, sys, id, opt.DrainTimeout, prog, opt.Logger, opt.Accounting)
		if opt.Progress != nil {
			fmt.Fprintln(opt.Progress)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.Systems = append(res.Systems, r)
		if tl != nil {
			res.Timelines[name] = tl
		}
	}
	kernelRatios(res)
	return res, nil
}

// kernelRatios sets each system's goodput over that of each kernel
// system (mptcp, tcp) that ran.
func kernelRatios(res *Results) {
	for _, k := range res.Systems {
		if (k.Name != "mptcp" && k.Name != "tcp") || k.GoodputBps == nil || *k.GoodputBps <= 0 {
			continue
		}
		for i := range res.Systems {
			s := &res.Systems[i]
			if s.Name == k.Name || s.GoodputBps == nil {
				continue
			}
			if s.GoodputVs == nil {
				s.GoodputVs = map[string]float64{}
			}
			s.GoodputVs[k.Name] = *s.GoodputBps / *k.GoodputBps
		}
	}
}

// runSystem sets one system up, runs the workloads through it and
// measures.
func runSystem(ctx context.Context, sc *Scenario, sys System, id identity, drain time.Duration, prog func(string), log *slog.Logger,
	acct server.UsageSink) (SystemResult, *Timeline) {
	res := SystemResult{Name: sys.Name}
	prog("setting up")
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	var e *env
	var err error
	switch sys.Kind {
	case "braid":
		e, err = startBraid(setup, sc, sys, id, log, acct)
	case "quic-direct":
		e, err = startDirect(setup, sc, sys, id)
	case "mptcp", "tcp":
		e, err = startKernel(setup, sc, sys)
	}
	if err == nil {
		if err = e.ready(setup); err != nil {
			e.close()
		}
	}
	cancel()
	if err != nil {
		var skip skipError
		if errors.As(err, &skip) {
			res.Error = "skipped: " + skip.Error()
		} else {
			res.Error = err.Error()
		}
		return res, nil
	}
	defer e.close()

	rec := newRecorder(sc.Duration+drain+time.Second, sc.Warmup)
	resetPeakRSS()
	cpu0 := cpuTime()
	t0 := time.Now()
	rec.clk = clock{t0} // before any goroutine that reads it starts
	dest, err := startDest(rec)
	if err != nil {
		res.Error = err.Error()
		return res, nil
	}
	defer dest.close()
	udest, err := startUDPDest(rec.clk)
	if err != nil {
		res.Error = err.Error()
		return res, nil
	}
	defer udest.close()
	var udps []*udpRec
	// Traces, outages and schedules start with the workloads.
	for _, p := range e.paths {
		if p.link != nil {
			p.link.SetStart(t0)
		}
	}
	base := make([][2]uint64, len(e.paths))
	for k, p := range e.paths {
		base[k][0], base[k][1] = p.bytes()
	}
	var markFrom time.Time
	if e.usageMark != nil {
		markFrom = e.usageMark()
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var bg sync.WaitGroup

	// Events: the kill switch.
	for _, ev := range sc.Events {
		if ev.At >= sc.Duration {
			continue
		}
		for _, p := range e.paths {
			if p.link == nil || sc.Paths[p.index].Name != ev.Path {
				continue
			}
			bg.Add(1)
			go func() {
				defer bg.Done()
				if sleepUntil(runCtx, t0.Add(ev.At)) {
					p.link.SetBroken(ev.Kill)
				}
			}()
		}
	}

	// Sampler and progress.
	samples := [][][2]uint64{}
	var rssOver []int64
	var gorOver []int
	var smu sync.Mutex
	bg.Add(1)
	go func() {
		defer bg.Done()
		tick := time.NewTicker(sampleStep)
		defer tick.Stop()
		var lastGood int64
		lastT := time.Duration(0)
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			row := make([][2]uint64, len(e.paths))
			for k, p := range e.paths {
				u, d := p.bytes()
				row[k] = [2]uint64{u - base[k][0], d - base[k][1]}
			}
			smu.Lock()
			samples = append(samples, row)
			n := len(samples)
			if n%5 == 0 { // every second
				if rss := currentRSS(); rss > 0 {
					rssOver = append(rssOver, rss)
				}
				gorOver = append(gorOver, runtime.NumGoroutine())
			}
			smu.Unlock()
			if n%5 == 0 {
				now := rec.clk.now()
				good := rec.total()
				rate := float64(good-lastGood) * 8 / (now - lastT).Seconds()
				lastGood, lastT = good, now
				phase := "running"
				if now > sc.Duration {
					phase = "draining"
				}
				prog(fmt.Sprintf("%s t=%.0f/%.0fs %.1f Mbit/s", phase, now.Seconds(), sc.Duration.Seconds(), rate/1e6))
			}
		}
	}()

	// Workloads.
	var wg sync.WaitGroup
	var cmu sync.Mutex
	var conns []conn
	track := func(c conn) {
		cmu.Lock()
		conns = append(conns, c)
		cmu.Unlock()
	}
	rng := rand.New(rand.NewPCG(uint64(sc.Seed), 0x7272))
	var flowsByWorkload [][]*flowRec
	for wi := range sc.Workloads {
		w := &sc.Workloads[wi]
		stop := w.Stop
		if stop == 0 || stop > sc.Duration {
			stop = sc.Duration
		}
		if w.Start >= sc.Duration {
			continue // a shortened run ends before this workload begins
		}
		if w.Kind == "udp" {
			ur := newUDPRec(w, sc)
			idx := udest.add(ur)
			udps = append(udps, ur)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if e.dialUDP == nil {
					rec.failf("udp workload: %s carries no UDP", sys.Name)
					return
				}
				if !sleepUntil(runCtx, t0.Add(w.Start)) {
					return
				}
				dctx, cancel := context.WithTimeout(runCtx, 20*time.Second)
				peer, err := e.dialUDP(dctx, udest.addr(), w.Class)
				cancel()
				if err != nil {
					rec.failf("udp workload: dial: %v", err)
					return
				}
				runUDP(runCtx, rec.clk, peer, ur, idx, w.Start, stop)
			}()
			continue
		}
		var flows []*flowRec
		for range w.Flows {
			kind := byte(kindRR)
			if w.Kind == "bulk" {
				kind = kindUpload
				if w.Download {
					kind = kindDownload
				}
			}
			f := rec.newFlow(kind)
			f.size = w.Size
			f.text = w.Text
			if w.RateBps > 0 {
				f.rate = w.RateBps / float64(w.Flows)
			}
			f.start = w.Start
			flows = append(flows, f)
			frng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !sleepUntil(runCtx, t0.Add(w.Start)) {
					return
				}
				dctx, cancel := context.WithTimeout(runCtx, 20*time.Second)
				c, err := e.dial(dctx, dest.addr(), w.Class)
				cancel()
				if err != nil {
					rec.failf("flow %d: dial: %v", f.id, err)
					return
				}
				track(c)
				defer c.Close()
				var hdr [hdrLen]byte
				hdr[0] = f.kind
				hdr[4], hdr[5], hdr[6], hdr[7] = byte(f.id>>24), byte(f.id>>16), byte(f.id>>8), byte(f.id)
				if _, err := c.Write(hdr[:]); err != nil {
					rec.failf("flow %d: header: %v", f.id, err)
					return
				}
				switch f.kind {
				case kindDownload:
					rec.receiveBulk(c, f, true)
				case kindUpload:
					rec.sendBulk(c, f, true)
					io.Copy(io.Discard, c) // the destination closes when it has all
				case kindRR:
					rec.runRR(runCtx, c, f, w, frng)
				}
			}()
		}
		flowsByWorkload = append(flowsByWorkload, flows)
		bg.Add(1)
		go func() {
			defer bg.Done()
			sleepUntil(runCtx, t0.Add(stop))
			for _, f := range flows {
				rec.stopFlow(f)
			}
		}()
	}

	sleepUntil(ctx, t0.Add(sc.Duration))
	for _, flows := range flowsByWorkload {
		for _, f := range flows {
			rec.stopFlow(f)
		}
	}
	prog("draining")
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	cut := func() {
		cmu.Lock()
		for _, c := range conns {
			c.SetDeadline(time.Now())
		}
		cmu.Unlock()
		<-finished
	}
	// Wait for the bytes in flight, up to drain, or until nothing has
	// arrived for drainIdle (a dead path holds them for ever).
	poll := time.NewTicker(100 * time.Millisecond)
	lastTotal, lastChange := rec.total(), time.Now()
drainLoop:
	for deadline := time.Now().Add(drain); ; {
		select {
		case <-finished:
			break drainLoop
		case <-ctx.Done():
			cut()
			break drainLoop
		case now := <-poll.C:
			if n := rec.total(); n != lastTotal {
				lastTotal, lastChange = n, now
			}
			if now.After(deadline) || now.Sub(lastChange) > drainIdle {
				res.Notes = append(res.Notes, fmt.Sprintf("flows still open %v after the end (%v without a byte): cut, what they missed counts as lost",
					rec.clk.now()-sc.Duration, now.Sub(lastChange).Round(100*time.Millisecond)))
				cut()
				break drainLoop
			}
		}
	}
	poll.Stop()
	end := rec.clk.now()
	cpu := cpuTime() - cpu0
	rss := peakRSS()
	final := make([][2]uint64, len(e.paths))
	for k, p := range e.paths {
		u, d := p.bytes()
		final[k] = [2]uint64{u - base[k][0], d - base[k][1]}
	}
	var markTo time.Time
	if e.usageMark != nil {
		markTo = e.usageMark()
	}
	var udpCoding []uint64
	var udpPlans string
	if e.udpCoding != nil {
		d, p, plans := e.udpCoding()
		udpCoding, udpPlans = []uint64{d, p}, plans
	}
	stopRun()
	bg.Wait()
	// Give the destination's handlers their last word (counters) before
	// they are read.
	dest.close()

	r, tl := metrics(sc, e, rec, res, final, samples, cpu, rss, end)
	if !markFrom.IsZero() && !markTo.IsZero() {
		// The concentrator's records read at the same moments as
		// bytes_per_path: a report cut there bills the same window.
		r.AccountingWindow = &Window{Since: markFrom.UTC().Format(time.RFC3339Nano), Until: markTo.UTC().Format(time.RFC3339Nano)}
	}
	if len(udps) > 0 {
		r.UDP = udpMetrics(udps[0], sc.Warmup, sc.Duration)
		if udpCoding != nil {
			data, parity, plans := udpCoding[0], udpCoding[1], udpPlans
			if data > 0 {
				r.UDP.CodedPerDatagram = num(float64(data+parity) / float64(data))
			}
			if plans != "" {
				r.Notes = append(r.Notes, "datagram plans at the end: "+plans)
			}
		}
		if !slices.ContainsFunc(sc.Workloads, func(w Workload) bool { return w.Kind != "udp" }) {
			var wire uint64
			for _, f := range final {
				wire += f[0] + f[1]
			}
			if b := udps[0].bytes.Load(); b > 0 {
				r.UDP.BytesPerStreamByte = num(float64(wire) / float64(b))
			}
		}
	}
	r.RSSOverTime, r.GoroutinesOverTime = rssOver, gorOver
	return r, tl
}

// drainIdle ends the drain early when nothing at all arrives for this long.
const drainIdle = 5 * time.Second

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func (r *recorder) total() int64 {
	var n int64
	for i := range r.bins {
		n += r.bins[i].Load()
	}
	return n
}

// window sums the good bytes delivered in [a, b), both multiples of
// binWidth in practice.
func (r *recorder) window(a, b time.Duration) int64 {
	var n int64
	for i := int(a / binWidth); i < int(b/binWidth) && i < len(r.bins); i++ {
		n += r.bins[i].Load()
	}
	return n
}

// metrics turns what a run recorded into metrics.
func metrics(sc *Scenario, e *env, rec *recorder, res SystemResult, final [][2]uint64,
	samples [][][2]uint64, cpu time.Duration, rss int64, end time.Duration) (SystemResult, *Timeline) {
	span := sc.Duration - sc.Warmup
	good := rec.window(sc.Warmup, sc.Duration)
	res.GoodputBps = num(float64(good) * 8 / span.Seconds())
	capBps := sc.capacity(sc.Warmup, sc.Duration)
	res.CapacityBps = num(capBps)
	if res.CapacityBps != nil && capBps > 0 {
		res.Efficiency = num(*res.GoodputBps / capBps)
	}

	var lost int64
	hasBulk := false
	var stall, stallAt time.Duration
	rec.mu.Lock()
	flows := slices.Clone(rec.flows)
	rr := slices.Clone(rec.rrLat)
	unanswered := 0
	for i := range rr {
		if rr[i].lat < 0 { // never answered: it took at least until the end
			rr[i] = sample{at: end, lat: end - rr[i].at}
			unanswered++
		}
	}
	blk := slices.Clone(rec.blkLat)
	res.Notes = append(res.Notes, rec.flowErr...)
	rec.mu.Unlock()
	for _, f := range flows {
		lost += f.sentUp.Load() - f.goodUp.Load() + f.sentDown.Load() - f.goodDown.Load()
		if f.kind != kindRR {
			hasBulk = true
			if f.maxGap > stall {
				stall, stallAt = f.maxGap, f.maxGapAt
			}
		}
	}
	res.BytesLost = integer(lost)
	if unanswered > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d request(s) never answered, counted as taking until the end of the drain", unanswered))
	}
	if hasBulk {
		res.MaxStallMs = num(float64(stall) / 1e6)
		if stall > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("longest stall %v, ending at t=%v",
				stall.Round(time.Millisecond), stallAt.Round(10*time.Millisecond)))
		}
	}

	after := func(s []sample) []time.Duration {
		var out []time.Duration
		for _, x := range s {
			if x.at-x.lat >= sc.Warmup {
				out = append(out, x.lat)
			}
		}
		slices.Sort(out)
		return out
	}
	rrAfter, blkAfter := after(rr), after(blk)
	if hasKind(sc, "rr") && len(rrAfter) > 0 {
		res.RRP50Ms = num(ms(quantile(rrAfter, 0.50)))
		res.RRP99Ms = num(ms(quantile(rrAfter, 0.99)))
	}
	if len(blkAfter) > 0 {
		res.BlockP99Ms = num(ms(quantile(blkAfter, 0.99)))
	}

	total := rec.total()
	res.BytesPerPath = map[string]int64{}
	for _, p := range sc.Paths {
		res.BytesPerPath[p.Name] = 0 // paths the system did not use
	}
	cost := 0.0
	for k, p := range e.paths {
		n := int64(final[k][0] + final[k][1])
		res.BytesPerPath[sc.Paths[p.index].Name] = n
		cost += float64(n) * sc.Paths[p.index].PriceGB
	}
	if total > 0 {
		res.CostUSDPerGB = num(cost / float64(total))
		var wire int64
		for _, n := range res.BytesPerPath {
			wire += n
		}
		res.Redundancy = num(float64(wire) / float64(total))
	}
	if total > 0 {
		res.CPUSPerGB = num(cpu.Seconds() / (float64(total) / 1e9))
	}
	if rss > 0 {
		res.PeakRSSBytes = integer(rss)
	}

	if sc.SLA != nil {
		var lat []sample
		switch {
		case hasKind(sc, "rr"):
			lat = rr
		case hasPaced(sc):
			lat = blk
		}
		ok, n := 0, 0
		for a := sc.Warmup; a+time.Second <= sc.Duration; a += time.Second {
			n++
			b := a + time.Second
			met := true
			if float64(rec.window(a, b))*8 < sc.goodputTarget(a, b) {
				met = false
			}
			if sc.SLA.P99Latency > 0 && lat != nil {
				// A request or block belongs to the window it was due in,
				// so one never answered fails its window.
				var in []time.Duration
				for _, x := range lat {
					if due := x.at - x.lat; due >= a && due < b {
						in = append(in, x.lat)
					}
				}
				slices.Sort(in)
				if len(in) == 0 || quantile(in, 0.99) > sc.SLA.P99Latency {
					met = false
				}
			}
			if met {
				ok++
			}
		}
		if n > 0 {
			res.SLAOKFraction = num(float64(ok) / float64(n))
		}
	}

	tl := &Timeline{Step: sampleStep, RR: rrAfter, Block: blkAfter}
	up, down := sc.dirs()
	for k, p := range e.paths {
		tl.Paths = append(tl.Paths, sc.Paths[p.index].Name)
		var series []float64
		var prev uint64
		for _, row := range samples {
			var v uint64
			if up {
				v += row[k][0]
			}
			if down {
				v += row[k][1]
			}
			series = append(series, float64(v-prev)*8/sampleStep.Seconds())
			prev = v
		}
		tl.PathBps = append(tl.PathBps, series)
	}
	per := int(sampleStep / binWidth)
	for i := 0; (i+1)*per <= len(rec.bins) && time.Duration(i)*sampleStep < end; i++ {
		var n int64
		for j := i * per; j < (i+1)*per; j++ {
			n += rec.bins[j].Load()
		}
		tl.GoodputBps = append(tl.GoodputBps, float64(n)*8/sampleStep.Seconds())
		if t := time.Duration(i) * sampleStep; res.CapacityBps != nil && t < sc.Duration {
			tl.CapacityBps = append(tl.CapacityBps, sc.capacity(t, t+sampleStep))
		}
	}
	return res, tl
}

// slaSlack is how far below its goodput target a 1-second window may
// fall and still meet the SLA: bytes paced at exactly the SLA rate cross
// window edges with their latency's jitter.
const slaSlack = 0.05

// goodputTarget is the goodput, in bits per window, that a window [a, b)
// must reach for the SLA: min_goodput, or what the workloads offered if
// that is less (a flow asking for less is served by getting it), less
// slaSlack.
func (sc *Scenario) goodputTarget(a, b time.Duration) float64 {
	if sc.SLA.MinGoodputBps == 0 {
		return 0
	}
	offered := 0.0
	for t := a; t < b; t += capStep {
		offered += sc.offered(t) * min(capStep, b-t).Seconds()
	}
	return (1 - slaSlack) * min(sc.SLA.MinGoodputBps*(b-a).Seconds(), offered)
}

func hasKind(sc *Scenario, kind string) bool {
	return slices.ContainsFunc(sc.Workloads, func(w Workload) bool { return w.Kind == kind })
}

func hasPaced(sc *Scenario) bool {
	return slices.ContainsFunc(sc.Workloads, func(w Workload) bool { return w.Kind == "bulk" && w.RateBps > 0 })
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// quantile of sorted durations, nearest rank.
func quantile(s []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
