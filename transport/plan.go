package transport

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"braid/internal/notify"
	"braid/internal/tier"
	"braid/transport/wire"
	"math"
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

// capacityHeadroom is the share of a path's nominal rate a plan fills.
const capacityHeadroom = 0.9

// SetTerms changes the session's terms (a new tier): the next plan is made
// at once and replaces the current one without hysteresis.
func (s *Session) SetTerms(t Terms) {
	s.terms.Store(&t)
	notify.Signal(s.replan)
}

// SetTier, at the concentrator, changes the session's tier: its terms
// are re-planned at once and the tier is pushed to the client, now and on
// every connection that joins later.
func (s *Session) SetTier(t *tier.Tier) error {
	m, err := encodeTier(t)
	if err != nil {
		return err
	}
	s.tierMsg.Store(m)
	s.tier.Store(t)
	s.SetTerms(TermsOf(t, s.Terms().Profile))
	for _, p := range s.pathList() {
		if c := p.liveConn(); c != nil {
			c.sendControl(&wire.Msg{Type: wire.MsgTier, Body: m.forVersion(c.version)})
		}
	}
	return nil
}

// tierMsg is a tier's two wire forms: the whole (version 2 when it has
// real-time terms) and version 1 for a peer of protocol version 4 or
// older, which reads no other.
type tierMsg struct{ whole, v1 []byte }

func encodeTier(t *tier.Tier) (*tierMsg, error) {
	whole, err := t.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	v1, err := t.AppendBinaryV1(nil)
	if err != nil {
		return nil, err
	}
	return &tierMsg{whole: whole, v1: v1}, nil
}

