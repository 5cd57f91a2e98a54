package scheduler

import (
	"math"
	"testing"
	"time"
)

func TestMedian3(t *testing.T) {
	var m median3
	for i, tc := range []struct{ x, want float64 }{
		{20, 20}, {32, 20}, {20, 20}, {20, 20}, {32, 20}, {33, 32}, {34, 33}, {0, 33}, {0, 0},
	} {
		if got := m.add(tc.x); got != tc.want {
			t.Fatalf("sample %d (%v): median %v, want %v", i, tc.x, got, tc.want)
		}
	}
}

// loopObs is an observation of paths at second sec, with the classes'
// running totals.
func loopObs(sec int, paths []PathState, classes []ClassSLA, offered []uint64, waited []int64) Observation {
	return Observation{Now: t0.Add(time.Duration(sec) * time.Second), Classes: classes, Offered: offered, Waited: waited,
		Problem: &Problem{Paths: paths, RevenueGB: 5, Profile: Profile{CPU: CPUHigh}}}
}

// TestPlanLoopDemand: a class's demand is the median of its last three
// seconds' offered rate, half as much again when dispatch waited for
// room over a tenth of the time, and not re-sampled sooner than half a
// period after the last sample.
func TestPlanLoopDemand(t *testing.T) {
	ms := time.Millisecond
	paths := []PathState{path("fiber", 100, 10*ms, 0.1, true)}
	classes := []ClassSLA{{Name: "default"}}
	l := NewPlanLoop(t0)
	var off uint64
	var waited int64
	for i, st := range []struct {
		sec     int
		mbit    float64       // offered this step, Mbit
		wait    time.Duration // dispatch waited this step
		want    float64       // demand after, Mbit/s
		newTerm bool
	}{
		{1, 0, 0, 0, true},   // new terms: the totals so far are not demand
		{2, 10, 0, 0, false}, // samples 0, 10: of two, the smaller
		{3, 20, 0, 10, false},
		{4, 30, 0, 20, false},
		{5, 40, 500 * ms, 30, false}, // waited half the time: 60; samples 20, 30, 60
		{6, 10, 500 * ms, 30, false}, // 15 is less than the demand: 30 kept; samples 30, 60, 30
		{7, 0, 0, 30, false},         // samples 60, 30, 0
		{7, 100, 0, 30, false},       // the same second again: no sample
		{8, 0, 0, 30, false},         // the 100 counts now: samples 30, 0, 100
		{9, 0, 0, 0, false},          // samples 0, 100, 0
	} {
		off += uint64(st.mbit * mbit)
		waited += int64(st.wait)
		d := l.Step(func() Observation {
			o := loopObs(st.sec, paths, classes, []uint64{off}, []int64{waited})
			o.NewTerms = st.newTerm
			return o
		}())
		if got := d.Classes[0].Demand / mbit; math.Abs(got-st.want) > 1e-6 {
			t.Fatalf("step %d (second %d): demand %.2f Mbit/s, want %.2f", i, st.sec, got, st.want)
		}
	}
}

// TestPlanLoopLayers: classes are planned one over another. A class with
// a stricter p99 bound than the default class's has priority: its shards
// jump the default's queue, so it is planned on the paths' whole
// capacity. One without is planned on what the default class's plan
// leaves. The pools follow the plans.
func TestPlanLoopLayers(t *testing.T) {
	ms := time.Millisecond
	paths := func() []PathState {
		fiber := path("fiber", 10, 10*ms, 0.1, true)
		cell := path("cell", 50, 40*ms, 4, false)
		cell.Loss = 0.01 // random loss at a flat delay: a pool of four
		return []PathState{fiber, cell}
	}
	for _, tc := range []struct {
		name   string
		second SLA
		prio   bool
	}{
		{"latency-bound class jumps the queue", SLA{P99Latency: 150 * ms}, true},
		{"bulk class takes what is left", SLA{MinGoodput: 2 * mbit}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			classes := []ClassSLA{{Name: "default", SLA: SLA{P99Latency: 2 * time.Second}}, {Name: "second", SLA: tc.second}}
			l := NewPlanLoop(t0)
			var d Decision
			// The default class offers 15 Mbit/s (fiber carries 10), the
			// second 4. Demand is known from the third second, and
			// hysteresis takes three more.
			for sec := 1; sec <= 8; sec++ {
				o := loopObs(sec, paths(), classes, []uint64{uint64(sec) * 15 * mbit, uint64(sec) * 4 * mbit}, []int64{0, 0})
				o.NewTerms = sec == 1
				d = l.Step(o)
			}
			def, second := d.Classes[0], d.Classes[1]
			t.Logf("default %s; second %s", def.Plan.String(), second.Plan.String())
			if def.Priority || second.Priority != tc.prio {
				t.Fatalf("priorities %v %v, want false %v", def.Priority, second.Priority, tc.prio)
			}
			if !def.Plan.Uses(0) || !def.Plan.Uses(1) {
				t.Fatalf("default class: %s, want fiber and cell", def.Plan.String())
			}
			if !second.Plan.Uses(0) || second.Plan.Uses(1) {
				t.Fatalf("second class: %s, want it on fiber only", second.Plan.String())
			}
			// The capacity the second class was planned on: fiber's
			// whole, or what the default class's share of it leaves.
			want := 10 * mbit
			if !tc.prio {
				want -= 15 * mbit * float64(def.Plan.ShareOf("fiber")) / float64(def.Plan.K)
			}
			if math.Abs(second.Plan.Capacity-want) > 1 {
				t.Fatalf("second class planned on %.2f Mbit/s, want %.2f", second.Plan.Capacity/mbit, want/mbit)
			}
			wantPools := []int{1, 1}
			for j := range 2 {
				if def.Plan.Uses(j) || second.Plan.Uses(j) {
					wantPools[j] = conns(&paths()[j])
				}
			}
			if d.Pools[0] != wantPools[0] || d.Pools[1] != wantPools[1] || d.Pools[1] != 4 {
				t.Fatalf("pools %v, want %v and four on the lossy cell", d.Pools, wantPools)
			}
		})
	}
}

