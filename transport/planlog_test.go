package transport

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"braid/internal/cmdtest"
	"braid/scheduler"
)

// The planner logs one line per change of plan: not the same plan twice,
// not a client's plan made before its tier came (unless none comes), and
// a plan that misses the SLA as a warning.
func TestPlanLogOnePerChange(t *testing.T) {
	var logs cmdtest.Buffer
	s := &Session{log: slog.New(slog.NewTextHandler(&logs, nil)), epoch: time.Now()}
	plan := func(shards []int, feasible bool) *scheduler.Decision {
		p := scheduler.Plan{K: 2, M: 0, Shards: shards, Names: []string{"fiber", "lte"}}
		p.Feasible, p.Binding, p.Goodput = feasible, "price", float64(len(logs.String())) // predictions move
		if !feasible {
			p.Relaxed = []string{"goodput"}
		}
		return &scheduler.Decision{Classes: []scheduler.ClassDecision{{Name: "default", Plan: p, New: true}}}
	}
	basic := &Terms{Tier: "basic"}
	logged := map[string]string{}
	lines := func() []string { return strings.Split(strings.TrimSpace(logs.String()), "\n") }

	s.logPlans(basic, plan([]int{2, 0}, true), logged)
	again := plan([]int{2, 0}, true) // the same plan, made again, binding another term
	again.Classes[0].Plan.Binding = "capacity"
	s.logPlans(basic, again, logged)
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], `msg="plan changed"`) || !strings.Contains(l[0], "level=INFO") ||
		!strings.Contains(l[0], "tier=basic") {
		t.Fatalf("one plan made twice logged:\n%s", logs.String())
	}
	s.logPlans(basic, plan([]int{1, 1}, true), logged)
	s.logPlans(basic, plan([]int{1, 1}, false), logged)
	l := lines()
	if len(l) != 3 {
		t.Fatalf("two changes logged as %d lines:\n%s", len(l)-1, logs.String())
	}
	if !strings.Contains(l[2], "level=WARN") || !strings.Contains(l[2], "SLA not met") || !strings.Contains(l[2], "SLA NOT MET") {
		t.Fatalf("a plan that misses the SLA: %s", l[2])
	}

	// A client plans before the concentrator's tier arrives: that plan
	// (no revenue, so a loss) is not logged; if no tier comes, the plan
	// is, saying so.
	logs = cmdtest.Buffer{}
	s = &Session{log: slog.New(slog.NewTextHandler(&logs, nil)), epoch: time.Now(), client: true}
	logged = map[string]string{}
	s.logPlans(&Terms{}, plan([]int{2, 0}, true), logged)
	if logs.String() != "" {
		t.Fatalf("a new client's tierless plan logged: %s", logs.String())
	}
	s.logPlans(basic, plan([]int{2, 0}, true), logged)
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "tier=basic") {
		t.Fatalf("the plan with the tier: %s", logs.String())
	}
	s.epoch = time.Now().Add(-time.Minute)
	s.logPlans(&Terms{}, plan([]int{2, 0}, true), logged)
	if l := lines(); len(l) != 2 || !strings.Contains(l[1], "tier=none") {
		t.Fatalf("a plan without a tier, long after the join: %s", logs.String())
	}
}
