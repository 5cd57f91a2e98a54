package transport

import (
	"context"
	"io"
	"testing"
	"time"
)

// pacerAt is a pacer at a fixed rate of r bytes/s.
func pacerAt(r float64) *pacer {
	p := newPacer(0, false)
	p.setRate(r)
	return p
}

func TestPacer(t *testing.T) {
	ms := time.Millisecond
	p := pacerAt(1e6) // 1 MB/s: 1000 bytes per ms
	if d := p.wait(0); d != 0 {
		t.Fatalf("fresh pacer waits %v", d)
	}
	p.spend(0, 10000) // paid for at 10 ms; the burst lets the next go at 6 ms
	if d := p.wait(0); d != 6*ms {
		t.Fatalf("wait after 10 ms of bytes = %v, want 6ms", d)
	}
	if d := p.wait(6 * ms); d != 0 {
		t.Fatalf("wait at 6 ms = %v, want 0", d)
	}
	p.spend(6*ms, 1000) // queued behind the first: paid for at 11 ms
	if d := p.wait(6 * ms); d != ms {
		t.Fatalf("wait = %v, want 1ms", d)
	}
	// An idle second earns no more than the burst.
	p.spend(time.Second, 20000)
	if d := p.wait(time.Second); d != 16*ms {
		t.Fatalf("after idle: wait = %v, want 16ms (no credit saved up)", d)
	}
	off := newPacer(0, true)
	off.spend(0, 1<<30)
	if d := off.wait(0); d != 0 {
		t.Fatalf("a path without a nominal rate is paced: wait %v", d)
	}
	if r := newPacer(8, true).rate; r != 1e6*paceShare {
		t.Fatalf("8 Mbit/s paces at %v bytes/s, want %v", r, 1e6*paceShare)
	}
}

// TestPacedPath: a path whose SPEC gives its rate is not sent faster than
// that, whatever loopback could carry: uploads by the client, downloads by
// the concentrator (which learns the rate from the JOIN). Each direction is
// timed alone, so the other end's pacing cannot stand in for it.
func TestPacedPath(t *testing.T) {
	const n = 1 << 20
	for _, down := range []bool{false, true} {
		name := map[bool]string{false: "up", true: "down"}[down]
		t.Run(name, func(t *testing.T) {
			// The concentrator's side of the flow: it reads the upload, or
			// writes the download, then closes.
			handle := func(f *Flow) {
				if err := f.Accept(); err != nil {
					return
				}
				if down {
					f.Write(make([]byte, n))
					f.CloseWrite()
					io.Copy(io.Discard, f) // until the client's FIN
				} else {
					io.Copy(io.Discard, f) // the whole upload, then FIN
					f.CloseWrite()
				}
				f.Close()
			}
			ts := newTestServer(t, Config{}, handle)
			pd := dialerTo("a", ts.addr(), ts.pin)
			pd.Info.RateMbps = 8 // 1 MB/s nominal
			c := dialClient(t, Config{}, []PathDialer{pd})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var got int64
			if down {
				got, err = io.Copy(io.Discard, f)
				if err == nil {
					err = f.CloseWrite()
				}
			} else {
				var m int
				m, err = f.Write(make([]byte, n))
				got = int64(m)
				if err == nil {
					err = f.CloseWrite()
				}
				if err == nil {
					_, err = io.Copy(io.Discard, f) // until the concentrator has it all
				}
			}
			took := time.Since(start)
			f.Close()
			if err != nil || got != n {
				t.Fatalf("moved %d of %d bytes: %v", got, n, err)
			}
			// n bytes and their shard headers at no more than paceShare of
			// 1 MB/s, less the burst allowance and some slack.
			secs := float64(n) / (1e6 * paceShare)
			least := time.Duration(secs*float64(time.Second)) - 50*time.Millisecond
			if took < least {
				t.Fatalf("1 MiB %s a path paced at %.0f kB/s in %v, want at least %v",
					name, 1e3*paceShare, took, least)
			}
			if r := c.Paths()[0].Rate(); r > 1e6*paceShare {
				t.Fatalf("client's path rate estimate %.0f bytes/s over its pace %.0f", r, 1e6*paceShare)
			}
		})
	}
}

