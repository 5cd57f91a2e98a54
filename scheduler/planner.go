package scheduler

import "time"

// Planner keeps one class's current plan and decides when a new one
// replaces it: at once when the current plan breaks the SLA (or uses a
// path that went down) and the new one does not, or when there is no
// current plan; otherwise only when the new plan earns at least
// SwitchGain more for SwitchTicks ticks in a row (degrade fast, upgrade
// slowly, so plans do not flap on noise). It is pure: the caller ticks it
// every second and at once when a path changes state.
type Planner struct {
	current Plan
	have    bool
	streak  int
	// Changes counts plan changes; Violations the ticks whose plan broke
	// the SLA.
	Changes, Violations uint64
}

// Hysteresis of Planner.
const (
	SwitchGain  = 0.05
	SwitchTicks = 3
)

// Current returns the plan in force and whether there is one.
func (pl *Planner) Current() (Plan, bool) { return pl.current, pl.have }

// Reset forgets the current plan, so the next tick adopts a new one at
// once (the tier or class changed).
func (pl *Planner) Reset() { pl.have, pl.streak = false, 0 }

// Tick solves pr and returns the plan in force and whether it changed.
func (pl *Planner) Tick(now time.Time, pr *Problem) (Plan, bool) {
	cand := Solve(now, pr)
	return pl.decide(pr, cand)
}

// decide is Tick's rule, given the freshly solved candidate.
func (pl *Planner) decide(pr *Problem, cand Plan) (Plan, bool) {
	adopt := func() (Plan, bool) {
		changed := !pl.have || !pl.current.SameShape(&cand)
		pl.current, pl.have, pl.streak = cand, true, 0
		if changed {
			pl.Changes++
		}
		if !cand.Feasible {
			pl.Violations++
		}
		return cand, changed
	}
	if !pl.have {
		return adopt()
	}
	cur := Evaluate(pr, &pl.current)
	switch {
	case cur.Binding == BindingDown:
		return adopt()
	case !cur.Feasible && cand.Feasible:
		return adopt()
	case wins(cand.Profit, cur.Profit) && !pl.current.SameShape(&cand):
		pl.streak++
		if pl.streak >= SwitchTicks {
			return adopt()
		}
	default:
		pl.streak = 0
	}
	// Keep the current plan, with its explanation brought up to date.
	relaxed := pl.current.Relaxed
	pl.current.Explain = cur
	if !cur.Feasible {
		pl.current.Relaxed = relaxed
	}
	pl.current.Exact = true
	if !cur.Feasible {
		pl.Violations++
	}
	return pl.current, false
}

// wins reports whether profit a beats b by SwitchGain.
func wins(a, b float64) bool {
	d := b
	if d < 0 {
		d = -d
	}
	return a > b && a-b >= SwitchGain*d
}
