package scheduler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

const mbit = 1e6 / 8 // bytes per second in a Mbit/s

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func path(name string, mbps float64, rtt time.Duration, price float64, own bool) PathState {
	return PathState{Name: name, Up: true, SRTT: rtt, MinRTT: rtt, RTTP99: rtt, Capacity: mbps * mbit,
		Price: price, Own: own, Rate: mbps * mbit, QueueLimit: 1 << 20}
}

// costSLA is bench/scenarios/cost-sla.toml's paths.
func costSLA() []PathState {
	ms := time.Millisecond
	return []PathState{
		path("fiber", 10, 10*ms, 0.10, true),
		path("cell", 50, 40*ms, 4, false),
		path("sat", 30, 600*ms, 1, false),
	}
}

// oracle solves pr by brute force: every k and every assignment, each
// rung of the ladder in turn; the same model, no pruning.
func oracle(pr *Problem) (best candidate, relaxed []string, ok bool) {
	s := new(solver)
	s.init(pr)
	for _, r := range s.ladder() {
		s.sla = r.sla
		found := false
		for k := 1; k <= s.kmax(); k++ {
			s.setK(k)
			var a [MaxPlanPaths]int
			var rec func(j, n int)
			rec = func(j, n int) {
				if j == s.np {
					if n < k {
						return
					}
					s.a = a
					e := s.evaluate(&a, true)
					if !s.meets(&e) {
						return
					}
					if !found || better(e.Profit, e.PartnerShards, n, best.e.Profit, best.e.PartnerShards, best.n) {
						best = candidate{k: k, a: a, e: e, n: n}
						found = true
					}
					return
				}
				for x := 0; n+x <= s.nmax; x++ {
					a[j] = x
					rec(j+1, n+x)
				}
				a[j] = 0
			}
			rec(0, 0)
		}
		if found {
			return best, r.relaxed, true
		}
	}
	return best, nil, false
}

func checkAgainstOracle(t *testing.T, name string, pr *Problem) Plan {
	t.Helper()
	got := Solve(t0, pr)
	want, relaxed, ok := oracle(pr)
	if !ok {
		if got.K != 0 {
			t.Fatalf("%s: solver found %v, oracle nothing", name, got.String())
		}
		return got
	}
	n := got.K + got.M
	if !reflect.DeepEqual(got.Relaxed, relaxed) {
		t.Fatalf("%s: relaxed %v, oracle %v\n got %s", name, got.Relaxed, relaxed, got.String())
	}
	if better(want.e.Profit, want.e.PartnerShards, want.n, got.Profit, got.PartnerShards, n) ||
		better(got.Profit, got.PartnerShards, n, want.e.Profit, want.e.PartnerShards, want.n) {
		t.Fatalf("%s: solver %s\noracle k=%d a=%v profit %v partner %d n %d", name, got.String(),
			want.k, want.a, want.e.Profit, want.e.PartnerShards, want.n)
	}
	// The plan is what it says: shares sum to k+m, re-evaluation agrees.
	sum := 0
	for _, a := range got.Shards {
		sum += a
	}
	if sum != n {
		t.Fatalf("%s: shards sum %d, k+m %d", name, sum, n)
	}
	ev := Evaluate(pr, &got)
	if math.Abs(ev.Profit-got.Profit) > 1e-12*max(1, math.Abs(got.Profit)) || ev.Survives != got.Survives {
		t.Fatalf("%s: Evaluate %+v, plan %+v", name, ev, got.Explain)
	}
	if ev.Feasible != got.Feasible {
		t.Fatalf("%s: Evaluate feasible %v, plan %v", name, ev.Feasible, got.Feasible)
	}
	checkInvariants(t, name, pr, &got)
	return got
}

// checkInvariants: no path over its capacity, none down or beyond the
// plan, the SLA's failure tolerance and cost cap kept when feasible.
func checkInvariants(t *testing.T, name string, pr *Problem, p *Plan) {
	t.Helper()
	for i, a := range p.Shards {
		if a == 0 {
			continue
		}
		if !pr.Paths[i].Up {
			t.Fatalf("%s: %d shards on down path %s", name, a, pr.Paths[i].Name)
		}
		if load := p.Goodput * float64(a) / float64(p.K); load > pr.Paths[i].Capacity*(1+1e-9) {
			t.Fatalf("%s: path %s carries %.0f B/s over its capacity %.0f", name, pr.Paths[i].Name, load, pr.Paths[i].Capacity)
		}
	}
	if !p.Feasible {
		return
	}
	if p.Survives < pr.SLA.Survive {
		t.Fatalf("%s: survives %d < %d", name, p.Survives, pr.SLA.Survive)
	}
	if pr.SLA.MaxCostGB > 0 && p.CostGB > pr.SLA.MaxCostGB*(1+1e-9) {
		t.Fatalf("%s: $%v/GB over the cap %v", name, p.CostGB, pr.SLA.MaxCostGB)
	}
	if pr.SLA.P99Latency > 0 && p.P99 > pr.SLA.P99Latency {
		t.Fatalf("%s: p99 %v over %v", name, p.P99, pr.SLA.P99Latency)
	}
}

