package pathmon

import (
	"testing"
	"time"
)

const fastProbe, downAfter = 50 * time.Millisecond, 200 * time.Millisecond

// probeSim runs a connection's prober and state machine on a simulated
// clock: each tick is Next after the last, the peer answers a probe
// after rtt while answering is true.
type probeSim struct {
	p         Prober
	m         Machine
	now       time.Duration
	heard     time.Duration
	rtt       time.Duration
	bytes     uint64
	costly    bool
	answering bool
	last      ProbeStep
}

func (s *probeSim) tick() (wentDown bool) {
	t := ProbeTick{Now: s.now, PathBytes: s.bytes, Costly: s.costly, Usable: s.m.usable(), LastHeard: s.heard}
	s.last = s.p.Step(t, fastProbe, downAfter)
	_, wentDown = s.m.step(Observation{Now: s.now, Silence: s.now - s.heard, SRTT: s.rtt,
		Interval: s.last.Interval, DownAfter: s.last.DownAfter, UpAfter: time.Second})
	if s.answering {
		s.heard = s.now + s.rtt // the probe sent now is answered
	}
	s.now += s.last.Next
	return wentDown
}

// run ticks until the clock reaches until, and returns the number of
// ticks and whether the machine went down.
func (s *probeSim) run(until time.Duration) (ticks int, down bool) {
	for s.now < until {
		ticks++
		if s.tick() {
			down = true
		}
	}
	return ticks, down
}

func TestProberSlowsOnlyCostlyIdlePaths(t *testing.T) {
	for _, costly := range []bool{false, true} {
		s := &probeSim{now: time.Millisecond, rtt: 10 * time.Millisecond, costly: costly, answering: true}
		ticks, down := s.run(IdleAfter + 3*time.Second)
		if down {
			t.Fatalf("costly=%v: an answering idle connection went down", costly)
		}
		// Fast probing for the first IdleAfter (20 ticks), then 1 s
		// apart when the path costs: 3 more.
		want := int((IdleAfter + 3*time.Second) / fastProbe)
		if costly {
			want = int(IdleAfter/fastProbe) + 3
		}
		if ticks < want-1 || ticks > want+1 {
			t.Errorf("costly=%v: %d probes in %v idle, want about %d", costly, ticks, IdleAfter+3*time.Second, want)
		}
		if s.last.Slow != costly {
			t.Errorf("costly=%v: slow=%v after %v idle", costly, s.last.Slow, IdleAfter+3*time.Second)
		}
	}
	// A busy path is probed fast whatever it costs.
	s := &probeSim{now: time.Millisecond, rtt: 10 * time.Millisecond, costly: true, answering: true}
	for s.now < 3*time.Second {
		s.bytes += 1000
		s.tick()
		if s.last.Slow || s.last.Next != fastProbe {
			t.Fatalf("a path carrying shards probed every %v (slow=%v)", s.last.Next, s.last.Slow)
		}
	}
}

// A dead path that was idle and probed slowly is still found down within
// the bound docs/STATUS.md states: 3 s after the last answer under 500 ms
// of RTT, 3.5 s under 800 ms, and 3 RTT + 1.1 s above.
func TestProberSlowStillFindsDeath(t *testing.T) {
	for _, c := range []struct {
		rtt, bound time.Duration
	}{{10 * time.Millisecond, 3 * time.Second}, {450 * time.Millisecond, 3 * time.Second},
		{600 * time.Millisecond, 3500 * time.Millisecond}, {790 * time.Millisecond, 3500 * time.Millisecond},
		{1400 * time.Millisecond, 3*1400*time.Millisecond + 1100*time.Millisecond}} {
		s := &probeSim{now: time.Millisecond, rtt: c.rtt, costly: true, answering: true}
		s.run(IdleAfter + 2*time.Second)
		if !s.last.Slow {
			t.Fatalf("rtt %v: not probing slowly after %v idle", c.rtt, IdleAfter+2*time.Second)
		}
		s.answering = false
		lastAnswer := s.heard
		for s.m.State != StateDown {
			if s.now > lastAnswer+10*time.Second {
				t.Fatalf("rtt %v: still %v 10 s after the last answer", c.rtt, s.m.State)
			}
			s.tick()
		}
		// s.now is already the next tick's; the one that found it was
		// one Next earlier.
		found := s.now - s.last.Next - lastAnswer
		if found > c.bound {
			t.Errorf("rtt %v: down %v after the last answer, want within %v", c.rtt, found, c.bound)
		}
		if found <= downAfter {
			t.Errorf("rtt %v: down only %v after the last answer: slow probing's own silence read as an outage", c.rtt, found)
		}
	}
}

