package scheduler

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// The best-value planner. A Plan is (k, m, a_1..a_p): each block is coded
// into k data and m parity shards and path i carries a_i of them, with
// sum a_i = k + m. Solve picks the plan that earns the provider most per
// second while the class's SLA holds, from a model of each path:
//
//   - goodput: a block's a_i shards of S bytes on a path of capacity c_i
//     bound the block rate, so goodput G <= c_i * k / a_i on every used
//     path; the class gets min(demand, that bound);
//   - cost per delivered GB: sum price_i * a_i / k (parity is paid for);
//   - profit per second: G * (revenue per GB - cost per GB);
//   - surviving the loss of f paths: the f largest a_i are at most m;
//   - residual loss: the probability that more than m of a block's shards
//     are lost on first transmission (a shard is lost when any of its
//     packets is), so the block waits for a re-send;
//   - p99 latency: shards on path i arrive at RTT_p99/2 + a_i*S/c_i, a lost
//     one an RTT_p99 later; a block is delivered when k shards are in, and
//     the p99 is the first of those instants by which k shards are in with
//     probability 0.99.
//
// The search is exact (branch and bound over k and the a_i, checked
// against brute force in the tests); see Solve.

// SLA is what a class of traffic is promised. A zero field is no
// constraint.
type SLA struct {
	// MinGoodput is the goodput the class gets whenever it asks for that
	// much, in bytes per second.
	MinGoodput float64
	// P99Latency bounds the 99th percentile of block delivery time.
	P99Latency time.Duration
	// ResidualLoss bounds the fraction of blocks that cannot be decoded
	// from their first transmission and wait for a re-send.
	ResidualLoss float64
	// Survive is the number of paths whose sudden loss must not stall
	// delivery: the other paths carry at least k shards of every block.
	Survive int
	// MaxCostGB bounds the cost per delivered GB, in USD.
	MaxCostGB float64
	// Deadline makes the class real-time for UDP: a datagram whose
	// one-way delay passes it is dropped at the receiver rather than
	// delivered late, and the datagram planner (PlanDatagrams) repairs
	// losses only within it. Flows of the class ignore it.
	Deadline time.Duration
	// MaxJitter bounds the spread of one-way delay among the paths that
	// carry a real-time class's datagrams (PlanDatagrams).
	MaxJitter time.Duration
}

// CPUClass is how much CPU a device can spend on formatting its traffic.
type CPUClass uint8

// CPU classes, from a phone's little cores to a server.
const (
	CPUMid CPUClass = iota
	CPULow
	CPUHigh
)

// String returns the class's name as configuration spells it.
func (c CPUClass) String() string {
	switch c {
	case CPULow:
		return "low"
	case CPUHigh:
		return "high"
	}
	return "mid"
}

// ParseCPUClass parses "low", "mid" or "high".
func ParseCPUClass(s string) (CPUClass, error) {
	switch s {
	case "low":
		return CPULow, nil
	case "", "mid":
		return CPUMid, nil
	case "high":
		return CPUHigh, nil
	}
	return 0, fmt.Errorf("cpu class %q: want low, mid or high", s)
}

// Profile describes the client device, carried in its join.
type Profile struct {
	// MTU is the device's path MTU in bytes (0: 1500).
	MTU int
	// CPU is its CPU class.
	CPU CPUClass
	// Metered is true when the device pays per byte itself (a phone's
	// data plan): every byte saved is worth more.
	Metered bool
}

// Limits bound the plans Solve considers.
type Limits struct {
	// MaxShards bounds k+m (at most 32, the wire's limit).
	MaxShards int
	// BlockSize is the largest block in bytes (0: 64 KiB).
	BlockSize int
}

// Problem is everything a plan is made from.
type Problem struct {
	// Paths are the session's paths; Plan.Shards is indexed like them.
	// At most MaxPlanPaths of them are used (the first ones up).
	Paths []PathState
	SLA   SLA
	// RevenueGB is what the user's tier pays per delivered GB, in USD.
	RevenueGB float64
	// Demand is the bytes per second the class offers: 0 when idle (the
	// plan is then made for the SLA's goodput, or for all it can get
	// without one), +Inf when it is held back by the current plan.
	Demand  float64
	Profile Profile
	Limits  Limits
}

// MaxPlanPaths is the most paths the exact optimizer plans over.
const MaxPlanPaths = 8

// maxPlanShards is the wire's limit on k+m.
const maxPlanShards = 32