func TestSolveTables(t *testing.T) {
	ms := time.Millisecond
	lim := Limits{MaxShards: 12}
	hi := Profile{CPU: CPUHigh}
	tests := []struct {
		name  string
		pr    Problem
		check func(t *testing.T, p Plan)
	}{
		{"cost-sla: all the fiber, satellite for the rest", Problem{Paths: costSLA(), RevenueGB: 5, Demand: 20 * mbit,
			SLA: SLA{MinGoodput: 20 * mbit, P99Latency: time.Second}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.Shards[1] != 0 || p.Shards[0] != p.Shards[2] || p.M != 0 || !p.Feasible {
					t.Fatalf("want fiber = sat, no cell, no parity: %s", p.String())
				}
				if math.Abs(p.CostGB-0.55) > 1e-9 {
					t.Fatalf("cost %v, want 0.55", p.CostGB)
				}
			}},
		{"interactive: keep off the satellite", Problem{Paths: costSLA(), RevenueGB: 5, Demand: 2 * mbit,
			SLA: SLA{MinGoodput: 2 * mbit, P99Latency: 150 * ms}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.Shards[2] != 0 || !p.Feasible || p.P99 > 150*ms {
					t.Fatalf("satellite used or SLA missed: %s", p.String())
				}
				if p.Shards[0] == 0 || p.Shards[1] != 0 {
					t.Fatalf("2 Mbit/s fits the fiber alone: %s", p.String())
				}
			}},
		{"survive one of three", Problem{Paths: []PathState{path("a", 30, 20*ms, 1, true), path("b", 30, 40*ms, 1, true),
			path("c", 20, 60*ms, 1, true)}, RevenueGB: 5, Demand: math.Inf(1), SLA: SLA{Survive: 1}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.Survives < 1 || !p.Feasible {
					t.Fatalf("does not survive a path: %s", p.String())
				}
				if r := float64(p.K+p.M) / float64(p.K); r > 1.6 {
					t.Fatalf("redundancy %.2f > 1.6: %s", r, p.String())
				}
			}},
		{"two paths, survive one: duplication", Problem{Paths: []PathState{path("a", 30, 20*ms, 1, true), path("b", 30, 40*ms, 1, true)},
			RevenueGB: 5, Demand: math.Inf(1), SLA: SLA{Survive: 1}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.M < p.K || p.Survives != 1 {
					t.Fatalf("want at least 2x: %s", p.String())
				}
			}},
		{"own network preferred at equal price", Problem{Paths: []PathState{path("partner", 50, 20*ms, 1, false), path("own", 50, 20*ms, 1, true)},
			RevenueGB: 5, Demand: 10 * mbit, SLA: SLA{MinGoodput: 10 * mbit}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.Shards[0] != 0 || p.Shards[1] == 0 {
					t.Fatalf("want own only: %s", p.String())
				}
			}},
		{"cost cap forces the cheap path", Problem{Paths: costSLA()[:2], RevenueGB: 5, Demand: 20 * mbit,
			SLA: SLA{MinGoodput: 20 * mbit, MaxCostGB: 1}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				// The fiber alone cannot carry 20 Mbit/s and cell breaks
				// the cap: the cap is given up.
				if p.Feasible || !reflect.DeepEqual(p.Relaxed, []string{"cost cap"}) {
					t.Fatalf("want cost cap relaxed: %s", p.String())
				}
			}},
		{"nothing meets goodput: the most it can get", Problem{Paths: costSLA()[:1], RevenueGB: 5, Demand: 20 * mbit,
			SLA: SLA{MinGoodput: 20 * mbit}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.Feasible || p.Goodput < 10*mbit*(1-1e-9) {
					t.Fatalf("want the fiber's 10 Mbit/s, flagged: %s", p.String())
				}
			}},
		{"lossy paths: parity for residual loss", Problem{Paths: []PathState{
			func() PathState { p := path("a", 40, 20*ms, 1, true); p.Loss = 0.02; return p }(),
			func() PathState { p := path("b", 40, 20*ms, 1, true); p.Loss = 0.02; return p }()},
			RevenueGB: 5, Demand: 10 * mbit, SLA: SLA{MinGoodput: 10 * mbit, ResidualLoss: 0.001}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.M == 0 || p.ResidualLoss > 0.001 || !p.Feasible {
					t.Fatalf("want parity under 0.1%% residual: %s", p.String())
				}
			}},
		{"no path up", Problem{Paths: func() []PathState { p := costSLA(); p[0].Up, p[1].Up, p[2].Up = false, false, false; return p }(),
			RevenueGB: 5, Demand: 20 * mbit, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.K != 0 || p.Feasible {
					t.Fatalf("want an empty plan: %s", p.String())
				}
			}},
		{"a down path is not used", Problem{Paths: func() []PathState { p := costSLA(); p[0].Up = false; return p }(),
			RevenueGB: 5, Demand: 20 * mbit, SLA: SLA{MinGoodput: 20 * mbit}, Profile: hi, Limits: lim},
			func(t *testing.T, p Plan) {
				if p.Shards[0] != 0 || !p.Feasible {
					t.Fatalf("%s", p.String())
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := checkAgainstOracle(t, tc.name, &tc.pr)
			t.Log(p.String())
			tc.check(t, p)
		})
	}
}

// TestSolveRandom compares the solver with the oracle on random path
// sets, SLAs and demands, small enough for brute force.
func TestSolveRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 400
	if testing.Short() {
		n = 100
	}
	feasible := 0
	for it := range n {
		pr := randomProblem(rng, 1+rng.IntN(4), 4+rng.IntN(7))
		p := checkAgainstOracle(t, "random", pr)
		if p.Feasible {
			feasible++
		}
		_ = it
	}
	// The generator makes both kinds; a test that saw only one would
	// check less than it says.
	if feasible == 0 || feasible == n {
		t.Fatalf("%d of %d feasible: the generator should make both", feasible, n)
	}
	t.Logf("%d of %d random problems feasible", feasible, n)
}

