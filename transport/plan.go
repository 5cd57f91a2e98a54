package transport

import (
	"braid/internal/tier"
	"math"
	"slices"
	"time"

	"braid/scheduler"
)

// The bestvalue planner's loop. Each side plans what it sends: the client
// its uploads, the concentrator its downloads. Every second, and at once
// when a path changes state or the terms change, it reads every path's
// monitor (RTT, p99, loss, delivery), the paths' prices and rates, the
// session's terms and its demand, solves (scheduler.Solve), lets the
// Planner's hysteresis decide whether the new plan replaces the current
// one, and hands the plan in force to the policy. A change is logged once
// with its explanation; Session.Plan shows the plan in force.

// planEvery is the re-planning period.
const planEvery = time.Second

// capacityHeadroom is the share of a path's nominal rate a plan fills.
const capacityHeadroom = 0.9

// SetTerms changes the session's terms (a new tier): the next plan is made
// at once and replaces the current one without hysteresis.
func (s *Session) SetTerms(t Terms) {
	s.terms.Store(&t)
	signal(s.replan)
}

// SetTier, at the concentrator, changes the session's tier: its terms
// are re-planned at once and the tier is pushed to the client, now and on
// every connection that joins later.
func (s *Session) SetTier(t *tier.Tier) error {
	b, err := t.AppendBinary(nil)
	if err != nil {
		return err
	}
	s.tierMsg.Store(&b)
	s.tier.Store(t)
	s.SetTerms(TermsOf(t, s.Terms().Profile))
	s.sendEverywhere(&Msg{Type: MsgTier, Body: b})
	return nil
}

// TermsOf returns the terms of a tier for a device.
func TermsOf(t *tier.Tier, p scheduler.Profile) Terms {
	out := Terms{Tier: t.Name, RevenueGB: t.RevenueGB, SLA: t.Classes[0].SLA, Profile: p}
	for _, c := range t.Classes {
		out.Classes = append(out.Classes, ClassTerms{Name: c.Name, SLA: c.SLA})
	}
	return out
}

// classes returns the terms' classes: Classes, or one default class with
// SLA when there are none.
func (t *Terms) classes() []ClassTerms {
	if len(t.Classes) == 0 {
		return []ClassTerms{{Name: "default", SLA: t.SLA}}
	}
	return t.Classes[:min(len(t.Classes), scheduler.MaxClasses)]
}

// Classify returns the traffic class of a flow to port opened by the
// SOCKS user user, by the session's tier (0, the default class, without
// one).
func (s *Session) Classify(port uint16, user string) int {
	if t := s.tier.Load(); t != nil {
		return t.Classify(port, user)
	}
	return 0
}

// FlowsByClass counts the session's open flows by traffic class.
func (s *Session) FlowsByClass() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int{}
	for _, f := range s.flows {
		out[int(f.class.Load())]++
	}
	return out
}

// Terms returns the session's terms.
func (s *Session) Terms() Terms { return *s.terms.Load() }

// PlanInfo is a class's plan in force and its planner's counters.
type PlanInfo struct {
	Class      string
	Plan       scheduler.Plan
	Changes    uint64
	Violations uint64
}

// Plans returns the bestvalue plan in force for each traffic class, the
// default class first; none when the session does not plan (another
// policy) or has no plan yet.
func (s *Session) Plans() []PlanInfo {
	p := s.plans.Load()
	if p == nil {
		return nil
	}
	return *p
}

// Plan returns the default class's plan in force.
func (s *Session) Plan() (PlanInfo, bool) {
	if ps := s.Plans(); len(ps) > 0 {
		return ps[0], true
	}
	return PlanInfo{}, false
}

// classPlanner is one class's planner state in the loop.
type classPlanner struct {
	pl          scheduler.Planner
	lastOffered uint64
	lastWaited  int64
	demand      float64
	rates       median3 // the last seconds' demand
	name        string
	sla         scheduler.SLA
	last        scheduler.Plan
	transition  int // ticks until the new plan's make-before-break ends
}