// Plan is how a class's blocks are coded and spread over the paths.
type Plan struct {
	// At is when the plan was made.
	At time.Time
	// K and M are the data and parity shards of a full block.
	K, M int
	// Shards[i] is how many shards of a full block path i carries.
	Shards []int
	// Conns[i] is how many QUIC connections path i's pool should keep:
	// more where loss is random and delay flat (a loss then halves only
	// one connection's window), one where delay climbs with load.
	Conns []int
	// ShardSize is the payload of one shard of a full block.
	ShardSize int
	// Compress is true when the plan's paths are dear enough that
	// compressing a flow whose bytes shrink by 10% pays for the CPU.
	Compress bool
	// Names are the paths' names, for the explanation.
	Names []string
	// prices are the paths' prices when the plan was made.
	prices []float64
	Explain
}

// Explain is a plan's predicted outcome and why it was chosen.
type Explain struct {
	// Feasible is true when the plan meets the whole SLA.
	Feasible bool
	// Relaxed names the SLA terms given up to find a plan when none met
	// them all, in the order they were given up.
	Relaxed []string
	// Goodput is the predicted goodput in bytes per second; Capacity the
	// most the plan could carry.
	Goodput, Capacity float64
	P99               time.Duration
	ResidualLoss      float64
	// Survives is the number of paths whose loss the plan survives.
	Survives int
	CostGB   float64
	// Profit is USD per second: goodput times revenue less cost per GB.
	Profit float64
	// Binding names the constraint closest to being broken.
	Binding string
	// Exact is false when the search hit its budget: the plan is the best
	// found, not proven the best.
	Exact bool
	// PartnerShards counts the shards on partner networks (fewer wins a
	// tie in profit: the provider's own network is preferred).
	PartnerShards int
}

// String is the plan on one line, as logged when it changes.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "k=%d m=%d", p.K, p.M)
	for i, a := range p.Shards {
		if a > 0 {
			name := fmt.Sprint(i)
			if i < len(p.Names) {
				name = p.Names[i]
			}
			fmt.Fprintf(&b, " %s:%d", name, a)
		}
	}
	fmt.Fprintf(&b, " shard=%dB compress=%v: goodput %.1f Mbit/s (capacity %.1f), p99 %v, residual loss %.2g, survives %d, $%.3f/GB, profit $%.4f/h, binds: %s",
		p.ShardSize, p.Compress, p.Goodput*8/1e6, p.Capacity*8/1e6, p.P99.Round(time.Millisecond), p.ResidualLoss,
		p.Survives, p.CostGB, p.Profit*3600, p.Binding)
	if !p.Exact && p.K > 0 {
		b.WriteString(" (search cut short)")
	}
	if !p.Feasible {
		fmt.Fprintf(&b, "; SLA NOT MET (gave up %s)", strings.Join(p.Relaxed, ", "))
	}
	return b.String()
}

// ShareOf returns the shards per block the plan puts on the path named
// name (paths are matched by name: the session's list may have changed
// since the plan was made).
func (p *Plan) ShareOf(name string) int {
	for i, n := range p.Names {
		if n == name && i < len(p.Shards) {
			return p.Shards[i]
		}
	}
	return 0
}

// Uses reports whether the plan puts shards on path i.
func (p *Plan) Uses(i int) bool { return i < len(p.Shards) && p.Shards[i] > 0 }

// SameShape reports whether two plans code and spread blocks alike.
func (p *Plan) SameShape(q *Plan) bool {
	if p.K != q.K || p.M != q.M || len(p.Shards) != len(q.Shards) {
		return false
	}
	for i := range p.Shards {
		if p.Shards[i] != q.Shards[i] {
			return false
		}
	}
	return true
}

// Solve returns the plan that earns most per second while the SLA holds.
// When no plan meets the whole SLA it gives up terms in a fixed order
// (residual loss, then one surviving path at a time, then p99 latency,
// then the cost cap, then goodput) until one does, and says so in
// Relaxed. With no path up it returns a plan with K == 0.
//
// It is exact: for each k it runs a depth-first search over the paths
// (cheapest first, most shards first) that prunes a branch when its best
// possible profit, partner shards and shard count cannot beat the best
// plan found so far, or when it cannot meet the SLA's goodput, cost or
// survival terms; residual loss and latency are checked only on a
// complete plan that would win.
func Solve(now time.Time, pr *Problem) Plan {
	s := solverPool.Get().(*solver)
	defer solverPool.Put(s)
	s.init(pr)
	for _, r := range s.ladder() {
		s.sla = r.sla
		s.search()
		if s.found {
			pl := s.plan(now)
			pl.Exact = !s.cut
			pl.Relaxed = r.relaxed
			pl.Feasible = len(r.relaxed) == 0
			return pl
		}
	}
	return s.emptyPlan(now)
}