func (m *tierMsg) forVersion(v uint8) []byte {
	if v < wire.DatagramCodingVersion {
		return m.v1
	}
	return m.whole
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
	out := map[int]int{}
	for _, f := range s.flows.all() {
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

func (s *Session) plan(pl scheduler.Planning) {
	defer s.wg.Done()
	tick := time.NewTicker(scheduler.PlanEvery)
	defer tick.Stop()
	loop := scheduler.NewPlanLoop(time.Now())
	var forTerms *Terms
	states := map[string]bool{}
	logged := map[string]string{} // by class, what the last "plan changed" line said
	for {
		changed := s.changedCh()
		timed := false
		select {
		case <-s.done:
			return
		case <-tick.C:
			timed = true
		case <-changed:
			if !s.upDownChanged(states) {
				continue
			}
		case <-s.replan:
		}
		terms := s.terms.Load()
		pr := s.problem(terms)
		if s.plans.Load() == nil && !anyUp(pr) {
			// Nothing to plan on yet (a new session's paths are named
			// before their connections join): no plan, rather than one
			// that says no path is up.
			continue
		}
		o := scheduler.Observation{Now: time.Now(), NewTerms: terms != forTerms, Problem: pr}
		forTerms = terms
		for i, c := range terms.classes() {
			o.Classes = append(o.Classes, scheduler.ClassSLA{Name: c.Name, SLA: c.SLA})
			o.Offered = append(o.Offered, s.offered[i].Load())
			o.Waited = append(o.Waited, s.waited[i].Load())
		}
		d := loop.Step(o)
		s.applyPlans(pl, terms, o.Problem, &d)
		s.logPlans(terms, &d, logged)
		if timed {
			s.cfg.SLAWindows.note(terms.Tier, &d) // slawindow.go
		}
	}
}

func anyUp(pr *scheduler.Problem) bool {
	for i := range pr.Paths {
		if pr.Paths[i].Up {
			return true
		}
	}
	return false
}

// noTierYet is how long a client session plans without a tier before it
// logs such a plan: the concentrator sends the tier right after the
// first join, and a plan made before it (no revenue: a loss) says
// nothing.
const noTierYet = 2 * scheduler.PlanEvery

// logPlans logs each class's plan in force when it differs from the last
// line for the class: one line per change (a re-plan that yields the same
// plan, as when a path comes up for the first time, logs none). A plan
// that does not meet the SLA is a warning.
func (s *Session) logPlans(terms *Terms, d *scheduler.Decision, logged map[string]string) {
	tierName := terms.Tier
	if tierName == "" {
		if s.client && s.now() < noTierYet {
			return
		}
		tierName = "none"
	}
	for i := range d.Classes {
		cd := &d.Classes[i]
		key := tierName + " " + planKey(&cd.Plan)
		if logged[cd.Name] == key {
			continue
		}
		logged[cd.Name] = key
		level, msg := slog.LevelInfo, "plan changed"
		if !cd.Plan.Feasible {
			level, msg = slog.LevelWarn, "plan changed: SLA not met"
		}
		s.log.Log(context.Background(), level, msg, "tier", tierName, "class", cd.Name,
			"demand_mbps", math.Round(cd.Demand*8/1e4)/100, "plan", cd.Plan.String())
	}
}

// planKey is what makes two plans different for the log: the coding,
// the shards per path, the shard size, compression and whether the SLA
// holds, and which terms it gave up (not the predictions or the term
// that binds, which move with every measurement).
func planKey(p *scheduler.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "k=%d m=%d", p.K, p.M)
	for i, n := range p.Shards {
		if n > 0 && i < len(p.Names) {
			fmt.Fprintf(&b, " %s:%d", p.Names[i], n)
		}
	}
	fmt.Fprintf(&b, " %d %v %v %v", p.ShardSize, p.Compress, p.Feasible, p.Relaxed)
	return b.String()
}

// applyPlans hands a planning step's decision to the policy and, at the
// client, to the paths' pools.
func (s *Session) applyPlans(pl scheduler.Planning, terms *Terms, pr *scheduler.Problem, d *scheduler.Decision) {
	for _, i := range d.Clear {
		pl.SetPlan(i, nil)
	}
	out := make([]PlanInfo, len(d.Classes))
	for i := range d.Classes {
		cd := &d.Classes[i]
		if d.NewTerms {
			pl.SetPriority(i, cd.Priority)
		}
		if cd.EndTransition {
			pl.EndTransition(i)
		}
		if cd.New {
			p := cd.Plan
			pl.SetPlan(i, &p)
		}
		out[i] = PlanInfo{Class: cd.Name, Plan: cd.Plan, Changes: cd.Changes, Violations: cd.Violations}
	}
	s.plans.Store(&out)
	if !s.client {
		return // only the client dials
	}
	paths := s.pathList()
	for j, want := range d.Pools {
		for _, p := range paths {
			if p.info.Name == pr.Paths[j].Name {
				p.setPool(want)
			}
		}
	}
}

// sizePoolsByLoss sizes the pools of a client session whose policy makes
// no plans, once a second, by the link's loss and delay
// (scheduler.LossPools). Paths with conns= keep theirs.
func (s *Session) sizePoolsByLoss() {
	defer s.wg.Done()
	tick := time.NewTicker(scheduler.PlanEvery)
	defer tick.Stop()
	var lp scheduler.LossPools
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		var obs []scheduler.PoolPath
		byName := map[string]*Path{}
		for _, p := range s.pathList() {
			if !p.poolSized() {
				continue // conns= pins it
			}
			st := p.Stats()
			srtt, minRTT := p.quicRTT()
			obs = append(obs, scheduler.PoolPath{Name: p.info.Name, Loss: max(st.Loss, st.LinkLoss),
				Expected: st.Expected, Received: st.Received, SRTT: srtt, MinRTT: minRTT,
				Coded: st.Coded > 0, Have: p.poolSlots()})
			byName[p.info.Name] = p
		}
		for _, c := range lp.Step(obs) {
			p := byName[c.Name]
			msg := "path pool shrinks"
			switch {
			case c.Queue:
				msg = "path pool shrinks: a queue builds"
			case c.Conns > p.poolSlots():
				msg = "path pool grows: random loss at a flat delay"
			}
			s.log.Info(msg, "path", c.Name, "conns", c.Conns, "loss", c.Loss, "srtt", c.SRTT, "min_rtt", c.MinRTT)
			p.setPool(c.Conns)
		}
	}
}

// upDownChanged reports whether any path went up or down since states was
// filled, and refills it: connection churn that leaves every path as it
// was does not re-plan.
func (s *Session) upDownChanged(states map[string]bool) bool {
	changed := false
	seen := map[string]bool{}
	for _, p := range s.pathList() {
		name, up := p.info.Name, p.live()
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
		Limits: scheduler.Limits{MaxShards: wire.MaxShards, BlockSize: s.cfg.BlockSize}}
	for _, p := range s.pathList() {
		st := p.Stats()
		ps := scheduler.PathState{Name: p.info.Name, Up: p.live(), SRTT: st.RTT, MinRTT: st.MinRTT, RTTP99: st.RTTP99,
			Rate: p.Rate(), Queued: p.queued.Load(), QueueLimit: p.queueLimit(),
			Price: p.info.PriceGB, Own: p.info.Operator == wire.OperatorOwn, Loss: st.Loss, LinkLoss: st.LinkLoss}
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
