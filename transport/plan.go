package transport

import (
	"braid/internal/tier"
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

// planEvery is the re-planning period.
const planEvery = time.Second

// capacityHeadroom is the share of a path's nominal rate a plan fills.
const capacityHeadroom = 0.9

// SetTerms changes the session's terms (a new tier): the next plan is made
// at once and replaces the current one without hysteresis.
func (s *Session) SetTerms(t Terms) {
	s.terms.Store(&t)
	select {
	case s.replan <- struct{}{}:
	default:
	}
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
	s.SetTerms(TermsOf(t, s.Terms().Profile))
	s.sendEverywhere(&Msg{Type: MsgTier, Body: b})
	return nil
}

// TermsOf returns the terms of a tier's default class for a device.
func TermsOf(t *tier.Tier, p scheduler.Profile) Terms {
	return Terms{Tier: t.Name, RevenueGB: t.RevenueGB, SLA: t.Classes[0].SLA, Profile: p}
}

// Terms returns the session's terms.
func (s *Session) Terms() Terms { return *s.terms.Load() }

// PlanInfo is the plan in force and the planner's counters.
type PlanInfo struct {
	Plan       scheduler.Plan
	Changes    uint64
	Violations uint64
}

// Plan returns the bestvalue plan in force, false when the session does
// not plan (another policy) or has no plan yet.
func (s *Session) Plan() (PlanInfo, bool) {
	p := s.curPlan.Load()
	if p == nil {
		return PlanInfo{}, false
	}
	return PlanInfo{Plan: *p, Changes: s.planStat.changes.Load(), Violations: s.planStat.violations.Load()}, true
}

func (s *Session) plan(bv *scheduler.BestValue) {
	defer s.wg.Done()
	var pl scheduler.Planner
	tick := time.NewTicker(planEvery)
	defer tick.Stop()
	lastOffered, lastWaited, last := s.offered.Load(), s.waited.Load(), time.Now()
	var demand float64
	states := map[string]bool{}
	for {
		changed := s.changedCh()
		reset := false
		select {
		case <-s.done:
			return
		case <-tick.C:
		case <-changed:
			if !s.upDownChanged(states) {
				continue
			}
		case <-s.replan:
			reset = true
		}
		now := time.Now()
		// Demand: the data bytes flows cut into blocks since the last
		// plan, per second; when dispatch had to wait for room on the
		// plan's paths for over a tenth of the time, the flows want more
		// than the plan carries: ask for half as much again.
		if dt := now.Sub(last).Seconds(); dt >= planEvery.Seconds()/2 {
			off, w := s.offered.Load(), s.waited.Load()
			rate := float64(off-lastOffered) / dt
			if float64(w-lastWaited)/1e9 > dt/10 {
				rate = max(rate*1.5, demand)
			}
			demand, lastOffered, lastWaited, last = rate, off, w, now
		}
		terms := s.terms.Load()
		pr := s.problem(terms, demand)
		if reset {
			pl.Reset()
		}
		p, isNew := pl.Tick(now, pr)
		s.planStat.changes.Store(pl.Changes)
		s.planStat.violations.Store(pl.Violations)
		cp := p
		s.curPlan.Store(&cp)
		if isNew {
			bv.SetPlan(&cp)
			s.log.Info("plan changed", "tier", terms.Tier, "demand_mbps", math.Round(demand*8/1e4)/100, "plan", cp.String())
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

// problem gathers what the planner needs from every path.
func (s *Session) problem(t *Terms, demand float64) *scheduler.Problem {
	pr := &scheduler.Problem{SLA: t.SLA, RevenueGB: t.RevenueGB, Demand: demand, Profile: t.Profile,
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