// Evaluate predicts how plan p does under pr as it is now (for the
// hysteresis: the current plan is judged by the same model as its
// challenger). Explain.Feasible is false when it breaks the SLA or uses a
// path that is down.
func Evaluate(pr *Problem, p *Plan) Explain {
	s := solverPool.Get().(*solver)
	defer solverPool.Put(s)
	s.init(pr)
	s.sla = pr.SLA
	s.setK(p.K)
	var a [MaxPlanPaths]int
	placed := 0
	for oi := range s.np {
		a[oi] = p.ShareOf(pr.Paths[s.order[oi]].Name)
		placed += a[oi]
	}
	// Shares on paths that are down or gone are not placed.
	down := placed != p.K+p.M
	if p.K == 0 || down {
		return Explain{Binding: BindingDown}
	}
	e := s.evaluate(&a, true)
	e.Feasible = s.meets(&e)
	return e
}

// BindingDown is Explain.Binding of a plan that uses a path that is down
// or gone (Evaluate).
const BindingDown = "a path it uses is down"

// usable reports whether the planner may put shards on a path.
func usable(p *PathState) bool { return p.Up && p.Capacity > 0 }

type rung struct {
	sla     SLA
	relaxed []string
}

// ladder lists the SLA and its relaxations in the order they are tried.
func (s *solver) ladder() []rung {
	full := s.pr.SLA
	out := []rung{{sla: full}}
	cur, relaxed := full, []string(nil)
	step := func(name string, f func(*SLA)) {
		f(&cur)
		relaxed = append(relaxed[:len(relaxed):len(relaxed)], name)
		out = append(out, rung{sla: cur, relaxed: relaxed})
	}
	if cur.ResidualLoss > 0 {
		step("residual loss", func(x *SLA) { x.ResidualLoss = 0 })
	}
	for cur.Survive > 0 {
		step(fmt.Sprintf("survive %d", cur.Survive), func(x *SLA) { x.Survive-- })
	}
	if cur.P99Latency > 0 {
		step("p99 latency", func(x *SLA) { x.P99Latency = 0 })
	}
	if cur.MaxCostGB > 0 {
		step("cost cap", func(x *SLA) { x.MaxCostGB = 0 })
	}
	if cur.MinGoodput > 0 {
		step("goodput", func(x *SLA) { x.MinGoodput = 0 })
	}
	return out
}

// solver is one solve's state: the binomial tables, large and filled on
// demand, and the rest, reset for every problem.
type solver struct {
	pmf [MaxPlanPaths][maxPlanShards + 1]binomTable
	solverState
}

// solverPool keeps solvers (about 70 KB of tables each) between solves.
var solverPool = sync.Pool{New: func() any { return new(solver) }}

type solverState struct {
	pr    *Problem
	sla   SLA
	np    int               // paths planned over
	order [MaxPlanPaths]int // index into pr.Paths, cheapest first
	cap   [MaxPlanPaths]float64
	price [MaxPlanPaths]float64
	own   [MaxPlanPaths]bool
	loss  [MaxPlanPaths]float64 // packet loss
	owd   [MaxPlanPaths]float64 // p99 one-way delay, seconds
	rtt   [MaxPlanPaths]float64 // p99 round trip, seconds

	nmax, block int
	mtuPayload  int
	demand      float64 // demand the plan is made for (may be +Inf)

	// Per k.
	k     int
	greq  float64
	u     [MaxPlanPaths]int
	shard int
	lossS [MaxPlanPaths]float64 // shard loss at this k
	pmfOK [MaxPlanPaths]uint64  // bit x: pmf[i][x] is filled

	nodes int               // search nodes visited
	cut   bool              // the node budget ran out
	n     int               // k+m of the plans being searched
	ub    [MaxPlanPaths]int // shares allowed at this k and n
	a     [MaxPlanPaths]int
	best  candidate
	found bool
}

type binomTable struct {
	pmf  [maxPlanShards + 1]float64
	tail [maxPlanShards + 2]float64
}

type candidate struct {
	k int
	a [MaxPlanPaths]int
	e Explain
	n int
}

