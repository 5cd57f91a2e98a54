package scheduler

import (
	"math"
	"testing"
	"time"
)

// TestPlannerHysteresis drives the planner tick by tick through a table
// of path conditions and checks when the plan changes.
func TestPlannerHysteresis(t *testing.T) {
	ms := time.Millisecond
	base := func() *Problem {
		return &Problem{Paths: []PathState{path("own", 20, 20*ms, 0.1, true), path("partner", 50, 40*ms, 2, false)},
			RevenueGB: 5, Demand: 10 * mbit, SLA: SLA{MinGoodput: 10 * mbit, P99Latency: 200 * ms}, Profile: Profile{CPU: CPUHigh}}
	}
	type step struct {
		name   string
		mod    func(*Problem)
		change bool
		uses   string // a path the plan must use
		avoids string // a path the plan must not use
	}
	steps := []step{
		{"first tick adopts", nil, true, "own", "partner"},
		{"same conditions keep it", nil, false, "own", ""},
		// The own path slows so it can carry only 6 of 10 Mbit/s: the
		// current plan breaks the goodput term: replaced at once.
		{"own path slows: degrade at once", func(p *Problem) { p.Paths[0].Capacity = 6 * mbit }, true, "partner", ""},
		// It recovers: the old plan would earn more, but only after
		// three ticks in a row.
		{"recovers: tick 1", nil, false, "partner", ""},
		{"recovers: tick 2", nil, false, "partner", ""},
		{"recovers: tick 3 switches", nil, true, "own", "partner"},
		// A 2% gain is not worth a switch, however long it lasts.
		{"small gain 1", func(p *Problem) { p.Paths[0].Price = 0.1 * 0.98 }, false, "own", ""},
		{"small gain 2", func(p *Problem) { p.Paths[0].Price = 0.1 * 0.98 }, false, "own", ""},
		{"small gain 3", func(p *Problem) { p.Paths[0].Price = 0.1 * 0.98 }, false, "own", ""},
		{"small gain 4", func(p *Problem) { p.Paths[0].Price = 0.1 * 0.98 }, false, "own", ""},
		// The own path goes down: never keep a plan on a down path.
		{"own path down", func(p *Problem) { p.Paths[0].Up = false }, true, "partner", "own"},
		// Back up, interrupted gains: a streak of 2, a tick without, 3.
		{"up 1", nil, false, "partner", ""},
		{"up 2", nil, false, "partner", ""},
		{"blip: own down again", func(p *Problem) { p.Paths[0].Up = false }, false, "partner", "own"},
		{"up again 1", nil, false, "partner", ""},
		{"up again 2", nil, false, "partner", ""},
		{"up again 3", nil, true, "own", ""},
	}
	var pl Planner
	now := t0
	for _, st := range steps {
		pr := base()
		if st.mod != nil {
			st.mod(pr)
		}
		now = now.Add(time.Second)
		p, changed := pl.Tick(now, pr)
		if changed != st.change {
			t.Fatalf("%s: changed %v, want %v: %s", st.name, changed, st.change, p.String())
		}
		idx := map[string]int{"own": 0, "partner": 1}
		if st.uses != "" && !p.Uses(idx[st.uses]) {
			t.Fatalf("%s: plan does not use %s: %s", st.name, st.uses, p.String())
		}
		if st.avoids != "" && p.Uses(idx[st.avoids]) {
			t.Fatalf("%s: plan uses %s: %s", st.name, st.avoids, p.String())
		}
	}
	if pl.Changes != 5 {
		t.Fatalf("%d changes, want 5", pl.Changes)
	}
}

// TestPlannerViolations: with no plan meeting the SLA the planner says so
// and counts every tick in violation; a reset re-plans at once.
func TestPlannerViolations(t *testing.T) {
	pr := &Problem{Paths: costSLA()[:1], RevenueGB: 5, Demand: math.Inf(1), SLA: SLA{MinGoodput: 20 * mbit}}
	var pl Planner
	for i := range 3 {
		p, _ := pl.Tick(t0.Add(time.Duration(i)*time.Second), pr)
		if p.Feasible {
			t.Fatalf("10 Mbit/s path meets a 20 Mbit/s SLA: %s", p.String())
		}
	}
	if pl.Violations != 3 {
		t.Fatalf("%d violations, want 3", pl.Violations)
	}
	// A new tier: the plan is remade on the next tick.
	pl.Reset()
	pr.SLA.MinGoodput = 5 * mbit
	p, changed := pl.Tick(t0.Add(5*time.Second), pr)
	if !changed || pl.Changes != 2 || !p.Feasible {
		t.Fatalf("after reset: changed %v, changes %d, %s", changed, pl.Changes, p.String())
	}
}
