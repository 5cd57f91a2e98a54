package scheduler

import (
	"strings"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	for _, name := range []string{"", "weighted", "minrtt", "roundrobin", "duplicate", "single:lte"} {
		p, err := New(name, 8, 2, 1024)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if name != "" && p.Name() != name {
			t.Fatalf("New(%q).Name() = %q", name, p.Name())
		}
	}
	for _, bad := range []string{"fastest", "single:", "Weighted"} {
		if _, err := New(bad, 8, 2, 1024); err == nil || !strings.Contains(err.Error(), "unknown policy") {
			t.Fatalf("New(%q): %v, want unknown policy", bad, err)
		}
	}
}

func states() []PathState {
	ms := time.Millisecond
	return []PathState{
		{Name: "a", Up: true, SRTT: 50 * ms, Rate: 5e6, QueueLimit: 1 << 20},
		{Name: "b", Up: true, SRTT: 20 * ms, Rate: 1e6, QueueLimit: 1 << 20},
		{Name: "c", Up: false, SRTT: 5 * ms, Rate: 9e6, QueueLimit: 1 << 20},
	}
}

func TestPlacement(t *testing.T) {
	get := func(name string) Policy {
		p, err := New(name, 8, 0, 1024)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ps := states()
	if i := get("minrtt").Place(ps, 1000, 0, 0, 0, false); i != 1 {
		t.Errorf("minrtt chose %d, want the live path with the lowest RTT (1)", i)
	}
	full := states()
	full[1].Queued = 1 << 20
	if i := get("minrtt").Place(full, 1000, 0, 0, 0, false); i != 0 {
		t.Errorf("minrtt with a full best path chose %d, want 0", i)
	}
	var seen []int
	for seq := range uint64(4) {
		seen = append(seen, get("roundrobin").Place(ps, 1000, 0, 0, seq, false))
	}
	if seen[0] == seen[1] || seen[0] != seen[2] || seen[1] != seen[3] {
		t.Errorf("roundrobin placed %v, want alternation over the two live paths", seen)
	}
	for _, i := range seen {
		if i == 2 {
			t.Error("roundrobin used a down path")
		}
	}
	if i := get("single:b").Place(ps, 1000, 0, 0, 0, false); i != 1 {
		t.Errorf("single:b chose %d", i)
	}
	if i := get("single:c").Place(ps, 1000, 0, 0, 0, false); i != -1 {
		t.Errorf("single:c chose %d although c is down", i)
	}
	d := get("duplicate")
	if k, m := d.Code(5000, 0, ps); k != 1 || m != 1 {
		t.Errorf("duplicate codes %d+%d on two live paths, want 1+1", k, m)
	}
	if a, b := d.Place(ps, 5000, 0, 0, 0, false), d.Place(ps, 5000, 1, 0, 0, false); a == b || a == 2 || b == 2 {
		t.Errorf("duplicate put copies on %d and %d, want the two live paths", a, b)
	}
	if k, m := d.Code(0, 0, ps); k != 1 || m != 0 {
		t.Errorf("duplicate codes an empty block %d+%d", k, m)
	}
}

func TestBestValueFollowsPlan(t *testing.T) {
	pol, err := New("bestvalue", 8, 0, 1024)
	if err != nil {
		t.Fatal(err)
	}
	bv := pol.(*BestValue)
	ps := costSLA()
	plan := Solve(t0, &Problem{Paths: ps, RevenueGB: 5, Demand: 20 * mbit,
		SLA: SLA{MinGoodput: 20 * mbit, P99Latency: time.Second}, Profile: Profile{CPU: CPUHigh}})
	bv.SetPlan(0, &plan)
	k, m := bv.Code(64<<10, 0, ps)
	if k != plan.K || m != plan.M {
		t.Fatalf("full block coded %d+%d, plan %d+%d", k, m, plan.K, plan.M)
	}
	got := map[string]int{}
	for i := range k + m {
		got[ps[bv.Place(ps, 1024, i, 0, 0, false)].Name]++
	}
	for i, name := range plan.Names {
		if got[name] != plan.Shards[i] {
			t.Fatalf("%s carries %d shards, plan says %d (%s)", name, got[name], plan.Shards[i], plan.String())
		}
	}
	// The fiber's queue is full: its shard moves, but not onto the
	// cellular path, dearer than anything the plan uses.
	ps[0].Queued, ps[0].QueueLimit = 1<<20, 1<<20
	for i := range k + m {
		if j := bv.Place(ps, 1024, i, 0, 0, false); j == 1 || j == 0 {
			t.Fatalf("shard %d on %s with fiber full", i, ps[j].Name)
		}
	}
	// The satellite goes down: never placed there; with fiber full too,
	// nothing within the ceiling has room: wait.
	ps[2].Up = false
	for i := range k + m {
		if j := bv.Place(ps, 1024, i, 0, 0, false); j != -1 {
			t.Fatalf("shard %d placed on %s", i, ps[j].Name)
		}
	}
	// A re-send goes anywhere up.
	if j := bv.Place(ps, 1024, 0, 0, 0, true); j < 0 || !ps[j].Up {
		t.Fatalf("urgent shard: %d", j)
	}
	// A short block on a plan that survives one path: its shards cover
	// two paths at least.
	two := Solve(t0, &Problem{Paths: costSLA()[:2], RevenueGB: 5, Demand: 5 * mbit,
		SLA: SLA{MinGoodput: 5 * mbit, Survive: 1}, Profile: Profile{CPU: CPUHigh}})
	bv.SetPlan(0, &two)
	k, m = bv.Code(100, 0, costSLA()[:2])
	if k != 1 || m < 1 {
		t.Fatalf("short block coded %d+%d under %s", k, m, two.String())
	}
}

func TestCheapest(t *testing.T) {
	pol, _ := New("cheapest", 8, 0, 1024)
	ps := costSLA()
	if j := pol.Place(ps, 1024, 0, 0, 0, false); ps[j].Name != "fiber" {
		t.Fatalf("cheapest chose %s", ps[j].Name)
	}
	ps[0].Queued, ps[0].QueueLimit = 1<<20, 1<<20
	if j := pol.Place(ps, 1024, 0, 0, 0, false); ps[j].Name != "sat" {
		t.Fatalf("with fiber full, cheapest chose %s", ps[j].Name)
	}
}

func TestBestValueTransition(t *testing.T) {
	pol, _ := New("bestvalue", 8, 0, 1024)
	bv := pol.(*BestValue)
	ps := costSLA()
	ps[2].Up = false // the satellite is not up yet: fiber and cell
	old := Solve(t0, &Problem{Paths: ps, RevenueGB: 5, Demand: 20 * mbit, SLA: SLA{MinGoodput: 20 * mbit}, Profile: Profile{CPU: CPUHigh}})
	if !old.Uses(1) {
		t.Fatalf("old plan: %s", old.String())
	}
	bv.SetPlan(0, &old)
	ps[2].Up = true
	next := Solve(t0, &Problem{Paths: ps, RevenueGB: 5, Demand: 20 * mbit, SLA: SLA{MinGoodput: 20 * mbit}, Profile: Profile{CPU: CPUHigh}})
	if next.Uses(1) {
		t.Fatalf("new plan: %s", next.String())
	}
	bv.SetPlan(0, &next)
	// Fiber and satellite full (the satellite's window still small): in
	// the transition a shard may go to the cell path, the old plan's.
	ps[0].Queued, ps[0].QueueLimit = 1<<20, 1<<20
	ps[2].Queued, ps[2].QueueLimit = 1<<20, 1<<20
	if j := bv.Place(ps, 1024, 0, 0, 0, false); j != 1 {
		t.Fatalf("in transition: placed on %d, want the cell path", j)
	}
	bv.EndTransition(0)
	if j := bv.Place(ps, 1024, 0, 0, 0, false); j != -1 {
		t.Fatalf("after transition: placed on %d, want to wait", j)
	}
}

// TestBestValueAllocs: following a plan allocates nothing per block or
// per shard, short blocks of a survival plan included.
func TestBestValueAllocs(t *testing.T) {
	pol, _ := New("bestvalue", 8, 0, 1024)
	bv := pol.(*BestValue)
	ps := costSLA()[:2]
	p := Solve(t0, &Problem{Paths: ps, RevenueGB: 5, Demand: 5 * mbit,
		SLA: SLA{MinGoodput: 5 * mbit, Survive: 1}, Profile: Profile{CPU: CPUHigh}})
	bv.SetPlan(0, &p)
	if n := testing.AllocsPerRun(1000, func() {
		k, m := bv.Code(3000, 0, ps)
		for i := range k + m {
			bv.Place(ps, 1024, i, 0, 0, false)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations per block", n)
	}
}