// TestPlanLoopSteps: new terms plan afresh and clear the classes that
// went; a plan's make-before-break ends TransitionTicks steps after it
// came; hysteresis keeps a plan when a path only gets a little cheaper,
// but a path up for the first time is adopted at once.
func TestPlanLoopSteps(t *testing.T) {
	ms := time.Millisecond
	fiber, cell := path("fiber", 10, 10*ms, 0.5, false), path("cell", 50, 40*ms, 4, false)
	two := []ClassSLA{{Name: "default"}, {Name: "video", SLA: SLA{P99Latency: 100 * ms}}}
	one := two[:1]
	l := NewPlanLoop(t0)
	step := func(sec int, classes []ClassSLA, newTerms bool, paths ...PathState) Decision {
		o := loopObs(sec, paths, classes, make([]uint64, len(classes)), make([]int64, len(classes)))
		o.NewTerms = newTerms
		return l.Step(o)
	}
	d := step(1, two, true, fiber)
	if !d.NewTerms || len(d.Classes) != 2 || !d.Classes[0].New || !d.Classes[1].New {
		t.Fatalf("first step: %+v, want both classes new", d)
	}
	for sec := 2; sec < 1+TransitionTicks; sec++ {
		if d = step(sec, two, false, fiber); d.Classes[0].New || d.Classes[0].EndTransition {
			t.Fatalf("second %d: new %v, transition ends %v", sec, d.Classes[0].New, d.Classes[0].EndTransition)
		}
	}
	if d = step(1+TransitionTicks, two, false, fiber); !d.Classes[0].EndTransition {
		t.Fatalf("the transition did not end %d steps after the plan", TransitionTicks)
	}
	// fiber 2% cheaper: not worth a switch.
	cheaper := fiber
	cheaper.Price *= 0.98
	for sec := 10; sec < 15; sec++ {
		if d = step(sec, two, false, cheaper); d.Classes[0].New {
			t.Fatalf("second %d: a 2%% cheaper path changed the plan: %s", sec, d.Classes[0].Plan.String())
		}
	}
	// A new network comes up: adopted at once, without hysteresis.
	if d = step(15, two, false, cheaper, cell); !d.Classes[0].New && !d.Classes[1].New {
		t.Fatal("a path up for the first time did not re-plan at once")
	}
	if len(d.Pools) != 2 {
		t.Fatalf("%d pools for 2 paths", len(d.Pools))
	}
	// New terms with one class: the second's plan goes.
	if d = step(16, one, true, cheaper, cell); len(d.Classes) != 1 || len(d.Clear) != 1 || d.Clear[0] != 1 {
		t.Fatalf("terms with one class: %d classes, clear %v", len(d.Classes), d.Clear)
	}
}

// TestLossPools: the pool of a path that codes grows after GrowTicks
// steps of loss (the loss also measured from the peer's packets), one
// that does not code after one; a path gone is forgotten.
func TestLossPools(t *testing.T) {
	ms := time.Millisecond
	var lp LossPools
	coded := PoolPath{Name: "a", SRTT: 21 * ms, MinRTT: 20 * ms, Coded: true, Have: 1}
	plain := PoolPath{Name: "b", SRTT: 21 * ms, MinRTT: 20 * ms, Loss: 0.01, Have: 1}
	for i := 1; i <= GrowTicks; i++ {
		// a loses 2% of the peer's packets, seen only in its counts.
		coded.Expected, coded.Received = uint64(i)*1000, uint64(i)*980
		ch := lp.Step([]PoolPath{coded, plain})
		var a, b *PoolChange
		for k := range ch {
			switch ch[k].Name {
			case "a":
				a = &ch[k]
			case "b":
				b = &ch[k]
			}
		}
		if (i == 1) != (b != nil) {
			t.Fatalf("step %d: uncoded path's change %+v", i, b)
		}
		if b != nil {
			plain.Have = b.Conns
		}
		if (i == GrowTicks) != (a != nil) {
			t.Fatalf("step %d: coded path's change %+v", i, a)
		}
		if a != nil && (a.Conns != LossPool || math.Abs(a.Loss-0.02) > 1e-9) {
			t.Fatalf("coded path: %+v, want %d connections at 2%% loss", a, LossPool)
		}
	}
	if plain.Have != LossPool {
		t.Fatalf("uncoded path: %d connections, want %d", plain.Have, LossPool)
	}
	lp.Step([]PoolPath{plain})
	if _, ok := lp.sizers["a"]; ok {
		t.Fatal("a path gone is still sized")
	}
	// A standing queue drops the pool to one, and says so.
	plain.SRTT = 70 * ms
	var ch []PoolChange
	for range QueueTicks {
		ch = lp.Step([]PoolPath{plain})
	}
	if len(ch) != 1 || ch[0].Conns != 1 || !ch[0].Queue {
		t.Fatalf("after %d steps of a queue: %+v", QueueTicks, ch)
	}
}
