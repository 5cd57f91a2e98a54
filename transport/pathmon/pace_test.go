package pathmon

import (
	"testing"
	"time"
)

// pacerAt is a pacer at a fixed rate of r bytes/s.
func pacerAt(r float64) *Pacer {
	p := NewPacer(0, false)
	p.setRate(r)
	return p
}

func TestPacer(t *testing.T) {
	ms := time.Millisecond
	p := pacerAt(1e6) // 1 MB/s: 1000 bytes per ms
	if d := p.Wait(0); d != 0 {
		t.Fatalf("fresh pacer waits %v", d)
	}
	p.Spend(0, 10000) // paid for at 10 ms; the burst lets the next go at 6 ms
	if d := p.Wait(0); d != 6*ms {
		t.Fatalf("wait after 10 ms of bytes = %v, want 6ms", d)
	}
	if d := p.Wait(6 * ms); d != 0 {
		t.Fatalf("wait at 6 ms = %v, want 0", d)
	}
	p.Spend(6*ms, 1000) // queued behind the first: paid for at 11 ms
	if d := p.Wait(6 * ms); d != ms {
		t.Fatalf("wait = %v, want 1ms", d)
	}
	// An idle second earns no more than the burst.
	p.Spend(time.Second, 20000)
	if d := p.Wait(time.Second); d != 16*ms {
		t.Fatalf("after idle: wait = %v, want 16ms (no credit saved up)", d)
	}
	off := NewPacer(0, true)
	off.Spend(0, 1<<30)
	if d := off.Wait(0); d != 0 {
		t.Fatalf("a path without a nominal rate is paced: wait %v", d)
	}
	if r := NewPacer(8, true).rate; r != 1e6*Share {
		t.Fatalf("8 Mbit/s paces at %v bytes/s, want %v", r, 1e6*Share)
	}
}

// TestPacerChargesParity: a coded path's shards are charged their parity,
// so shards and parity together keep to the rate.
func TestPacerChargesParity(t *testing.T) {
	p := pacerAt(1e6)
	p.SetParity(0.25) // M/K = 8/32
	p.Spend(0, 8000)  // 10000 bytes on the wire: paid for at 10 ms
	if d := p.Wait(0); d != 6*time.Millisecond {
		t.Fatalf("wait = %v, want 6ms (8000 bytes and 2000 of parity at 1 MB/s, less the 4 ms burst)", d)
	}
	if r := p.ShardRate(); r != 0.8e6 {
		t.Fatalf("shard rate %v, want 0.8e6", r)
	}
	p.SetParity(7) // a broken figure is clamped
	if r := p.ShardRate(); r != 0.5e6 {
		t.Fatalf("shard rate with parity clamped to 1: %v, want 0.5e6", r)
	}
}

// TestPacerFull: a path is full when senders waited for the pace (or
// shards waited for its connections) in most recent samples: a bulk
// transfer makes it full within a second, a response held back once a
// second does not, and a path left idle is no longer full.
func TestPacerFull(t *testing.T) {
	p := pacerAt(1e6)
	now := time.Duration(0)
	tick := func(held bool) bool {
		now += fullEvery
		if held {
			p.Spend(now, 100000) // 100 ms of debt: the next wait is held
			p.Wait(now)
		}
		return p.SampleFull(now, false)
	}
	for i := range 30 {
		if tick(i%10 == 0) {
			t.Fatalf("full after a wait every second (tick %d)", i)
		}
	}
	full := false
	for range 10 {
		full = tick(true)
	}
	if !full {
		t.Fatal("not full after a second of waiting for the pace")
	}
	for range 10 {
		full = tick(false)
	}
	if full {
		t.Fatal("still full after a second idle")
	}
	// Shards waiting count like a held sender (an unpaced path).
	for i := 1; i <= 10; i++ {
		full = p.SampleFull(now+time.Duration(i)*fullEvery, true)
	}
	if !full {
		t.Fatal("shards waiting for a second: not full")
	}
}

// feed steps m every 50 ms from t for d with sample o and returns the
// last pace and the time reached.
func feed(m *bwModel, t, d time.Duration, o Sample) (float64, time.Duration) {
	var r float64
	for end := t + d; t < end; t += 50 * time.Millisecond {
		r = m.step(t, o)
	}
	return r, t
}