func (s *solver) init(pr *Problem) {
	// Reset all but the binomial tables (pmfOK says which are valid).
	s.solverState = solverState{pr: pr}
	s.nmax = pr.Limits.MaxShards
	if s.nmax <= 0 || s.nmax > maxPlanShards {
		s.nmax = maxPlanShards
	}
	s.block = pr.Limits.BlockSize
	if s.block <= 0 {
		s.block = 64 << 10
	}
	mtu := pr.Profile.MTU
	if mtu <= 0 {
		mtu = 1500
	}
	// IPv6 + UDP headers, a short QUIC header, a STREAM frame header and
	// the AEAD tag: what is left of a packet for shard bytes.
	s.mtuPayload = max(mtu-40-8-30-16, 200)
	for i := range pr.Paths {
		if s.np == MaxPlanPaths {
			break
		}
		if usable(&pr.Paths[i]) {
			s.order[s.np] = i
			s.np++
		}
	}
	// Cheapest first; own network first at equal price; then by index,
	// so the order is deterministic.
	for i := 1; i < s.np; i++ {
		for j := i; j > 0 && s.before(s.order[j], s.order[j-1]); j-- {
			s.order[j], s.order[j-1] = s.order[j-1], s.order[j]
		}
	}
	for oi := range s.np {
		p := &pr.Paths[s.order[oi]]
		s.cap[oi] = p.Capacity
		s.price[oi] = max(p.Price, 0)
		s.own[oi] = p.Own
		s.loss[oi] = min(max(p.Loss, 0), 1)
		r := p.RTTP99
		if r < p.SRTT {
			r = p.SRTT
		}
		s.rtt[oi] = r.Seconds()
		s.owd[oi] = r.Seconds() / 2
	}
	s.demand = pr.Demand
	if !(s.demand > 0) {
		s.demand = pr.SLA.MinGoodput
		if !(s.demand > 0) {
			s.demand = math.Inf(1)
		}
	}
}

func (s *solver) before(i, j int) bool {
	a, b := &s.pr.Paths[i], &s.pr.Paths[j]
	if a.Price != b.Price {
		return a.Price < b.Price
	}
	if a.Own != b.Own {
		return a.Own
	}
	return i < j
}

// kmax is the most data shards a block may have: shards no smaller than
// the profile allows. A shard smaller than a packet's payload only adds
// headers; a low-end CPU pays per shard too, so it gets bigger ones.
func (s *solver) kmax() int {
	minShard := s.mtuPayload
	switch s.pr.Profile.CPU {
	case CPULow:
		minShard = max(minShard, 8<<10)
	case CPUMid:
		minShard = max(minShard, 2<<10)
	}
	return max(1, min(s.nmax, s.block/minShard))
}

func (s *solver) setK(k int) {
	s.k = k
	s.greq = min(s.sla.MinGoodput, s.demand)
	if s.k <= 0 {
		return
	}
	s.shard = (s.block + k - 1) / k
	pkts := float64((s.shard + s.mtuPayload - 1) / s.mtuPayload)
	s.pmfOK = [MaxPlanPaths]uint64{}
	for i := range s.np {
		s.lossS[i] = 1 - math.Pow(1-s.loss[i], pkts)
		u := s.nmax
		if s.greq > 0 {
			u = min(u, int(math.Floor(s.cap[i]*float64(k)/s.greq*(1+1e-12))))
		}
		if s.sla.Survive > 0 {
			u = min(u, s.nmax-k)
		}
		s.u[i] = max(u, 0)
	}
}

func (s *solver) search() {
	s.found = false
	if s.np == 0 || s.sla.Survive >= s.np {
		return
	}
	f := s.sla.Survive
	for k := s.kmax(); k >= 1; k-- {
		s.setK(k)
		// Surviving f paths takes at least f shards beyond k.
		for n := k + f; n <= s.nmax; n++ {
			s.n = n
			room := 0
			for i := range s.np {
				s.ub[i] = min(s.u[i], n)
				if f > 0 {
					s.ub[i] = min(s.ub[i], n-k)
				}
				room += s.ub[i]
			}
			if room < n {
				continue
			}
			s.dfs(0, n, 0, 0, math.Inf(1))
		}
	}
}

// profitOf is the objective for goodput g (bytes/s) at cost c per GB.
// A plan that loses money on every byte is judged at the goodput it must
// carry (the demand up to the SLA's), not at its own: fewer bytes would
// lose less, but a plan that throttles its user by piling shards on a
// slow path is no saving.
func (s *solver) profitOf(g, c float64) float64 {
	margin := s.pr.RevenueGB - c
	if margin < 0 && !math.IsInf(s.demand, 1) {
		g = s.demand
	}
	return g / 1e9 * margin
}

// mayBeat reports whether a branch whose goodput is at most g, cost per
// GB at least c, partner shards at least partner and shards n could still
// beat the best plan.
func (s *solver) mayBeat(g, c float64, partner, n int) bool {
	if !s.found {
		return true
	}
	ub := s.profitOf(g, c)
	if s.pr.RevenueGB-c < 0 && math.IsInf(s.demand, 1) {
		ub = 0 // judged at its own goodput, which may be near zero
	}
	b := &s.best
	tol := eps * max(1, math.Abs(ub), math.Abs(b.e.Profit))
	if ub > b.e.Profit+tol {
		return true
	}
	if ub < b.e.Profit-tol {
		return false
	}
	l, r := partner*b.n, b.e.PartnerShards*n
	return l < r || l == r && n < b.n
}

const eps = 1e-12