func (s *Session) plan(bv *scheduler.BestValue) {
	defer s.wg.Done()
	tick := time.NewTicker(planEvery)
	defer tick.Stop()
	var cps []*classPlanner
	var forTerms *Terms
	last := time.Now()
	states := map[string]bool{}
	everUp := map[string]bool{}
	for {
		changed := s.changedCh()
		select {
		case <-s.done:
			return
		case <-tick.C:
		case <-changed:
			if !s.upDownChanged(states) {
				continue
			}
		case <-s.replan:
		}
		now := time.Now()
		// A path up for the first time in the session is a new network,
		// not noise: the best plan is adopted at once, without the
		// hysteresis that guards against flapping (a path that comes back
		// has its own hold-down in the monitor).
		fresh := false
		for _, p := range s.pathList() {
			if p.Up() && !everUp[p.info.Name] {
				everUp[p.info.Name] = true
				fresh = true
			}
		}
		terms := s.terms.Load()
		if terms != forTerms {
			// New terms (a tier pushed or changed): every class planned
			// afresh, no hysteresis.
			old := cps
			cps = nil
			for i, c := range terms.classes() {
				cp := &classPlanner{name: c.Name, sla: c.SLA}
				cp.lastOffered, cp.lastWaited = s.offered[i].Load(), s.waited[i].Load()
				if i < len(old) {
					cp.demand = old[i].demand
				}
				cps = append(cps, cp)
			}
			for i := len(cps); i < len(old); i++ {
				bv.SetPlan(i, nil)
			}
			// A class with a stricter p99 than the default class's jumps
			// the queue on its planned path.
			def := cps[0].sla.P99Latency
			for i, cp := range cps {
				p := cp.sla.P99Latency
				bv.SetPriority(i, i > 0 && p > 0 && (def == 0 || p < def))
			}
			forTerms = terms
		}
		// Demand: the data bytes each class's flows cut into blocks since
		// the last plan, per second. When dispatch had to wait for room on
		// the plan's paths for over a tenth of the time, they want more
		// than the plan carries: ask for half as much again. (Taking 90%
		// of a plan's capacity is no such sign: a flow paced at the SLA's
		// rate does, and planning it for more spreads its bytes over
		// dearer paths: cost-sla went from $0.74 to $0.86 per GB.)
		// The demand planned for is the median of the last three such
		// seconds: a flow that catches up after a stall offers a burst
		// for a second, and a plan sized for it stays (a cheaper one for
		// the lasting demand may not win by the 5% hysteresis asks:
		// cost-sla-interactive kept a $0.80/GB plan made for a 32 Mbit/s
		// second against a $0.60/GB one for the 20 Mbit/s that followed).
		if dt := now.Sub(last).Seconds(); dt >= planEvery.Seconds()/2 {
			for i, cp := range cps {
				off, w := s.offered[i].Load(), s.waited[i].Load()
				rate := float64(off-cp.lastOffered) / dt
				if float64(w-cp.lastWaited)/1e9 > dt/10 {
					rate = max(rate*1.5, cp.demand)
				}
				cp.demand = cp.rates.add(rate)
				cp.lastOffered, cp.lastWaited = off, w
			}
			last = now
		}
		// Classes share the paths: each is planned on the capacity the
		// others' demand leaves. The tier's own classes are first solved
		// on the whole capacity (a sketch, for their load); the default
		// class is planned on what their sketches leave; then each own
		// class is planned for good on what the default class's plan and
		// the classes before it leave, so a latency-bound class sees the
		// bulk on a path and goes elsewhere. A joint optimum is not sought.
		base := s.problem(terms)
		loadOf := func(pr *scheduler.Problem, p *scheduler.Plan, demand float64) []float64 {
			l := make([]float64, len(pr.Paths))
			if p.K > 0 {
				for j := range pr.Paths {
					l[j] = min(demand, p.Goodput) * float64(p.ShareOf(pr.Paths[j].Name)) / float64(p.K)
				}
			}
			return l
		}
		less := func(loads ...[]float64) *scheduler.Problem {
			pr := *base
			pr.Paths = append([]scheduler.PathState(nil), base.Paths...)
			for _, l := range loads {
				for j := range pr.Paths {
					pr.Paths[j].Capacity = max(pr.Paths[j].Capacity-l[j], 0)
				}
			}
			return &pr
		}
		if fresh {
			for _, cp := range cps {
				cp.pl.Reset()
			}
		}
		tick := func(i int, pr *scheduler.Problem) []float64 {
			cp := cps[i]
			pr.SLA, pr.Demand = planSLA(cp.sla), cp.demand
			p, isNew := cp.pl.Tick(now, pr)
			if cp.transition > 0 {
				if cp.transition--; cp.transition == 0 {
					bv.EndTransition(i)
				}
			}
			if isNew {
				cpy := p
				bv.SetPlan(i, &cpy)
				cp.transition = transitionTicks
				s.log.Info("plan changed", "tier", terms.Tier, "class", cp.name,
					"demand_mbps", math.Round(cp.demand*8/1e4)/100, "plan", p.String())
			}
			cps[i].last = p
			return loadOf(pr, &p, cp.demand)
		}
		var sketches [][]float64
		for _, cp := range cps[1:] {
			pr := less()
			pr.SLA, pr.Demand = planSLA(cp.sla), cp.demand
			p := scheduler.Solve(now, pr)
			sketches = append(sketches, loadOf(pr, &p, cp.demand))
		}
		loads := [][]float64{tick(0, less(sketches...))}
		for i := 1; i < len(cps); i++ {
			// A class with priority jumps the queue of the default class's
			// shards on a shared path, so the default's load does not
			// take capacity from it (and a default plan kept by
			// hysteresis cannot push it onto a dear path).
			if bv.Priority(i) {
				loads = append(loads, tick(i, less(loads[1:]...)))
			} else {
				loads = append(loads, tick(i, less(loads...)))
			}
		}
		out := make([]PlanInfo, len(cps))
		for i, cp := range cps {
			out[i] = PlanInfo{Class: cp.name, Plan: cp.last, Changes: cp.pl.Changes, Violations: cp.pl.Violations}
		}
		s.plans.Store(&out)
		if s.client {
			s.sizePools(cps)
		}
	}
}