func randomProblem(rng *rand.Rand, np, nmax int) *Problem {
	ms := time.Millisecond
	pr := &Problem{RevenueGB: []float64{0.5, 2, 5}[rng.IntN(3)], Profile: Profile{CPU: CPUHigh},
		Limits: Limits{MaxShards: nmax}}
	for i := range np {
		rtt := time.Duration(5+rng.IntN(300)) * ms
		p := path(string(rune('a'+i)), float64(1+rng.IntN(60)), rtt, []float64{0, 0.1, 1, 4}[rng.IntN(4)], rng.IntN(2) == 0)
		p.RTTP99 = rtt + time.Duration(rng.IntN(50))*ms
		if rng.IntN(3) == 0 {
			p.Loss = rng.Float64() * 0.05
		}
		p.Up = rng.IntN(8) != 0
		pr.Paths = append(pr.Paths, p)
	}
	switch rng.IntN(3) {
	case 0:
		pr.Demand = math.Inf(1)
	case 1:
		pr.Demand = float64(1+rng.IntN(60)) * mbit
	}
	if rng.IntN(2) == 0 {
		pr.SLA.MinGoodput = float64(1+rng.IntN(40)) * mbit
	}
	if rng.IntN(2) == 0 {
		pr.SLA.P99Latency = time.Duration(50+rng.IntN(500)) * ms
	}
	if rng.IntN(3) == 0 {
		pr.SLA.ResidualLoss = 0.001
	}
	pr.SLA.Survive = rng.IntN(3)
	if rng.IntN(3) == 0 {
		pr.SLA.MaxCostGB = []float64{0.5, 1, 2}[rng.IntN(3)]
	}
	return pr
}