func TestBwModel(t *testing.T) {
	ms := time.Millisecond
	busy := func(bw float64) Sample {
		return Sample{Deliver: bw, SRTT: 40 * ms, MinRTT: 40 * ms, Busy: true}
	}
	var m bwModel
	if r := m.step(0, Sample{SRTT: 40 * ms, MinRTT: 40 * ms}); r != 0 {
		t.Fatalf("nothing delivered yet: pace %v, want none", r)
	}
	// Start-up: not paced while the rate grows by a quarter a round.
	now := time.Duration(0)
	bw := 1e5
	for range 6 {
		var r float64
		r, now = feed(&m, now, 250*ms, busy(bw))
		if r != 0 || m.full {
			t.Fatalf("start-up at %v (rate %v growing): paced at %v", now, bw, r)
		}
		bw *= 1.5
	}
	// Three rounds without growth end it, in the drain phase.
	r, now := feed(&m, now, 800*ms, busy(bw))
	if !m.full || m.phase != 1 || r != 0.75*bw {
		t.Fatalf("after three flat rounds: full %v phase %d pace %v, want the drain phase at %v", m.full, m.phase, r, 0.75*bw)
	}
	// One cycle: every phase is a round; the probe phase goes 1.25 times.
	seen := map[float64]int{}
	for range 8 {
		r, now = feed(&m, now, 250*ms, busy(bw))
		seen[r/bw]++
	}
	if seen[1.25] != 1 || seen[0.75] != 1 || seen[1] != 6 {
		t.Fatalf("gains over a cycle %v, want 1.25 once, 0.75 once, 1 six times", seen)
	}
	// A path with little to send keeps its rate; a busy one learns a
	// lower rate.
	idle := busy(bw / 10)
	idle.Busy = false
	feed(&m, now, time.Second, idle)
	if m.btlBw != bw {
		t.Fatalf("idle path's rate %v, want %v kept", m.btlBw, bw)
	}
	_, now = feed(&m, now+time.Second, 300*ms, busy(0.8*bw))
	if m.btlBw != 0.8*bw || !m.full {
		t.Fatalf("busy path at 0.8: rate %v full %v, want %v, still paced", m.btlBw, m.full, 0.8*bw)
	}
	// A rate under half the 10-second most goes back to start-up.
	r, now = feed(&m, now, 600*ms, busy(0.3*bw))
	if m.full || r != 0 {
		t.Fatalf("rate fell to 0.3: full %v pace %v, want start-up (unpaced)", m.full, r)
	}
	// A link that delivers next to nothing still gets four packets a
	// round trip.
	var low bwModel
	_, lt := feed(&low, 0, 2*time.Second, busy(10))
	if r := low.step(lt, busy(10)); r != bwMinPackets/0.040 {
		t.Fatalf("pace on a dead link %v, want the floor %v", r, bwMinPackets/0.040)
	}
	// A LAN is not paced, and its model starts over.
	lan := busy(1e8)
	lan.MinRTT = time.Millisecond
	if r := m.step(now, lan); r != 0 || m.full || m.btlBw != 0 {
		t.Fatalf("1 ms path: pace %v full %v rate %v, want none and a fresh model", r, m.full, m.btlBw)
	}
}

// TestPacerMeasured: a path without rate= is paced by its model, its
// parity on top, and its debt is rescaled when the pace changes; a hinted
// path and one with measured pacing off are not touched.
func TestPacerMeasured(t *testing.T) {
	ms := time.Millisecond
	o := Sample{Deliver: 1e6, SRTT: 40 * ms, MinRTT: 40 * ms, Busy: true}
	run := func(p *Pacer, d time.Duration) time.Duration {
		var now time.Duration
		for ; now < d; now += 50 * ms {
			p.Observe(now, o)
		}
		return now
	}
	p := NewPacer(0, true)
	p.SetParity(0.1)
	now := run(p, 2*time.Second)
	if r := p.Current(); r != 1e6*1.1*bwGains[p.model.phase] {
		t.Fatalf("measured pace %v in phase %d, want the rate times its gain and 1.1 for parity", r, p.model.phase)
	}
	// 1 MB owed at the pace now, then the pace doubles: owed for half as
	// long.
	p.Spend(now, int(p.Current()/1.1)) // one second of it, with parity
	before := p.next - now
	o.Deliver = 2e6
	rate := p.Current()
	p.Observe(now, o)
	if want := time.Duration(float64(before) * rate / p.Current()); p.next-now != want {
		t.Fatalf("debt after the pace went %v -> %v: %v, want %v", rate, p.Current(), p.next-now, want)
	}
	hinted := NewPacer(8, true)
	run(hinted, 2*time.Second)
	if hinted.Current() != 1e6*Share {
		t.Fatalf("rate= path paced at %v, want its hint", hinted.Current())
	}
	off := NewPacer(0, false)
	run(off, 2*time.Second)
	if off.Current() != 0 {
		t.Fatalf("measured pacing off: paced at %v", off.Current())
	}
}
