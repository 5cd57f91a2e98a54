package scheduler

import "time"

// The planning loop as a pure step. Every second, and at once when a
// path goes up or down or the terms change, the session observes its
// paths, its classes' terms and what their flows offered, and applies
// what Step returns: each class's plan to its Planning policy, the
// pools to its paths. The step estimates each class's demand, lays the
// classes over the paths' capacity one after another, lets each class's
// Planner decide (hysteresis) and sizes the pools the plans ask for.

// ClassSLA is one traffic class of the terms: its name and SLA.
type ClassSLA struct {
	Name string
	SLA  SLA
}

// Observation is what the session sees at one step.
type Observation struct {
	Now time.Time
	// NewTerms says Classes changed (a tier pushed or changed): every
	// class is planned afresh, without hysteresis.
	NewTerms bool
	// Classes are the terms' classes, the default class first; at least
	// one, at most MaxClasses.
	Classes []ClassSLA
	// Offered and Waited are per class, running totals: the data bytes
	// its flows cut into blocks, and the nanoseconds dispatch waited for
	// room on the paths.
	Offered []uint64
	Waited  []int64
	// Problem is the paths as they are, the revenue, profile and
	// limits; the step sets each class's SLA and demand on copies.
	Problem *Problem
}

// ClassDecision is one class's outcome of a step.
type ClassDecision struct {
	Name string
	// Plan is the plan in force; New says it replaced the one before and
	// goes to the policy now (Planning.SetPlan).
	Plan Plan
	New  bool
	// EndTransition says the make-before-break of the last new plan
	// ends now (Planning.EndTransition).
	EndTransition bool
	// Priority says the class's shards jump the queue (SetPriority).
	Priority bool
	// Demand is the bytes per second the class was planned for.
	Demand              float64
	Changes, Violations uint64
}

// Decision is what a step asks the session to apply.
type Decision struct {
	Classes []ClassDecision
	// NewTerms repeats the observation's: priorities are set anew and
	// Clear lists the classes beyond the terms whose plans go.
	NewTerms bool
	Clear    []int
	// Pools is, for each of the problem's paths, the connections the
	// plans ask for: the most any class's plan that uses the path wants,
	// one where none uses it. Only the client dials, so the client's
	// plans size the pools for both directions.
	Pools []int
}

// PlanLoop is the planning loop's state between steps.
type PlanLoop struct {
	cps    []*classLoop
	last   time.Time
	everUp map[string]bool
}

// classLoop is one class's state in the loop.
type classLoop struct {
	pl          Planner
	lastOffered uint64
	lastWaited  int64
	demand      float64
	rates       median3 // the last seconds' demand
	name        string
	sla         SLA
	prio        bool
	last        Plan
	transition  int // steps until the new plan's make-before-break ends
}

// NewPlanLoop returns a loop whose first demand sample spans from start.
func NewPlanLoop(start time.Time) *PlanLoop {
	return &PlanLoop{last: start, everUp: map[string]bool{}}
}

// PlanEvery is the re-planning period.
const PlanEvery = time.Second

// TransitionTicks is how many steps a new plan's shards may still
// overflow onto the old plan's paths (BestValue.EndTransition): about
// what a 600 ms path needs to open its congestion window.
const TransitionTicks = 4

// LatencyMargin is the share of a class's p99 bound its plans aim for:
// the model's p99 leaves out queueing behind other traffic and the
// queue at a path's bottleneck, so plans keep 20% in hand (docs/BENCH.md,
// cost-sla-interactive).
const LatencyMargin = 0.8

// planSLA is the SLA a class's plans are made for: its own, with the
// p99 bound tightened by LatencyMargin.
func planSLA(s SLA) SLA {
	s.P99Latency = time.Duration(float64(s.P99Latency) * LatencyMargin)
	return s
}