// sizePoolsByLoss sizes the pools of a client session whose policy makes
// no plans (every one but bestvalue), from what each path shows, so a
// user need not know conns=: lossPool connections where the path loses
// packets while quic-go's smoothed RTT stays near its minimum (random
// loss: Reno halves one window of several, DESIGN.md), else one (a delay
// that climbs is a queue, which more connections would only fill). The
// loss is the link's, before packet coding repairs it, either way: the
// most of what quic-go declared lost, what the peer measured of ours and
// what we measured of the peer's over the last tick. Parity yields on a
// full path (pktfec.Conn.SetFull), so the pool must carry the link's loss
// by itself; sized by the loss left after repair, the pool shrank while
// parity repaired, the path no longer filled, and a coded lossy run
// moved 31-38 Mbit/s against 51.5 uncoded. The
// RTT is quic-go's, from its acknowledgements: braid's probes ride a
// stream, and a lost probe's retransmission would read as delay. A pool
// grows after growTicks seconds in a row of asking for more and shrinks
// after shrinkTicks of asking for less (poolSizer). Paths with conns=
// keep it.
func (s *Session) sizePoolsByLoss() {
	defer s.wg.Done()
	tick := time.NewTicker(planEvery)
	defer tick.Stop()
	sizers := map[string]*poolSizer{}
	seen := map[string][2]uint64{} // the peer's packets expected and received, last tick
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		paths := s.pathList()
		for name := range sizers { // paths gone (auto paths): forget them
			if !slices.ContainsFunc(paths, func(p *Path) bool { return p.info.Name == name }) {
				delete(sizers, name)
				delete(seen, name)
			}
		}
		for _, p := range paths {
			if !p.poolSized() {
				continue // conns= pins it
			}
			st := p.Stats()
			loss := max(st.Loss, st.LinkLoss)
			last := seen[p.info.Name]
			seen[p.info.Name] = [2]uint64{st.Expected, st.Received}
			if de, dr := st.Expected-last[0], st.Received-last[1]; st.Expected >= last[0] && st.Received >= last[1] &&
				de >= 100 && dr <= de {
				loss = max(loss, float64(de-dr)/float64(de))
			}
			srtt, minRTT := p.quicRTT()
			z := sizers[p.info.Name]
			if z == nil {
				z = &poolSizer{}
				sizers[p.info.Name] = z
			}
			have := p.poolSlots()
			queue := minRTT > 0 && srtt > 3*minRTT
			ticks := growTicks
			if st.Coded == 0 {
				// Without coding the loss is only quic-go's, of what this
				// side sends: a download's start-up overflow does not
				// reach it, and it shows random loss only now and then
				// (acknowledgements and probes), so one tick decides.
				ticks = 1
			}
			switch next := z.step(poolForLoss(loss, srtt, minRTT), have, queue, ticks); {
			case next > have:
				s.log.Info("path pool grows: random loss at a flat delay", "path", p.info.Name, "conns", next,
					"loss", loss, "srtt", srtt, "min_rtt", minRTT)
				p.setPool(next)
			case next < have && queue:
				s.log.Info("path pool shrinks: a queue builds", "path", p.info.Name, "conns", next, "srtt", srtt,
					"min_rtt", minRTT)
				p.setPool(next)
			case next < have:
				s.log.Info("path pool shrinks", "path", p.info.Name, "conns", next, "loss", loss, "srtt", srtt)
				p.setPool(next)
			}
		}
	}
}