// nodeBudget bounds one solve's search (about 20 ms here): past it Solve
// returns the best plan found so far with Exact false. Realistic path
// sets finish far below it; random 8-path sets with tight latency and
// survival terms can need more.
const nodeBudget = 400_000

// better orders plans: more profit; then a smaller share of shards on
// partner networks (the provider's own network is preferred); then fewer
// shards (less per-shard work and header bytes).
func better(p1 float64, partner1, n1 int, p2 float64, partner2, n2 int) bool {
	tol := eps * max(1, math.Abs(p1), math.Abs(p2))
	if p1 > p2+tol {
		return true
	}
	if p1 < p2-tol {
		return false
	}
	// partner1/n1 < partner2/n2, exactly.
	if l, r := partner1*n2, partner2*n1; l != r {
		return l < r
	}
	return n1 < n2
}

// dfs assigns shards to path j and on: r shards are left to place of
// s.n, cost is sum(price*a) so far, partner the partner shards, gmax the
// goodput bound of the paths given shards.
func (s *solver) dfs(j, r int, cost float64, partner int, gmax float64) {
	s.nodes++
	if s.nodes > nodeBudget {
		s.cut = true
		return
	}
	k := float64(s.k)
	if j == s.np {
		if r == 0 && gmax >= s.greq*(1-1e-12) {
			// Only a plan that would win is judged in full.
			if s.found && !better(s.profitOf(min(s.demand, gmax), cost/k), partner, s.n,
				s.best.e.Profit, s.best.e.PartnerShards, s.best.n) {
				return
			}
			s.leaf(s.n)
		}
		return
	}
	// Surviving f >= 2 paths: a path still to come may hold at most m
	// less the f-1 largest shares so far (with them it would be in the
	// top f, or it is smaller than one of them).
	lim := s.n
	if f := s.sla.Survive; f >= 2 {
		lim = s.n - s.k - s.topSum(j, f-1)
		if lim < 0 {
			return
		}
	}
	ub := func(i int) int { return min(s.ub[i], lim) }
	// Bounds: the cheapest completion fills the next paths in order (they
	// are sorted by price); the fewest partner shards put all it can on
	// own paths; goodput is at most each used path's bound and, for a
	// backlogged class, what max-min filling of the rest reaches (spread).
	fill, left, ownRoom := cost, r, 0
	for i := j; i < s.np; i++ {
		x := min(left, ub(i))
		fill += s.price[i] * float64(x)
		left -= x
		if s.own[i] {
			ownRoom += ub(i)
		}
	}
	if left > 0 {
		return
	}
	cLB := fill / k
	if s.sla.MaxCostGB > 0 && cLB > s.sla.MaxCostGB*(1+1e-12) {
		return
	}
	if s.found {
		// The loose goodput bound first, when it is finite (an infinite
		// profit bound makes mayBeat's tolerance infinite): it prunes most
		// branches without the max-min filling's O(r x paths).
		g, pLB := min(s.demand, gmax), partner+max(0, r-ownRoom)
		if !math.IsInf(g, 1) && !s.mayBeat(g, cLB, pLB, s.n) {
			return
		}
		if s.pr.RevenueGB > cLB && math.IsInf(s.demand, 1) {
			if g2 := min(g, s.spread(j, r)); (g2 < g || math.IsInf(g, 1)) && !s.mayBeat(g2, cLB, pLB, s.n) {
				return
			}
		}
	}
	after := 0
	for i := j + 1; i < s.np; i++ {
		after += ub(i)
	}
	for a := min(ub(j), r); a >= max(0, r-after); a-- {
		g := gmax
		if a > 0 {
			g = min(g, s.cap[j]*k/float64(a))
			if g < s.greq*(1-1e-12) {
				continue
			}
		}
		p := partner
		if !s.own[j] {
			p += a
		}
		s.a[j] = a
		if s.sla.Survive > 1 && !s.survivable(j+1) {
			continue
		}
		s.dfs(j+1, r-a, cost+s.price[j]*float64(a), p, g)
	}
	s.a[j] = 0
}

// spread bounds the goodput of any completion: r shards given to paths
// j.. one at a time, each to the path whose bound cap*k/(a+1) stays
// highest, maximise the least bound over the remaining paths (max-min
// fair filling is optimal for a minimum).
func (s *solver) spread(j, r int) float64 {
	var x [MaxPlanPaths]int
	k := float64(s.k)
	g := math.Inf(1)
	for range r {
		bi, bg := -1, -1.0
		for i := j; i < s.np; i++ {
			if x[i] < s.ub[i] {
				if v := s.cap[i] * k / float64(x[i]+1); v > bg {
					bi, bg = i, v
				}
			}
		}
		if bi < 0 {
			return 0
		}
		x[bi]++
		g = min(g, bg)
	}
	return g
}

