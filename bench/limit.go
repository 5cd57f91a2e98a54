package bench

import (
	"braid/scheduler"
	"math"
	"slices"
	"time"
)

// limitResult is what the scenario's paths allow at best: every path's
// capacity used (or what the workloads offer, if less), the lowest delay
// for latency, the cheapest paths first for cost.
func limitResult(sc *Scenario) SystemResult {
	res := SystemResult{Name: "limit"}
	for i := range sc.Workloads {
		if sc.Workloads[i].Kind == "udp" {
			res.UDP = udpLimit(sc, &sc.Workloads[i])
			break
		}
	}
	capBps := sc.capacity(sc.Warmup, sc.Duration)
	if math.IsNaN(capBps) {
		return res
	}
	res.CapacityBps = num(capBps)
	// Goodput and stall, step by step.
	var sum float64
	var stall, run time.Duration
	hasBulk := hasKind(sc, "bulk")
	windowGood := func(a, b time.Duration) float64 {
		g := 0.0
		for t := a; t < b; t += capStep {
			e := min(t+capStep, b)
			g += min(sc.capacity(t, e), sc.offered(t)) * (e - t).Seconds()
		}
		return g
	}
	for t := sc.Warmup; t < sc.Duration; t += capStep {
		e := min(t+capStep, sc.Duration)
		c := sc.capacity(t, e)
		sum += min(c, sc.offered(t)) * (e - t).Seconds()
		if c == 0 && sc.offered(t) > 0 {
			run += e - t
			stall = max(stall, run)
		} else {
			run = 0
		}
	}
	gp := sum / (sc.Duration - sc.Warmup).Seconds()
	res.GoodputBps = num(gp)
	if capBps > 0 {
		res.Efficiency = num(gp / capBps)
	}
	if hasBulk {
		res.MaxStallMs = num(ms(stall))
	}
	rtt := sc.minRTT()
	for _, w := range sc.Workloads {
		if w.Kind != "rr" {
			continue
		}
		at := func(q float64) float64 {
			size := float64(w.RequestBytes + sizeQuantile(w, q))
			return ms(rtt) + size*8/capBps*1e3
		}
		res.RRP50Ms, res.RRP99Ms = num(at(0.5)), num(at(0.99))
		break
	}
	oneWay := time.Duration(math.MaxInt64)
	for _, p := range sc.Paths {
		oneWay = min(oneWay, p.Down.Delay)
	}
	if hasPaced(sc) {
		res.BlockP99Ms = num(ms(oneWay))
	}
	// Cost: fill the cheapest paths first up to the goodput.
	type pc struct{ price, cap float64 }
	var pcs []pc
	for i, p := range sc.Paths {
		pcs = append(pcs, pc{p.PriceGB, sc.pathCapacity(i, sc.Warmup, sc.Duration)})
	}
	slices.SortStableFunc(pcs, func(a, b pc) int {
		switch {
		case a.price < b.price:
			return -1
		case a.price > b.price:
			return 1
		}
		return 0
	})
	left, cost := gp, 0.0
	for _, p := range pcs {
		take := min(left, p.cap)
		cost += take * p.price
		left -= take
	}
	if gp > 0 {
		res.CostUSDPerGB = num(cost / gp)
	}
	res.PlanCostUSDPerGB = sc.planOptimum(gp)
	if sc.SLA != nil {
		ok, n := 0, 0
		latOK := true
		if sc.SLA.P99Latency > 0 {
			var l float64
			switch {
			case res.RRP99Ms != nil:
				l = *res.RRP99Ms
			case res.BlockP99Ms != nil:
				l = *res.BlockP99Ms
			}
			latOK = l <= ms(sc.SLA.P99Latency)
		}
		for a := sc.Warmup; a+time.Second <= sc.Duration; a += time.Second {
			n++
			if latOK && windowGood(a, a+time.Second) >= sc.goodputTarget(a, a+time.Second) {
				ok++
			}
		}
		if n > 0 {
			res.SLAOKFraction = num(float64(ok) / float64(n))
		}
	}
	return res
}

// planOptimum is the cheapest cost per GB any plan reaches with the
// emulator's true path parameters (rate, delay, loss, price) under the
// scenario's SLA for its default class, carrying goodput gp (bits/s):
// scheduler.Solve, given what braid's planner can only estimate. Nil
// without an SLA or when no plan meets it.
func (sc *Scenario) planOptimum(gp float64) *float64 {
	if sc.SLA == nil || gp <= 0 {
		return nil
	}
	terms := sc.terms()
	if len(sc.SLA.Classes) > 0 {
		terms.SLA = sc.SLA.Classes[0].SLA
	}
	pr := &scheduler.Problem{SLA: terms.SLA, RevenueGB: terms.RevenueGB, Demand: gp / 8, Profile: terms.Profile}
	for i, p := range sc.Paths {
		c := sc.pathCapacity(i, sc.Warmup, sc.Duration)
		if !(c > 0) {
			continue
		}
		rtt := p.Up.Delay + p.Down.Delay
		pr.Paths = append(pr.Paths, scheduler.PathState{Name: p.Name, Up: true, SRTT: rtt, MinRTT: rtt, RTTP99: rtt,
			Capacity: c / 8, Price: p.PriceGB, Own: p.Operator == "own", Loss: p.Down.Loss})
	}
	plan := scheduler.Solve(time.Time{}, pr)
	if plan.K == 0 || !plan.Feasible {
		return nil
	}
	return num(plan.CostGB)
}