// Traffic on a slowly probed connection makes its probing fast at once,
// and the silence the slow probing left does not make it suspect or
// down before the next answer.
func TestProberWakes(t *testing.T) {
	s := &probeSim{now: time.Millisecond, rtt: 300 * time.Millisecond, costly: true, answering: true}
	s.run(IdleAfter + 2*time.Second)
	if !s.last.Slow {
		t.Fatal("not slow after idling")
	}
	// A shard goes out 900 ms after the last probe: the writer wakes the
	// prober early.
	s.now = s.now - s.last.Next + 900*time.Millisecond
	s.bytes += 4096
	for range 10 {
		s.tick()
		if s.last.Slow || s.last.Next != fastProbe {
			t.Fatalf("a path carrying shards again probed every %v", s.last.Next)
		}
		if !s.m.usable() {
			t.Fatalf("at %v, %v ms after waking: %v suspect=%v", s.now, (s.now / time.Millisecond), s.m.State, s.m.Suspect)
		}
		s.bytes += 4096
	}
	if s.p.wokeAt != 0 {
		t.Fatal("slow limits kept after the connection answered")
	}
	if s.last.Interval != fastProbe || s.last.DownAfter != downAfter {
		t.Fatalf("limits %v/%v after waking and an answer, want the configured ones", s.last.Interval, s.last.DownAfter)
	}
}

func TestProberDownConnectionProbedFast(t *testing.T) {
	var p Prober
	st := p.Step(ProbeTick{Now: time.Millisecond, Costly: true, Usable: true}, fastProbe, downAfter)
	st = p.Step(ProbeTick{Now: 2 * time.Second, Costly: true, Usable: true}, fastProbe, downAfter)
	if !st.Slow {
		t.Fatal("idle costly usable connection not slow")
	}
	st = p.Step(ProbeTick{Now: 3 * time.Second, Costly: true, Usable: false}, fastProbe, downAfter)
	if st.Slow || st.Next != fastProbe {
		t.Fatalf("a down connection probed every %v", st.Next)
	}
	if st.DownAfter != SlowDownAfter {
		t.Fatalf("limits right after slow probing: %v, want %v until the connection answers", st.DownAfter, SlowDownAfter)
	}
}

func TestMeter(t *testing.T) {
	var m Meter
	if s, r := m.Rates(0, 10, 10); s != 0 || r != 0 {
		t.Fatalf("rates without samples %v %v", s, r)
	}
	sec := time.Second
	// 1 MB/s sent, 2 MB/s received, sampled every 50 ms (the meter keeps
	// one per 100 ms).
	for at := time.Duration(0); at <= 3*sec; at += 50 * time.Millisecond {
		m.Sample(at, uint64(at.Seconds()*1e6), uint64(at.Seconds()*2e6))
	}
	s, r := m.Rates(3*sec, 3e6, 6e6)
	if s < 0.99e6 || s > 1.01e6 || r < 1.98e6 || r > 2.02e6 {
		t.Fatalf("rates %v %v, want 1e6 2e6", s, r)
	}
	// It stops: a second later with no new sample the rates are zero.
	if s, r := m.Rates(4*sec+sec/10, 3e6, 6e6); s != 0 || r != 0 {
		t.Fatalf("rates a second after the traffic stopped: %v %v", s, r)
	}
	// A counter that went back (it cannot; but never a negative rate).
	if s, _ := m.Rates(4*sec, 0, 0); s != 0 {
		t.Fatalf("rate of a counter that went back: %v", s)
	}
}
