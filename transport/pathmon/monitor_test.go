package pathmon

import (
	"math"
	"testing"
	"time"
)

func TestStateMachine(t *testing.T) {
	ms := time.Millisecond
	obs := func(now, silence time.Duration, loss float64) Observation {
		return Observation{Now: now, Silence: silence, SRTT: 20 * ms, Interval: 50 * ms,
			DownAfter: 200 * ms, UpAfter: time.Second, Loss: loss}
	}
	type step struct {
		o        Observation
		state    State
		usable   bool
		changed  bool
		wentDown bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"quiet link stays up", []step{
			{obs(50*ms, 40*ms, 0), StateUp, true, false, false},
			{obs(100*ms, 50*ms, 0), StateUp, true, false, false},
		}},
		{"silence: suspect, then down", []step{
			{obs(50*ms, 40*ms, 0), StateUp, true, false, false},
			{obs(150*ms, 130*ms, 0), StateDegraded, false, true, false},  // > max(100, 70)+25
			{obs(200*ms, 180*ms, 0), StateDegraded, false, false, false}, // not yet 200 ms
			{obs(250*ms, 230*ms, 0), StateDown, false, false, true},
		}},
		{"a suspect that speaks is used at once", []step{
			{obs(150*ms, 130*ms, 0), StateDegraded, false, true, false},
			{obs(200*ms, 10*ms, 0), StateUp, true, true, false},
		}},
		{"loss degrades but keeps the path in use", []step{
			{obs(50*ms, 10*ms, 0.08), StateDegraded, true, false, false},
			{obs(100*ms, 10*ms, 0.01), StateUp, true, false, false},
		}},
		{"recovery waits for the hold-down", []step{
			{obs(50*ms, 300*ms, 0), StateDown, false, true, true},
			{obs(100*ms, 10*ms, 0), StateDown, false, false, false},
			{obs(600*ms, 10*ms, 0), StateDown, false, false, false},
			{obs(1100*ms, 10*ms, 0), StateUp, true, true, false},
		}},
		{"a flap restarts the hold-down", []step{
			{obs(50*ms, 300*ms, 0), StateDown, false, true, true},
			{obs(100*ms, 10*ms, 0), StateDown, false, false, false},
			{obs(900*ms, 400*ms, 0), StateDown, false, false, false},
			{obs(1150*ms, 10*ms, 0), StateDown, false, false, false},
			{obs(2100*ms, 10*ms, 0), StateDown, false, false, false},
			{obs(2200*ms, 10*ms, 0), StateUp, true, true, false},
		}},
	}
	for _, c := range cases {
		var m Machine
		for i, s := range c.steps {
			changed, down := m.step(s.o)
			if m.State != s.state || m.usable() != s.usable || changed != s.changed || down != s.wentDown {
				t.Fatalf("%s, step %d: state %v usable %v changed %v down %v; want %v %v %v %v", c.name, i,
					m.State, m.usable(), changed, down, s.state, s.usable, s.changed, s.wentDown)
			}
		}
	}
}

func TestMonitorRates(t *testing.T) {
	var m Monitor
	const tick = 50 * time.Millisecond
	// 40 ticks at 1000 packets per tick with 5% lost; the peer receives
	// 1.14 MB per tick.
	var sent, lost, recv uint64
	for i := range 41 {
		now := time.Duration(i) * tick
		m.OnTick(now, sent, lost, 0, 0, 64<<10)
		m.OnPong(now, 20*time.Millisecond, recv, math.MaxUint64)
		sent += 1000
		lost += 50
		recv += 1_140_000
	}
	st := m.Snapshot()
	if st.Loss < 0.049 || st.Loss > 0.051 {
		t.Fatalf("loss %v, want 0.05", st.Loss)
	}
	want := 1_140_000 / tick.Seconds()
	if st.Delivery < want*0.99 || st.Delivery > want*1.01 || st.Current < want*0.99 {
		t.Fatalf("delivery %.0f (current %.0f) B/s, want %.0f", st.Delivery, st.Current, want)
	}
	// A peer claiming ten times what was sent moves the rate no faster
	// than what was sent.
	var liar Monitor
	var out uint64
	for i := range 41 {
		now := time.Duration(i) * tick
		liar.OnPong(now, 20*time.Millisecond, 10*out, out)
		out += 100_000
	}
	if got, most := liar.Snapshot().Delivery, 100_000/tick.Seconds(); got > most*1.01 {
		t.Fatalf("peer claiming 10x: delivery %.0f B/s, want at most what was sent, %.0f", got, most)
	}
	var r Monitor
	for _, d := range []time.Duration{20, 22, 18, 20, 80} {
		r.onRTT(d * time.Millisecond)
	}
	rs := r.Snapshot()
	if rs.MinRTT != 18*time.Millisecond || rs.P99 != 80*time.Millisecond || rs.Jitter <= 0 {
		t.Fatalf("rtt stats %+v", rs)
	}
}

func TestRedialDue(t *testing.T) {
	base := Observation{Interval: 50 * time.Millisecond, DownAfter: 200 * time.Millisecond}
	cases := []struct {
		silence, srtt time.Duration
		want          bool
	}{
		{silence: 100 * time.Millisecond, want: false},
		{silence: 1100 * time.Millisecond, want: false}, // down, but within the second after
		{silence: 1300 * time.Millisecond, want: true},
		// A long round trip moves the down threshold, and the redial with it.
		{silence: 1300 * time.Millisecond, srtt: 300 * time.Millisecond, want: false},
		{silence: 2100 * time.Millisecond, srtt: 300 * time.Millisecond, want: true},
	}
	for _, c := range cases {
		o := base
		o.Silence, o.SRTT = c.silence, c.srtt
		if got := RedialDue(o, time.Second); got != c.want {
			t.Errorf("silence %v srtt %v: redial %v, want %v", c.silence, c.srtt, got, c.want)
		}
	}
}