func TestResidualAndP99(t *testing.T) {
	ms := time.Millisecond
	pr := &Problem{Paths: []PathState{path("a", 8, 20*ms, 0, true), path("b", 8, 100*ms, 0, true)},
		Profile: Profile{CPU: CPUHigh, MTU: 1500}, Limits: Limits{BlockSize: 8000}}
	pr.Paths[0].Loss = 0.1
	s := new(solver)
	s.init(pr)
	s.sla = pr.SLA
	s.setK(2)
	// Shards of 4000 bytes are 3 packets of 1406: lost with 1-0.9^3.
	q := 1 - math.Pow(0.9, 3)
	if math.Abs(s.lossS[0]-q) > 1e-12 {
		t.Fatalf("shard loss %v, want %v", s.lossS[0], q)
	}
	// Two shards on a, one on b, k=2: the block waits for a re-send when
	// both of a's are lost.
	a := [MaxPlanPaths]int{2, 1}
	if got := s.residual(&a, 1); math.Abs(got-q*q) > 1e-12 {
		t.Fatalf("residual %v, want %v", got, q*q)
	}
	// p99: a's shards arrive at 10 ms + 8000/1e6 s = 18 ms; b's at 50 ms
	// + 4 ms = 54 ms. At 18 ms both of a's are in with (1-q)^2 = 0.53;
	// at 54 ms two of three with 1-q^2 = 0.926; a's re-sends are in at
	// 38 ms, before b's: so the p99 is 38 ms.
	if got := s.p99(&a); got != 38*ms {
		t.Fatalf("p99 %v, want 38ms", got)
	}
	// Lossless, one shard each: the second arrives at 50 + 4 ms.
	pr.Paths[0].Loss = 0
	s.init(pr)
	s.sla = pr.SLA
	s.setK(2)
	if got := s.p99(&[MaxPlanPaths]int{1, 1}); got != 54*ms {
		t.Fatalf("p99 %v, want 54ms", got)
	}
}

func TestPlanDeviceProfile(t *testing.T) {
	// The fiber carries 7 of the 20 Mbit/s: the finer the split, the
	// more of it the plan can use.
	paths := costSLA()
	paths[0].Capacity = 7 * mbit
	base := Problem{Paths: paths, RevenueGB: 5, Demand: 20 * mbit, SLA: SLA{MinGoodput: 20 * mbit, P99Latency: time.Second}}
	low, high := base, base
	low.Profile = Profile{CPU: CPULow}
	high.Profile = Profile{CPU: CPUHigh}
	pl, ph := Solve(t0, &low), Solve(t0, &high)
	if pl.ShardSize < 8<<10 || pl.K > 8 {
		t.Fatalf("low CPU: shards of %d bytes, k=%d; want >= 8 KiB", pl.ShardSize, pl.K)
	}
	if ph.ShardSize >= pl.ShardSize {
		t.Fatalf("high CPU shards %d not smaller than low CPU's %d", ph.ShardSize, pl.ShardSize)
	}
	if ph.CostGB >= pl.CostGB {
		t.Fatalf("finer split not cheaper: high %s, low %s", ph.String(), pl.String())
	}
	// Compression: worth it at $0.65/GB on a server, not on a phone's
	// little core unless metered.
	if !ph.Compress || pl.Compress {
		t.Fatalf("compress: high %v low %v", ph.Compress, pl.Compress)
	}
	low.Profile.Metered = true
	cheap := low
	cheap.Paths = costSLA()
	for i := range cheap.Paths {
		cheap.Paths[i].Price = 0.01
	}
	if p := Solve(t0, &cheap); p.Compress {
		t.Fatalf("compress on paths at $0.01/GB: %s", p.String())
	}
}

func TestConns(t *testing.T) {
	ms := time.Millisecond
	flatLossy := path("a", 30, 20*ms, 0, true)
	flatLossy.Loss = 0.01
	bloated := path("b", 30, 20*ms, 0, true)
	bloated.SRTT = 60 * ms
	bloated.RTTP99 = 80 * ms
	for _, tc := range []struct {
		p    PathState
		want int
	}{{flatLossy, 4}, {bloated, 1}, {path("c", 30, 20*ms, 0, true), 2},
		{path("sat", 30, 600*ms, 1, false), 4}, {path("fiber", 10, 10*ms, 0.1, true), 2}} {
		if got := conns(&tc.p); got != tc.want {
			t.Errorf("%s: %d conns, want %d", tc.p.Name, got, tc.want)
		}
	}
}

// BenchmarkSolve measures solves over 4 and 8 random paths with k+m up
// to 32 and reports the median (median-ns/solve) beside the mean, and the
// share of solves cut short by the node budget.
func BenchmarkSolve(b *testing.B) {
	for _, np := range []int{4, 8} {
		b.Run(fmt.Sprintf("paths=%d", np), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			probs := make([]*Problem, 64)
			for i := range probs {
				probs[i] = randomProblem(rng, np, 32)
				probs[i].Profile = Profile{}
			}
			var ds []time.Duration
			cut := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				st := time.Now()
				p := Solve(t0, probs[i%len(probs)])
				ds = append(ds, time.Since(st))
				if !p.Exact && p.K > 0 {
					cut++
				}
			}
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "median-ns/solve")
			b.ReportMetric(float64(cut)/float64(len(ds)), "cut/solve")
		})
	}
}