// Step makes one step of the loop.
func (l *PlanLoop) Step(o Observation) Decision {
	now := o.Now
	d := Decision{NewTerms: o.NewTerms}
	// A path up for the first time is a new network, not noise: the best
	// plan is adopted at once, without the hysteresis that guards against
	// flapping (a path that comes back has its own hold-down).
	fresh := false
	for _, p := range o.Problem.Paths {
		if p.Up && !l.everUp[p.Name] {
			l.everUp[p.Name] = true
			fresh = true
		}
	}
	if o.NewTerms {
		old := l.cps
		l.cps = nil
		for i, c := range o.Classes {
			cp := &classLoop{name: c.Name, sla: c.SLA}
			cp.lastOffered, cp.lastWaited = at(o.Offered, i), at(o.Waited, i)
			if i < len(old) {
				cp.demand = old[i].demand
			}
			l.cps = append(l.cps, cp)
		}
		for i := len(l.cps); i < len(old); i++ {
			d.Clear = append(d.Clear, i)
		}
		// A class with a stricter p99 than the default class's jumps the
		// queue on its planned path.
		def := l.cps[0].sla.P99Latency
		for i, cp := range l.cps {
			p := cp.sla.P99Latency
			cp.prio = i > 0 && p > 0 && (def == 0 || p < def)
		}
	}
	cps := l.cps
	if len(cps) == 0 {
		return d
	}
	// Demand: the data bytes each class's flows cut into blocks since the
	// last sample, per second. When dispatch had to wait for room on the
	// plan's paths for over a tenth of the time, they want more than the
	// plan carries: ask for half as much again. (Taking 90% of a plan's
	// capacity is no such sign: a flow paced at the SLA's rate does, and
	// planning it for more spreads its bytes over dearer paths.) The
	// demand planned for is the median of the last three samples: a flow
	// that catches up after a stall offers a burst for a second, and a
	// plan sized for it stays (a cheaper one for the lasting demand may
	// not win by the margin hysteresis asks).
	if dt := now.Sub(l.last).Seconds(); dt >= PlanEvery.Seconds()/2 {
		for i, cp := range cps {
			off, w := at(o.Offered, i), at(o.Waited, i)
			rate := float64(off-cp.lastOffered) / dt
			if float64(w-cp.lastWaited)/1e9 > dt/10 {
				rate = max(rate*1.5, cp.demand)
			}
			cp.demand = cp.rates.add(rate)
			cp.lastOffered, cp.lastWaited = off, w
		}
		l.last = now
	}
	if fresh {
		for _, cp := range cps {
			cp.pl.Reset()
		}
	}
	// Classes share the paths: each is planned on the capacity the
	// others' demand leaves. The tier's own classes are first solved on
	// the whole capacity (a sketch, for their load); the default class is
	// planned on what their sketches leave; then each own class is
	// planned for good on what the default class's plan and the classes
	// before it leave, so a latency-bound class sees the bulk on a path
	// and goes elsewhere. A joint optimum is not sought.
	base := o.Problem
	d.Classes = make([]ClassDecision, len(cps))
	tick := func(i int, pr *Problem) []float64 {
		cp := cps[i]
		pr.SLA, pr.Demand = planSLA(cp.sla), cp.demand
		p, isNew := cp.pl.Tick(now, pr)
		cd := &d.Classes[i]
		if cp.transition > 0 {
			if cp.transition--; cp.transition == 0 {
				cd.EndTransition = true
			}
		}
		if isNew {
			cd.New = true
			cp.transition = TransitionTicks
		}
		cp.last = p
		return loadOf(pr, &p, cp.demand)
	}
	var sketches [][]float64
	for _, cp := range cps[1:] {
		pr := lessLoad(base)
		pr.SLA, pr.Demand = planSLA(cp.sla), cp.demand
		p := Solve(now, pr)
		sketches = append(sketches, loadOf(pr, &p, cp.demand))
	}
	loads := [][]float64{tick(0, lessLoad(base, sketches...))}
	for i := 1; i < len(cps); i++ {
		// A class with priority jumps the queue of the default class's
		// shards on a shared path, so the default's load does not take
		// capacity from it (and a default plan kept by hysteresis cannot
		// push it onto a dear path).
		if cps[i].prio {
			loads = append(loads, tick(i, lessLoad(base, loads[1:]...)))
		} else {
			loads = append(loads, tick(i, lessLoad(base, loads...)))
		}
	}
	for i, cp := range cps {
		cd := &d.Classes[i]
		cd.Name, cd.Plan, cd.Priority, cd.Demand = cp.name, cp.last, cp.prio, cp.demand
		cd.Changes, cd.Violations = cp.pl.Changes, cp.pl.Violations
	}
	d.Pools = make([]int, len(base.Paths))
	for j := range base.Paths {
		want := 1
		for _, cp := range cps {
			for k, name := range cp.last.Names {
				if name == base.Paths[j].Name && cp.last.Shards[k] > 0 {
					want = max(want, cp.last.Conns[k])
				}
			}
		}
		d.Pools[j] = want
	}
	return d
}

// at returns s[i], or zero beyond s.
func at[T any](s []T, i int) T {
	var z T
	if i < len(s) {
		return s[i]
	}
	return z
}

// loadOf is what plan p of a class with demand puts on each of pr's
// paths, in bytes per second.
func loadOf(pr *Problem, p *Plan, demand float64) []float64 {
	l := make([]float64, len(pr.Paths))
	if p.K > 0 {
		for j := range pr.Paths {
			l[j] = min(demand, p.Goodput) * float64(p.ShareOf(pr.Paths[j].Name)) / float64(p.K)
		}
	}
	return l
}

// lessLoad returns a copy of base whose paths' capacity is less the
// loads.
func lessLoad(base *Problem, loads ...[]float64) *Problem {
	pr := *base
	pr.Paths = append([]PathState(nil), base.Paths...)
	for _, l := range loads {
		for j := range pr.Paths {
			pr.Paths[j].Capacity = max(pr.Paths[j].Capacity-l[j], 0)
		}
	}
	return &pr
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
