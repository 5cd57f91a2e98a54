package scheduler

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The datagram planner. A UDP association's datagrams are not blocks:
// nothing is re-sent, each datagram is delivered the moment it arrives,
// and a lost one is rebuilt only from parity sent beside it. So a class's
// datagrams are planned apart from its flows: groups of K datagrams get M
// parity datagrams, the group's K+M positions spread over the paths, and
// a group that does not fill within Wait is closed early (its parity
// covers the datagrams it has). The model, per path j with a_j positions,
// one-way delay d_j (half its smoothed RTT) and loss l_j:
//
//   - a datagram is lost for good when it is lost and fewer than K of the
//     group's other positions arrive (losses independent per datagram);
//   - a repaired datagram arrives after the group fills, (K-1)/pps, plus
//     the slowest parity path's delay; with a deadline, that must fit in
//     it, or the repair would be dropped as late;
//   - surviving the sudden loss of f paths: the f largest a_j are at most
//     M, as for blocks;
//   - jitter: the spread of delay among the paths that carry data;
//   - cost per delivered GB: sum price_j * a_j / K.
//
// K=1 with M=1 is a copy on a second path; K=1, M=0 is one path. Among
// the plans that meet the SLA the cheapest wins (then the lower delay,
// the lower overhead, the smaller group); when none does, SLA terms are
// given up in a fixed order, as Solve does. The search is exhaustive: at
// most MaxDatagramPaths paths and MaxDatagramShards positions.

// Limits of the datagram planner; the wire's parity header holds them.
const (
	// MaxDatagramPaths is the most paths a datagram plan spreads over
	// (the ones with the lowest delay).
	MaxDatagramPaths = 4
	// MaxDatagramShards is the most positions (K+M) of a datagram group.
	MaxDatagramShards = 8
	// MaxDatagramParity is the most parity datagrams of a group.
	MaxDatagramParity = 4
)

// DatagramLoad is what a class's datagrams offer, as the sender measured
// it; zero when idle.
type DatagramLoad struct {
	// Rate is bytes per second; PPS datagrams per second.
	Rate, PPS float64
}

// DatagramPlan is how a class's datagrams are grouped, coded and spread.
type DatagramPlan struct {
	K, M int
	// Shards[j] is how many of a group's positions path j carries,
	// indexed like the paths planned over.
	Shards []int
	// Order lists the path of each position: the K data positions first
	// (on the paths with the lowest delay), then the M parity positions.
	Order []int
	// Wait is how long a group stays open for its K datagrams before its
	// parity is sent for those it has.
	Wait time.Duration
	// Delay is the one-way delay of the slowest data path; RepairDelay
	// the worst delay of a repaired datagram; Jitter the spread of delay
	// among the data paths.
	Delay, RepairDelay, Jitter time.Duration
	ResidualLoss               float64
	// Survives is the number of paths whose loss the plan survives.
	Survives int
	// CostGB is USD per delivered GB.
	CostGB float64
	// Feasible is true when the plan meets the whole SLA; Relaxed names
	// the terms given up when none did. A residual loss given up is
	// still fought: the plan is the cheapest within a tenth of the least
	// loss the other terms allow.
	Feasible bool
	Relaxed  []string
	// Binding names the SLA term that ruled out the cheapest way (one
	// datagram on the cheapest path), or "price" when nothing did.
	Binding string
	// Names are the paths' names, for String.
	Names []string
}

// Kind says what the plan does in one word: "single", "copies" or
// "parity" ("none" when no path is up).
func (p DatagramPlan) Kind() string {
	switch {
	case p.K == 0:
		return "none"
	case p.M == 0:
		return "single"
	case p.K == 1:
		return "copies"
	}
	return "parity"
}