// topSum is the sum of the c largest shares among paths 0..j-1.
func (s *solver) topSum(j, c int) int {
	var top [MaxPlanPaths]int
	nt := 0
	for i := range j {
		x := s.a[i]
		p := nt
		for p > 0 && top[p-1] < x {
			p--
		}
		if p >= c {
			continue
		}
		if nt < c {
			nt++
		}
		copy(top[p+1:nt], top[p:nt-1])
		top[p] = x
	}
	sum := 0
	for _, x := range top[:nt] {
		sum += x
	}
	return sum
}

// survivable reports whether the paths assigned so far (0..j-1) leave the
// f largest shares within m.
func (s *solver) survivable(j int) bool {
	return s.topSum(j, s.sla.Survive) <= s.n-s.k
}

// leaf checks a complete assignment and keeps it if it meets the SLA and
// beats the best so far.
func (s *solver) leaf(n int) {
	e := s.evaluate(&s.a, false)
	if !s.meetsCheap(&e, n) {
		return
	}
	if s.found && !better(e.Profit, e.PartnerShards, n, s.best.e.Profit, s.best.e.PartnerShards, s.best.n) {
		return
	}
	// The costly terms, cheapest test first: without any loss the block
	// is in when its k-th shard arrives, a bound on the p99.
	if s.sla.P99Latency > 0 && secs(s.arrival(&s.a)) > s.sla.P99Latency {
		return
	}
	if s.sla.ResidualLoss > 0 && s.residual(&s.a, n-s.k) > s.sla.ResidualLoss {
		return
	}
	// p99 <= L exactly when k shards are in by L with probability 0.99.
	if s.sla.P99Latency > 0 && s.inBy(&s.a, s.sla.P99Latency.Seconds()) < 0.99 {
		return
	}
	s.finish(&e, &s.a)
	if !s.meets(&e) {
		return
	}
	s.best = candidate{k: s.k, a: s.a, e: e, n: n}
	s.found = true
}