// poolSizer damps one path's pool: it grows once growAfter ticks in a row
// (growTicks for a path that codes) asked for more (a start-up's queue
// overflowing once, at a delay that has not climbed yet, is not random
// loss), and shrinks once shrinkTicks ticks in a row asked for less. A
// delay above three times its least for queueTicks ticks in a row is a
// standing queue of two round trips, not a start-up's: the pool drops to
// one and does not grow for queueHold ticks. A variable link (the LTE
// traces) shows loss at a delay still flat before its queue builds; grown
// to eight there, a pool filled the queue to 270-560 ms and moved 12-14
// Mbit/s against 19 with one connection. Dropped at the first tick above 1.5x (+5 ms)
// instead, or after three, the pools of lossy's paths without rate= fell
// to one for good (eight connections hold a queue of about one round trip
// there while the link is full): 15.2-20.7 Mbit/s against 49.6 before.
type poolSizer struct{ more, less, queued, hold int }

// step takes one tick's want, whether the delay shows a queue and the
// ticks in a row that must ask for more, and returns the pool to keep.
func (z *poolSizer) step(want, have int, queue bool, growAfter int) int {
	if !queue {
		z.queued = 0
	} else if z.queued++; z.queued >= queueTicks {
		z.more, z.less, z.queued, z.hold = 0, 0, 0, queueHold
		return 1
	}
	if z.hold > 0 {
		z.hold--
		want = 1
	}
	switch {
	case want > have:
		z.less = 0
		if z.more++; z.more >= growAfter {
			z.more = 0
			return want
		}
	case want < have:
		z.more = 0
		if z.less++; z.less >= shrinkTicks {
			z.less = 0
			return want
		}
	default:
		z.more, z.less = 0, 0
	}
	return have
}

// poolForLoss is the pool a path asks for under a policy that makes no
// plans: lossPool connections when it loses more than lossForPool of its
// packets while quic-go's smoothed RTT stays within 1.5x its minimum
// (+5 ms), else one.
func poolForLoss(loss float64, srtt, minRTT time.Duration) int {
	if minRTT > 0 && loss > lossForPool && srtt <= minRTT+minRTT/2+5*time.Millisecond {
		return lossPool
	}
	return 1
}

// A path losing more than lossForPool of its packets at a flat delay gets
// lossPool connections.
const (
	lossForPool = 0.002
	lossPool    = 8
)

// growTicks and shrinkTicks are how many seconds in a row a path must ask
// for more, or fewer, connections before its pool grows or shrinks;
// queueTicks how many in a row a queue must show to drop it to one, and
// queueHold how long it then stays there.
const (
	growTicks   = 3
	shrinkTicks = 10
	queueTicks  = 3
	queueHold   = 30
)