// String is the plan on one line, as status and logs show it.
func (p DatagramPlan) String() string {
	if p.K == 0 {
		return "no path up"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s k=%d m=%d", p.Kind(), p.K, p.M)
	for j, a := range p.Shards {
		if a > 0 && j < len(p.Names) {
			fmt.Fprintf(&b, " %s:%d", p.Names[j], a)
		}
	}
	fmt.Fprintf(&b, " delay %v", p.Delay.Round(100*time.Microsecond))
	if p.M > 0 {
		fmt.Fprintf(&b, " repair %v", p.RepairDelay.Round(100*time.Microsecond))
	}
	fmt.Fprintf(&b, " loss %.3g%% survives %d $%.2f/GB (binds: %s)", 100*p.ResidualLoss, p.Survives, p.CostGB, p.Binding)
	if len(p.Relaxed) > 0 {
		fmt.Fprintf(&b, " relaxed: %s", strings.Join(p.Relaxed, ", "))
	}
	return b.String()
}

// dgPath is one path as the datagram planner sees it.
type dgPath struct {
	idx   int // index into the caller's paths
	delay time.Duration
	loss  float64
	price float64
	cap   float64
	own   bool
}

// PlanDatagrams plans a class's datagrams over paths for its SLA (the
// terms it reads: Deadline, ResidualLoss, Survive, MaxJitter, MaxCostGB)
// and load. It is pure and quick (well under a millisecond); the sender
// calls it when a group opens and its last plan is stale.
func PlanDatagrams(paths []PathState, sla SLA, load DatagramLoad) DatagramPlan {
	var ps []dgPath
	for i := range paths {
		p := &paths[i]
		if !p.Up {
			continue
		}
		ps = append(ps, dgPath{idx: i, delay: p.SRTT / 2, loss: min(max(p.Loss, p.LinkLoss, 0), 0.5),
			price: max(p.Price, 0), cap: p.Capacity, own: p.Own})
	}
	slices.SortStableFunc(ps, func(a, b dgPath) int { return int(a.delay - b.delay) })
	if len(ps) > MaxDatagramPaths {
		ps = ps[:MaxDatagramPaths]
	}
	plan := DatagramPlan{Shards: make([]int, len(paths)), Names: make([]string, len(paths))}
	for i := range paths {
		plan.Names[i] = paths[i].Name
	}
	if len(ps) == 0 {
		plan.Binding = "no path up"
		return plan
	}
	s := dgSearch{ps: ps, load: load}
	cur := sla
	var relaxed []string
	steps := []struct {
		name  string
		drop  func(*SLA)
		holds func(*SLA) bool
	}{
		{"cost cap", func(x *SLA) { x.MaxCostGB = 0 }, func(x *SLA) bool { return x.MaxCostGB > 0 }},
		{"jitter", func(x *SLA) { x.MaxJitter = 0 }, func(x *SLA) bool { return x.MaxJitter > 0 }},
		{"residual loss", func(x *SLA) { x.ResidualLoss = 0 }, func(x *SLA) bool { return x.ResidualLoss > 0 }},
		{"deadline", func(x *SLA) { x.Deadline = 0 }, func(x *SLA) bool { return x.Deadline > 0 }},
		{"survive", func(x *SLA) { x.Survive = 0 }, func(x *SLA) bool { return x.Survive > 0 }},
	}
	best, ok := s.search(cur)
	var dropped []int
	for i := 0; !ok && i < len(steps); i++ {
		if steps[i].holds(&cur) {
			steps[i].drop(&cur)
			dropped = append(dropped, i)
			best, ok = s.search(cur)
		}
	}
	// Give back the terms dropped on the way that the plan found does not
	// need: only those whose dropping made the difference stay relaxed.
	for x := len(dropped) - 2; ok && x >= 0; x-- {
		try := cur
		restore(&try, &sla, steps[dropped[x]].name)
		if p, found := s.search(try); found {
			cur, best = try, p
			dropped = append(dropped[:x], dropped[x+1:]...)
		}
	}
	for _, i := range dropped {
		relaxed = append(relaxed, steps[i].name)
		if steps[i].name == "residual loss" {
			// No plan meets the loss asked: come as near it as the other
			// terms allow, rather than fall to the cheapest plan (one
			// datagram, no parity) just when the paths got worse. The
			// cheapest plan within a tenth of the least loss reachable.
			s.byLoss = true
			least, found := s.search(cur)
			s.byLoss = false
			if found {
				try := cur
				try.ResidualLoss = least.ResidualLoss*1.1 + 1e-12
				if p, found := s.search(try); found {
					best = p
				}
			}
		}
	}
	best.Shards, best.Names = plan.Shards, plan.Names
	for _, j := range best.Order {
		best.Shards[ps[j].idx]++
	}
	for i, j := range best.Order {
		best.Order[i] = ps[j].idx
	}
	best.Feasible = len(relaxed) == 0
	best.Relaxed = relaxed
	best.Binding = s.binding(sla)
	return best
}

// restore sets the term name of dst back to src's.
func restore(dst, src *SLA, name string) {
	switch name {
	case "cost cap":
		dst.MaxCostGB = src.MaxCostGB
	case "jitter":
		dst.MaxJitter = src.MaxJitter
	case "residual loss":
		dst.ResidualLoss = src.ResidualLoss
	case "deadline":
		dst.Deadline = src.Deadline
	case "survive":
		dst.Survive = src.Survive
	}
}

type dgSearch struct {
	ps    []dgPath
	load  DatagramLoad
	a     [MaxDatagramPaths]int
	order [MaxDatagramShards]int // evaluate's scratch
	// byLoss makes search return the plan of least residual loss instead
	// of the cheapest.
	byLoss bool
}

// search returns the cheapest plan meeting sla, if any.
func (s *dgSearch) search(sla SLA) (DatagramPlan, bool) {
	best := DatagramPlan{Order: make([]int, 0, MaxDatagramShards)}
	found := false
	for k := 1; k <= MaxDatagramShards; k++ {
		for m := 0; m <= MaxDatagramParity && k+m <= MaxDatagramShards; m++ {
			s.compose(0, k+m, func() {
				p, why := s.evaluate(k, m, sla)
				if why == "" && (!found || s.better(&p, &best)) {
					order := append(best.Order[:0], p.Order...)
					best, found = p, true
					best.Order = order
				}
			})
		}
	}
	return best, found
}

// compose calls f for every a[from:] summing to n.
func (s *dgSearch) compose(from, n int, f func()) {
	if from == len(s.ps)-1 {
		s.a[from] = n
		f()
		return
	}
	for x := 0; x <= n; x++ {
		s.a[from] = x
		s.compose(from+1, n-x, f)
	}
}

// better is dgBetter, or with byLoss the lower residual loss first.
func (s *dgSearch) better(p, q *DatagramPlan) bool {
	if s.byLoss && p.ResidualLoss != q.ResidualLoss {
		return p.ResidualLoss < q.ResidualLoss
	}
	return dgBetter(p, q)
}

func dgBetter(p, q *DatagramPlan) bool {
	const eps = 1e-9
	if math.Abs(p.CostGB-q.CostGB) > eps*max(1, q.CostGB) {
		return p.CostGB < q.CostGB
	}
	if p.Delay != q.Delay {
		return p.Delay < q.Delay
	}
	if p.RepairDelay != q.RepairDelay {
		return p.RepairDelay < q.RepairDelay
	}
	if po, qo := float64(p.K+p.M)/float64(p.K), float64(q.K+q.M)/float64(q.K); po != qo {
		return po < qo
	}
	if p.ResidualLoss != q.ResidualLoss {
		return p.ResidualLoss < q.ResidualLoss
	}
	return p.K < q.K
}

// evaluate models the plan (k, m, s.a) and says which term of sla it
// breaks ("" for none).
func (s *dgSearch) evaluate(k, m int, sla SLA) (DatagramPlan, string) {
	n := len(s.ps)
	p := DatagramPlan{K: k, M: m, Order: s.order[:0]}
	// Data on the fastest paths (ps is sorted by delay), parity on what
	// is left of each path's positions.
	left := s.a
	for j := 0; j < n && len(p.Order) < k; j++ {
		for left[j] > 0 && len(p.Order) < k {
			p.Order = append(p.Order, j)
			left[j]--
		}
	}
	var minD, maxD, maxParity time.Duration = -1, 0, 0
	for _, j := range p.Order {
		d := s.ps[j].delay
		if minD < 0 || d < minD {
			minD = d
		}
		maxD = max(maxD, d)
	}
	for j := 0; j < n; j++ {
		for range left[j] {
			p.Order = append(p.Order, j)
			maxParity = max(maxParity, s.ps[j].delay)
		}
	}
	p.Delay, p.Jitter = maxD, maxD-minD
	fill := time.Duration(0)
	if k > 1 {
		if s.load.PPS > 0 {
			fill = time.Duration(float64(k-1) / s.load.PPS * float64(time.Second))
		} else {
			fill = time.Duration(k-1) * 20 * time.Millisecond // a voice call's interval
		}
	}
	p.Wait = 2 * fill
	if sla.Deadline > 0 && m > 0 {
		p.Wait = min(p.Wait, max(0, sla.Deadline-maxParity))
	}
	if m > 0 {
		p.RepairDelay = fill + maxParity
	}
	// Cost, survival, capacity.
	var sorted [MaxDatagramPaths]int
	copy(sorted[:], s.a[:n])
	slices.SortFunc(sorted[:n], func(x, y int) int { return y - x })
	sum := 0
	p.Survives = 0
	for f := 1; f < n; f++ {
		sum += sorted[f-1]
		if sum > m {
			break
		}
		p.Survives = f
	}
	for j := 0; j < n; j++ {
		p.CostGB += s.ps[j].price * float64(s.a[j]) / float64(k)
	}
	p.ResidualLoss = s.residual(k, m, p.Order)
	switch {
	case sla.Survive > 0 && p.Survives < sla.Survive:
		return p, "survive"
	case sla.Deadline > 0 && (maxD > sla.Deadline || (m > 0 && p.RepairDelay > sla.Deadline)):
		return p, "deadline"
	case sla.ResidualLoss > 0 && p.ResidualLoss > sla.ResidualLoss:
		return p, "residual loss"
	case sla.MaxJitter > 0 && p.Jitter > sla.MaxJitter:
		return p, "jitter"
	case sla.MaxCostGB > 0 && p.CostGB > sla.MaxCostGB:
		return p, "cost cap"
	}
	for j := 0; j < n; j++ {
		if c := s.ps[j].cap; c > 0 && s.load.Rate*float64(s.a[j])/float64(k) > c {
			return p, "capacity"
		}
	}
	return p, ""
}

// residual is the fraction of a group's data datagrams lost for good.
// Datagrams sent at one moment on one path share their fate (quic-go
// puts them in one packet): a path's parity goes out together, right
// after the group's last datagram, so they form one unit with it when it
// rides that path; for k = 1 all copies on one path are one unit. A data
// datagram is lost for good when its unit is lost and fewer than k
// positions of the other units arrive.
func (s *dgSearch) residual(k, m int, order []int) float64 {
	type unit struct {
		size, data int
		loss       float64
	}
	var units [MaxDatagramShards]unit
	n := 0
	for i := 0; i < k-1; i++ {
		units[n] = unit{1, 1, s.ps[order[i]].loss}
		n++
	}
	last := order[k-1]
	for j := range s.ps {
		u := unit{loss: s.ps[j].loss}
		if j == last {
			u.size, u.data = 1, 1
		}
		for _, q := range order[k:] {
			if q == j {
				u.size++
			}
		}
		if u.size > 0 {
			units[n] = u
			n++
		}
	}
	total := 0.0
	for x := range n {
		if units[x].data == 0 {
			continue
		}
		if m == 0 {
			total += units[x].loss
			continue
		}
		var dist [MaxDatagramShards + 1]float64 // positions received among the other units
		dist[0] = 1
		got := 0
		for y := range n {
			if y == x {
				continue
			}
			u := units[y]
			for r := got + u.size; r >= 0; r-- {
				v := dist[r] * u.loss
				if r >= u.size {
					v += dist[r-u.size] * (1 - u.loss)
				}
				dist[r] = v
			}
			got += u.size
		}
		short := 0.0
		for r := 0; r < k && r <= got; r++ {
			short += dist[r]
		}
		total += units[x].loss * short
	}
	return total / float64(k)
}

// binding names what rules out the cheapest way: one datagram on the
// cheapest path.
func (s *dgSearch) binding(sla SLA) string {
	cheap := 0
	for j := range s.ps {
		if s.ps[j].price < s.ps[cheap].price {
			cheap = j
		}
	}
	s.a = [MaxDatagramPaths]int{}
	s.a[cheap] = 1
	if _, why := s.evaluate(1, 0, sla); why != "" {
		return why
	}
	return "price"
}