// evaluate fills the cheap parts of the explanation (goodput, cost,
// profit, survival); full also computes residual loss and p99.
func (s *solver) evaluate(a *[MaxPlanPaths]int, full bool) Explain {
	var e Explain
	k := float64(s.k)
	n, cost := 0, 0.0
	gmax := math.Inf(1)
	for i := range s.np {
		if a[i] == 0 {
			continue
		}
		n += a[i]
		cost += s.price[i] * float64(a[i])
		gmax = min(gmax, s.cap[i]*k/float64(a[i]))
		if !s.own[i] {
			e.PartnerShards += a[i]
		}
	}
	if n == 0 || s.k <= 0 {
		return e
	}
	e.Capacity = gmax
	e.Goodput = min(s.demand, gmax)
	e.CostGB = cost / k
	e.Profit = s.profitOf(e.Goodput, e.CostGB)
	// Survival: drop the largest shares until fewer than k remain.
	m := n - s.k
	var sorted [MaxPlanPaths]int
	copy(sorted[:], a[:s.np])
	for i := 1; i < s.np; i++ {
		for j := i; j > 0 && sorted[j] > sorted[j-1]; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	lost := 0
	for _, x := range sorted[:s.np] {
		if x == 0 || lost+x > m {
			break
		}
		lost += x
		e.Survives++
	}
	if full {
		s.finish(&e, a)
	}
	return e
}

// finish computes residual loss, p99 latency and the binding constraint.
func (s *solver) finish(e *Explain, a *[MaxPlanPaths]int) {
	n := 0
	for i := range s.np {
		n += a[i]
	}
	e.ResidualLoss = s.residual(a, n-s.k)
	e.P99 = s.p99(a)
	e.Binding = s.binding(e)
}

// meetsCheap checks the SLA terms that need no probabilities: goodput,
// cost and survival (and that n shards fit).
func (s *solver) meetsCheap(e *Explain, n int) bool {
	if n < s.k || n > s.nmax {
		return false
	}
	return s.meetsCore(e)
}

func (s *solver) meetsCore(e *Explain) bool {
	if s.greq > 0 && e.Capacity < s.greq*(1-1e-12) {
		return false
	}
	if s.sla.MaxCostGB > 0 && e.CostGB > s.sla.MaxCostGB*(1+1e-12) {
		return false
	}
	return e.Survives >= s.sla.Survive
}

// meets checks every SLA term.
func (s *solver) meets(e *Explain) bool {
	if !s.meetsCore(e) {
		return false
	}
	if s.sla.ResidualLoss > 0 && e.ResidualLoss > s.sla.ResidualLoss {
		return false
	}
	if s.sla.P99Latency > 0 && e.P99 > s.sla.P99Latency {
		return false
	}
	return true
}

// binom returns path i's Binomial(x, lossS[i]) pmf and tail (tail[y] is
// the probability of y or more lost), computed once per k.
func (s *solver) binom(i, x int) (*[maxPlanShards + 1]float64, *[maxPlanShards + 2]float64) {
	t := &s.pmf[i][x]
	if s.pmfOK[i]&(1<<x) != 0 {
		return &t.pmf, &t.tail
	}
	s.pmfOK[i] |= 1 << x
	q := s.lossS[i]
	t.pmf = [maxPlanShards + 1]float64{}
	if q >= 1 {
		t.pmf[x] = 1
	} else {
		t.pmf[0] = math.Pow(1-q, float64(x))
		for y := 1; y <= x; y++ {
			t.pmf[y] = t.pmf[y-1] * float64(x-y+1) / float64(y) * q / (1 - q)
		}
	}
	t.tail[x+1] = 0
	for y := x; y >= 0; y-- {
		t.tail[y] = t.tail[y+1] + t.pmf[y]
	}
	return &t.pmf, &t.tail
}

// lostDist fills dist[0..lim] with the distribution of shards lost on the
// paths in the set (a bit mask; dist[lim] holds "lim or more").
func (s *solver) lostDist(a *[MaxPlanPaths]int, set uint16, lim int, dist *[maxPlanShards + 2]float64) {
	for x := range dist[:lim+1] {
		dist[x] = 0
	}
	dist[0] = 1
	var next [maxPlanShards + 2]float64
	for i := range s.np {
		if a[i] == 0 || set&(1<<i) == 0 || s.lossS[i] == 0 {
			continue
		}
		pmf, tail := s.binom(i, a[i])
		for x := range next[:lim+1] {
			next[x] = 0
		}
		for x := 0; x <= lim; x++ {
			d := dist[x]
			if d == 0 {
				continue
			}
			if x == lim {
				next[lim] += d
				continue
			}
			top := min(a[i], lim-x-1)
			for y := 0; y <= top; y++ {
				next[x+y] += d * pmf[y]
			}
			if lim-x <= a[i] {
				next[lim] += d * tail[lim-x]
			}
		}
		copy(dist[:lim+1], next[:lim+1])
	}
}

// residual is the probability that more than m shards of a block are lost.
func (s *solver) residual(a *[MaxPlanPaths]int, m int) float64 {
	if m < 0 {
		return 1
	}
	var dist [maxPlanShards + 2]float64
	s.lostDist(a, 0xffff, m+1, &dist)
	return max(0, min(1, dist[m+1]))
}

// arrival is when the k-th shard of a block arrives if none is lost.
func (s *solver) arrival(a *[MaxPlanPaths]int) float64 {
	var t, r [MaxPlanPaths]float64
	s.times(a, &t, &r)
	var idx [MaxPlanPaths]int
	nu := 0
	for i := range s.np {
		if a[i] == 0 {
			continue
		}
		p := nu
		for p > 0 && t[idx[p-1]] > t[i] {
			idx[p] = idx[p-1]
			p--
		}
		idx[p] = i
		nu++
	}
	got := 0
	for _, i := range idx[:nu] {
		got += a[i]
		if got >= s.k {
			return t[i]
		}
	}
	return math.Inf(1)
}

// times fills t and r with when path i's shards arrive, and when their
// re-sends do.
func (s *solver) times(a *[MaxPlanPaths]int, t, r *[MaxPlanPaths]float64) {
	for i := range s.np {
		if a[i] > 0 {
			t[i] = s.owd[i] + float64(a[i]*s.shard)/s.cap[i]
			r[i] = t[i] + s.rtt[i]
		}
	}
}

// inBy is the probability that k shards of a block are in by T seconds.
func (s *solver) inBy(a *[MaxPlanPaths]int, T float64) float64 {
	var t, r [MaxPlanPaths]float64
	s.times(a, &t, &r)
	return s.inByTimes(a, &t, &r, T)
}

func (s *solver) inByTimes(a *[MaxPlanPaths]int, t, r *[MaxPlanPaths]float64, T float64) float64 {
	full, partial := 0, 0
	var set uint16
	for i := range s.np {
		if a[i] == 0 || t[i] > T {
			continue
		}
		if s.lossS[i] == 0 || r[i] <= T {
			full += a[i]
		} else {
			partial += a[i]
			set |= 1 << i
		}
	}
	need := s.k - full
	if need <= 0 {
		return 1
	}
	if partial < need {
		return 0
	}
	slack := partial - need // shards that may be lost
	var dist [maxPlanShards + 2]float64
	s.lostDist(a, set, slack+1, &dist)
	return 1 - dist[slack+1]
}

// p99 is the block delivery time by which k shards are in with
// probability 0.99: the first arrival instant where that holds.
func (s *solver) p99(a *[MaxPlanPaths]int) time.Duration {
	var t, r [MaxPlanPaths]float64
	s.times(a, &t, &r)
	var cand [2 * MaxPlanPaths]float64
	nc := 0
	for i := range s.np {
		if a[i] == 0 {
			continue
		}
		cand[nc] = t[i]
		nc++
		if s.lossS[i] > 0 {
			cand[nc] = r[i]
			nc++
		}
	}
	cs := cand[:nc]
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j] < cs[j-1]; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
	for _, T := range cs {
		if s.inByTimes(a, &t, &r, T) >= 0.99 {
			return secs(T)
		}
	}
	if nc == 0 {
		return 0
	}
	return secs(cs[nc-1])
}