// TestPacerChargesParity: a coded path's shards are charged their parity,
// so shards and parity together keep to the rate.
func TestPacerChargesParity(t *testing.T) {
	p := pacerAt(1e6)
	p.setParity(0.25) // M/K = 8/32
	p.spend(0, 8000)  // 10000 bytes on the wire: paid for at 10 ms
	if d := p.wait(0); d != 6*time.Millisecond {
		t.Fatalf("wait = %v, want 6ms (8000 bytes and 2000 of parity at 1 MB/s, less the 4 ms burst)", d)
	}
	if r := p.shardRate(); r != 0.8e6 {
		t.Fatalf("shard rate %v, want 0.8e6", r)
	}
	p.setParity(7) // a broken figure is clamped
	if r := p.shardRate(); r != 0.5e6 {
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
			p.spend(now, 100000) // 100 ms of debt: the next wait is held
			p.wait(now)
		}
		return p.sampleFull(now, false)
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
		full = p.sampleFull(now+time.Duration(i)*fullEvery, true)
	}
	if !full {
		t.Fatal("shards waiting for a second: not full")
	}
}

// feed steps m every 50 ms from t for d with sample o and returns the
// last pace and the time reached.
func feed(m *bwModel, t, d time.Duration, o bwSample) (float64, time.Duration) {
	var r float64
	for end := t + d; t < end; t += 50 * time.Millisecond {
		r = m.step(t, o)
	}
	return r, t
}

func TestBwModel(t *testing.T) {
	ms := time.Millisecond
	busy := func(bw float64) bwSample {
		return bwSample{deliver: bw, srtt: 40 * ms, minRTT: 40 * ms, busy: true}
	}
	var m bwModel
	if r := m.step(0, bwSample{srtt: 40 * ms, minRTT: 40 * ms}); r != 0 {
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
	idle.busy = false
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
	lan.minRTT = time.Millisecond
	if r := m.step(now, lan); r != 0 || m.full || m.btlBw != 0 {
		t.Fatalf("1 ms path: pace %v full %v rate %v, want none and a fresh model", r, m.full, m.btlBw)
	}
}

// TestPacerMeasured: a path without rate= is paced by its model, its
// parity on top, and its debt is rescaled when the pace changes; a hinted
// path and one with measured pacing off are not touched.
func TestPacerMeasured(t *testing.T) {
	ms := time.Millisecond
	o := bwSample{deliver: 1e6, srtt: 40 * ms, minRTT: 40 * ms, busy: true}
	run := func(p *pacer, d time.Duration) time.Duration {
		var now time.Duration
		for ; now < d; now += 50 * ms {
			p.observe(now, o)
		}
		return now
	}
	p := newPacer(0, true)
	p.setParity(0.1)
	now := run(p, 2*time.Second)
	if r := p.current(); r != 1e6*1.1*bwGains[p.model.phase] {
		t.Fatalf("measured pace %v in phase %d, want the rate times its gain and 1.1 for parity", r, p.model.phase)
	}
	// 1 MB owed at the pace now, then the pace doubles: owed for half as
	// long.
	p.spend(now, int(p.current()/1.1)) // one second of it, with parity
	before := p.next - now
	o.deliver = 2e6
	rate := p.current()
	p.observe(now, o)
	if want := time.Duration(float64(before) * rate / p.current()); p.next-now != want {
		t.Fatalf("debt after the pace went %v -> %v: %v, want %v", rate, p.current(), p.next-now, want)
	}
	hinted := newPacer(8, true)
	run(hinted, 2*time.Second)
	if hinted.current() != 1e6*paceShare {
		t.Fatalf("rate= path paced at %v, want its hint", hinted.current())
	}
	off := newPacer(0, false)
	run(off, 2*time.Second)
	if off.current() != 0 {
		t.Fatalf("measured pacing off: paced at %v", off.current())
	}
}