// sizePools gives each path the connections its plans ask for: the most
// any class's plan that uses the path wants, one where no plan uses it.
// Only the client dials, so the client's plans size the pools for both
// directions; the concentrator's download plans see the same paths.
func (s *Session) sizePools(cps []*classPlanner) {
	for _, p := range s.pathList() {
		want := 1
		for _, cp := range cps {
			for j, name := range cp.last.Names {
				if name == p.info.Name && cp.last.Shards[j] > 0 {
					want = max(want, cp.last.Conns[j])
				}
			}
		}
		p.setPool(want)
	}
}

// transitionTicks is how many re-planning ticks a new plan's shards may
// still overflow onto the old plan's paths (BestValue.EndTransition):
// about what a 600 ms path needs to open its congestion window.
const transitionTicks = 4

// latencyMargin is the share of a class's p99 bound its plans aim for:
// the model's p99 leaves out queueing behind other traffic and the
// emulated or real queue at a path's bottleneck, so plans keep 20% in
// hand (measured: rr p99 121-175 ms against a 150 ms bound in
// cost-sla-interactive when planned to the bound itself).
const latencyMargin = 0.8

// planSLA is the SLA a class's plans are made for: its own, with the
// p99 bound tightened by latencyMargin.
func planSLA(s scheduler.SLA) scheduler.SLA {
	s.P99Latency = time.Duration(float64(s.P99Latency) * latencyMargin)
	return s
}

// upDownChanged reports whether any path went up or down since states was
// filled, and refills it: connection churn that leaves every path as it
// was does not re-plan.
func (s *Session) upDownChanged(states map[string]bool) bool {
	changed := false
	seen := map[string]bool{}
	for _, p := range s.pathList() {
		name, up := p.info.Name, p.Up()
		seen[name] = true
		if old, ok := states[name]; !ok || old != up {
			changed = true
		}
		states[name] = up
	}
	for name := range states {
		if !seen[name] {
			delete(states, name)
			changed = true
		}
	}
	return changed
}

// problem gathers what the planner needs from every path; each class
// sets its own SLA and demand on it.
func (s *Session) problem(t *Terms) *scheduler.Problem {
	pr := &scheduler.Problem{RevenueGB: t.RevenueGB, Profile: t.Profile,
		Limits: scheduler.Limits{MaxShards: MaxShards, BlockSize: s.cfg.BlockSize}}
	for _, p := range s.pathList() {
		st := p.Stats()
		ps := scheduler.PathState{Name: p.info.Name, Up: p.Up(), SRTT: st.RTT, MinRTT: st.MinRTT, RTTP99: st.RTTP99,
			Rate: p.Rate(), Queued: p.queued.Load(), QueueLimit: p.queueLimit(),
			Price: p.info.PriceGB, Own: p.info.Operator == OperatorOwn, Loss: st.Loss}
		// Capacity: the nominal rate when the path has one (an idle path
		// cannot be measured), less headroom for QUIC and shard headers
		// (about 5%) and so its queue does not sit full; else the most it
		// delivered or quic-go's cwnd/RTT rate, whichever is more.
		if p.info.RateMbps > 0 {
			ps.Capacity = p.info.RateMbps * 1e6 / 8 * capacityHeadroom
		} else {
			ps.Capacity = max(st.DeliveryBps/8, p.Rate())
		}
		pr.Paths = append(pr.Paths, ps)
	}
	return pr
}

// median3 keeps the last three samples of a rate.
type median3 struct {
	v [3]float64
	n int
}

// add records x and returns the median of the samples kept: of two, the
// smaller.
func (m *median3) add(x float64) float64 {
	m.v[0], m.v[1], m.v[2] = m.v[1], m.v[2], x
	m.n = min(m.n+1, 3)
	switch m.n {
	case 1:
		return x
	case 2:
		return min(m.v[1], m.v[2])
	}
	a, b, c := m.v[0], m.v[1], m.v[2]
	return max(min(a, b), min(max(a, b), c))
}