func secs(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }

// binding names the SLA term with the least room left, or what limits a
// plan with room on every term.
func (s *solver) binding(e *Explain) string {
	name, least := "", math.Inf(1)
	try := func(n string, slack float64) {
		if slack < least {
			name, least = n, slack
		}
	}
	if s.greq > 0 {
		try("goodput", (e.Capacity-s.greq)/s.greq)
	}
	if s.sla.P99Latency > 0 {
		try("p99 latency", 1-e.P99.Seconds()/s.sla.P99Latency.Seconds())
	}
	if s.sla.ResidualLoss > 0 {
		try("residual loss", 1-e.ResidualLoss/s.sla.ResidualLoss)
	}
	if s.sla.Survive > 0 {
		try("survival", float64(e.Survives-s.sla.Survive)/float64(s.sla.Survive))
	}
	if s.sla.MaxCostGB > 0 {
		try("cost cap", 1-e.CostGB/s.sla.MaxCostGB)
	}
	if name != "" && least < 0.2 {
		return name
	}
	if e.Capacity <= s.demand {
		return "capacity"
	}
	return "price"
}

func (s *solver) plan(now time.Time) Plan {
	b := &s.best
	s.setK(b.k)
	s.a = b.a
	p := s.emptyPlan(now)
	p.K, p.M = b.k, b.n-b.k
	for oi := range s.np {
		p.Shards[s.order[oi]] = b.a[oi]
	}
	p.Explain = b.e
	p.ShardSize = s.shard
	// Compression pays when a 10% saving on these paths' bytes is worth
	// more than the CPU it costs on this device (compressCostGB).
	saving := 0.1 * b.e.CostGB
	if s.pr.Profile.Metered {
		saving *= 2
	}
	p.Compress = saving >= compressCostGB(s.pr.Profile.CPU)
	return p
}

// compressCostGB is what compressing one GB costs on a CPU class, in USD
// of energy and time: a server core compresses about 500 MB/s with s2, a
// phone's little core a tenth of that and drains a battery doing it.
func compressCostGB(c CPUClass) float64 {
	switch c {
	case CPULow:
		return 0.20
	case CPUHigh:
		return 0.01
	}
	return 0.05
}

func (s *solver) emptyPlan(now time.Time) Plan {
	n := len(s.pr.Paths)
	p := Plan{At: now, Shards: make([]int, n), Conns: make([]int, n), Names: make([]string, n), prices: make([]float64, n)}
	for i := range s.pr.Paths {
		ps := &s.pr.Paths[i]
		p.Names[i] = ps.Name
		p.prices[i] = ps.Price
		p.Conns[i] = conns(ps)
	}
	if s.np == 0 {
		p.Binding = "no path up"
		p.Relaxed = []string{"every term"}
	}
	return p
}

// bdpMany is the bandwidth-delay product from which a path with a flat
// delay keeps four connections. A QUIC connection starts with a window of
// 32 packets (about 40 KB in quic-go) and doubles it each round trip, so
// one connection needs four round trips or more to fill a path of over 16
// such windows; four connections start with four windows and fill it two
// round trips sooner (cost-sla's 600 ms satellite path is 2 MB; what it
// saves there is in docs/BENCH.md, "Figures behind the code's choices").
const bdpMany = 640 << 10

// conns picks a path's pool size: with random loss or a large
// bandwidth-delay product, and a flat delay, four connections (a loss
// halves one window of four, DESIGN.md's Reno finding; see bdpMany);
// where delay climbs with load (a queue builds), one, so braid does not
// fill the queue four times over; two otherwise.
func conns(p *PathState) int {
	if !p.Up || p.MinRTT <= 0 {
		return 1
	}
	flat := p.RTTP99 <= p.MinRTT+p.MinRTT/4+2*time.Millisecond
	climbing := p.SRTT > p.MinRTT+p.MinRTT/2
	switch {
	case climbing:
		return 1
	case flat && (p.Loss > 0.002 || p.Capacity*p.MinRTT.Seconds() > bdpMany):
		return 4
	}
	return 2
}
