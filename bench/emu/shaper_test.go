package emu

import (
	"math"
	"slices"
	"testing"
	"time"
)

// t0 is the virtual clock's origin; no test here sleeps.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestShaperRandomLoss(t *testing.T) {
	for _, loss := range []float64{0.01, 0.05} {
		s := NewShaper(Link{Loss: loss}, 1)
		const n = 100000
		dropped := 0
		now := t0
		for range n {
			now = now.Add(time.Millisecond)
			if _, _, ok := s.Admit(now, 1200); !ok {
				dropped++
			}
		}
		got := float64(dropped) / n
		if math.Abs(got-loss) > 0.003 {
			t.Errorf("loss %.2f: measured %.4f, want within 0.003", loss, got)
		}
		st := s.Stats()
		if st.DroppedLoss != uint64(dropped) || st.Admitted != uint64(n-dropped) || st.PacketsIn != n || st.BytesIn != n*1200 {
			t.Errorf("loss %.2f: stats %+v do not match %d dropped of %d", loss, st, dropped, n)
		}
	}
}

func TestShaperGilbertElliott(t *testing.T) {
	ge := GilbertElliott{PGoodBad: 0.01, PBadGood: 0.2, LossGood: 0.001, LossBad: 0.5}
	want := ge.LossRate()
	if math.Abs(want-(0.001*0.2/0.21+0.5*0.01/0.21)) > 1e-12 {
		t.Fatalf("LossRate = %v", want)
	}
	s := NewShaper(Link{GE: &ge}, 2)
	const n = 400000
	lost := make([]bool, n)
	dropped := 0
	now := t0
	for i := range n {
		now = now.Add(time.Millisecond)
		_, _, ok := s.Admit(now, 1200)
		lost[i] = !ok
		if !ok {
			dropped++
		}
	}
	got := float64(dropped) / n
	if math.Abs(got-want)/want > 0.1 {
		t.Errorf("average loss %.4f, stationary %.4f", got, want)
	}
	// Losses must come in bursts: after a loss the chain is likely still
	// bad, so the conditional loss rate is far above the average (about
	// 0.4 here, against 0.025 for independent losses).
	afterLoss, lossAfterLoss := 0, 0
	for i := 1; i < n; i++ {
		if lost[i-1] {
			afterLoss++
			if lost[i] {
				lossAfterLoss++
			}
		}
	}
	if cond := float64(lossAfterLoss) / float64(afterLoss); cond < 5*want {
		t.Errorf("P(loss | previous lost) = %.3f, want bursty (> %.3f)", cond, 5*want)
	}
}

func TestShaperGilbertElliottAddsToLoss(t *testing.T) {
	ge := GilbertElliott{PGoodBad: 0.05, PBadGood: 0.05, LossGood: 0, LossBad: 0.2}
	s := NewShaper(Link{Loss: 0.1, GE: &ge}, 3)
	const n = 200000
	dropped := 0
	for i := range n {
		if _, _, ok := s.Admit(t0.Add(time.Duration(i)*time.Millisecond), 100); !ok {
			dropped++
		}
	}
	// Independent: 1 - 0.9 * 0.9 = 0.19.
	want := 1 - (1-0.1)*(1-ge.LossRate())
	if got := float64(dropped) / n; math.Abs(got-want) > 0.01 {
		t.Errorf("combined loss %.4f, want %.4f", got, want)
	}
}

func TestShaperRate(t *testing.T) {
	const rate = 10e6 // 10 Mbit/s
	const size = 1500
	l := Link{RateBps: rate, Delay: 30 * time.Millisecond}
	s := NewShaper(l, 4)
	// Offer 20 Mbit/s for 10 s.
	const dur = 10 * time.Second
	interval := time.Duration(float64(size*8) / (2 * rate) * 1e9)
	var delivered uint64
	var last time.Time
	for now := t0; now.Before(t0.Add(dur)); now = now.Add(interval) {
		at, _, ok := s.Admit(now, size)
		if !ok {
			continue
		}
		if at.Before(now.Add(l.Delay)) {
			t.Fatalf("packet delivered after %v, less than Delay", at.Sub(now))
		}
		// Count what arrives within the 10 s window seen by the receiver.
		if !at.After(t0.Add(l.Delay + dur)) {
			delivered += size
			last = at
		}
	}
	got := float64(delivered*8) / dur.Seconds()
	if math.Abs(got-rate)/rate > 0.03 {
		t.Errorf("throughput %.0f bit/s, want %.0f within 3%%", got, float64(rate))
	}
	if last.Before(t0.Add(l.Delay + dur - 10*time.Millisecond)) {
		t.Errorf("last delivery at %v, link went idle", last.Sub(t0))
	}
	st := s.Stats()
	if st.DroppedQueue == 0 {
		t.Errorf("offered twice the rate but nothing was dropped by the queue: %+v", st)
	}
	// About half the offered load must be dropped.
	if frac := float64(st.DroppedQueue) / float64(st.PacketsIn); frac < 0.45 || frac > 0.55 {
		t.Errorf("queue drop fraction %.3f, want about 0.5", frac)
	}
}

func TestShaperQueueDropTail(t *testing.T) {
	const size = 1500
	l := Link{RateBps: 1e6, QueueBytes: 10 * size} // 12 ms per packet
	s := NewShaper(l, 5)
	var admitted []int
	for i := range 100 {
		if _, _, ok := s.Admit(t0, size); ok {
			admitted = append(admitted, i)
		}
	}
	// Drop-tail: the first packets fill the queue, everything after is
	// dropped. The boundary is 10 packets give or take float rounding.
	if len(admitted) < 9 || len(admitted) > 11 {
		t.Fatalf("admitted %d packets of a 100-packet burst into a 10-packet queue", len(admitted))
	}
	for i, idx := range admitted {
		if idx != i {
			t.Fatalf("admitted packets %v, want a prefix of the burst", admitted)
		}
	}
	if got := s.Stats().DroppedQueue; got != uint64(100-len(admitted)) {
		t.Errorf("DroppedQueue = %d, want %d", got, 100-len(admitted))
	}
	// Half drained: room for about 5 more.
	now := t0.Add(60 * time.Millisecond)
	more := 0
	for range 20 {
		if _, _, ok := s.Admit(now, size); ok {
			more++
		}
	}
	if more < 4 || more > 6 {
		t.Errorf("after draining 5 packets, admitted %d more", more)
	}
	// Fully drained: a new burst is admitted again from an empty queue.
	at, _, ok := s.Admit(t0.Add(time.Second), size)
	if !ok || at != t0.Add(time.Second+12*time.Millisecond) {
		t.Errorf("packet on idle link: ok=%v deliverAt=+%v, want +12ms", ok, at.Sub(t0.Add(time.Second)))
	}
}

func TestShaperDefaultQueue(t *testing.T) {
	if got := (Link{RateBps: 100e6}).QueueLimit(); got != 1250000 {
		t.Errorf("100 Mbit/s default queue = %d, want 100 ms = 1250000", got)
	}
	if got := (Link{RateBps: 1e6}).QueueLimit(); got != 64<<10 {
		t.Errorf("1 Mbit/s default queue = %d, want the 64 KiB floor", got)
	}
	if got := (Link{}).QueueLimit(); got != 0 {
		t.Errorf("unlimited link queue = %d, want 0", got)
	}
}

func TestShaperDelayJitter(t *testing.T) {
	l := Link{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}
	s := NewShaper(l, 6)
	const n = 10000
	delays := make([]time.Duration, 0, n)
	for i := range n {
		// Spaced wider than the jitter so that no clamping happens.
		now := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		at, _, ok := s.Admit(now, 1200)
		if !ok {
			t.Fatal("packet dropped on a lossless link")
		}
		d := at.Sub(now)
		if d < l.Delay || d >= l.Delay+l.Jitter {
			t.Fatalf("delay %v outside [%v, %v)", d, l.Delay, l.Delay+l.Jitter)
		}
		delays = append(delays, d)
	}
	slices.Sort(delays)
	median := delays[n/2]
	want := l.Delay + l.Jitter/2
	if diff := median - want; diff < -time.Millisecond || diff > time.Millisecond {
		t.Errorf("median delay %v, want %v ± 1ms", median, want)
	}
	// The spread must actually cover the jitter range.
	if delays[n/10] > l.Delay+2*time.Millisecond || delays[9*n/10] < l.Delay+8*time.Millisecond {
		t.Errorf("10th/90th percentile %v/%v do not span the jitter", delays[n/10], delays[9*n/10])
	}
}

func TestShaperNoReorderWithJitter(t *testing.T) {
	l := Link{RateBps: 50e6, Delay: 10 * time.Millisecond, Jitter: 20 * time.Millisecond}
	s := NewShaper(l, 7)
	var prev time.Time
	distinct := map[time.Duration]bool{}
	for i := range 20000 {
		now := t0.Add(time.Duration(i) * 500 * time.Microsecond)
		at, _, ok := s.Admit(now, 1200)
		if !ok {
			continue
		}
		if at.Before(prev) {
			t.Fatalf("packet %d delivered at %v, before the previous one at %v", i, at.Sub(t0), prev.Sub(t0))
		}
		prev = at
		distinct[at.Sub(now)] = true
	}
	if len(distinct) < 100 {
		t.Errorf("only %d distinct delays, jitter not applied", len(distinct))
	}
}

func TestShaperReorder(t *testing.T) {
	l := Link{Delay: 20 * time.Millisecond, Reorder: 0.1}
	s := NewShaper(l, 8)
	const n = 10000
	var latest time.Time
	overtaken, held := 0, 0
	for i := range n {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		at, _, ok := s.Admit(now, 1200)
		if !ok {
			t.Fatal("packet dropped on a lossless link")
		}
		switch d := at.Sub(now); d {
		case l.Delay:
		case l.Delay + l.Delay/2:
			held++
		default:
			t.Fatalf("delay %v, want Delay or 1.5*Delay", d)
		}
		if at.Before(latest) {
			overtaken++
		}
		latest = maxTime(latest, at)
	}
	if frac := float64(held) / n; math.Abs(frac-0.1) > 0.01 {
		t.Errorf("held back fraction %.3f, want 0.1", frac)
	}
	if overtaken == 0 {
		t.Error("Reorder > 0 but no packet was delivered out of order")
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func TestShaperDuplicateAndMTU(t *testing.T) {
	s := NewShaper(Link{Duplicate: 0.1, MTU: 1400}, 9)
	const n = 50000
	dups := 0
	for i := range n {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if _, _, ok := s.Admit(now, 1401); ok {
			t.Fatal("packet above MTU admitted")
		}
		if _, dup, ok := s.Admit(now, 1400); !ok {
			t.Fatal("packet at MTU dropped")
		} else if dup {
			dups++
		}
	}
	if frac := float64(dups) / n; math.Abs(frac-0.1) > 0.01 {
		t.Errorf("duplicate fraction %.3f, want 0.1", frac)
	}
	st := s.Stats()
	if st.DroppedMTU != n || st.Duplicated != uint64(dups) {
		t.Errorf("stats %+v", st)
	}
}

func TestShaperDeterministic(t *testing.T) {
	ge := GilbertElliott{PGoodBad: 0.02, PBadGood: 0.3, LossGood: 0.01, LossBad: 0.6}
	l := Link{
		RateBps: 5e6, Delay: 15 * time.Millisecond, Jitter: 5 * time.Millisecond,
		Loss: 0.02, GE: &ge, Reorder: 0.05, Duplicate: 0.03, QueueBytes: 30000,
	}
	type decision struct {
		at      time.Time
		dup, ok bool
	}
	run := func(seed int64) []decision {
		s := NewShaper(l, seed)
		out := make([]decision, 0, 20000)
		for i := range 20000 {
			// Bursty arrivals so the queue is exercised too.
			now := t0.Add(time.Duration(i/10) * 20 * time.Millisecond)
			at, dup, ok := s.Admit(now, 200+i%1300)
			out = append(out, decision{at, dup, ok})
		}
		return out
	}
	a, b := run(42), run(42)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different decisions")
	}
	if slices.Equal(a, run(43)) {
		t.Fatal("different seeds gave identical decisions")
	}
}

func TestShaperSetLinkKeepsBacklog(t *testing.T) {
	s := NewShaper(Link{RateBps: 1e6, QueueBytes: 1 << 20}, 10)
	var last time.Time
	for range 10 {
		last, _, _ = s.Admit(t0, 1500) // 12 ms each: backlog until +120 ms
	}
	// Lifting the rate limit does not make the queued packets vanish, and
	// the next packet is not delivered before them.
	s.SetLink(Link{})
	at, _, ok := s.Admit(t0.Add(time.Millisecond), 1500)
	if !ok || at.Before(last) {
		t.Errorf("after SetLink: ok=%v at=+%v, last queued at +%v", ok, at.Sub(t0), last.Sub(t0))
	}
	// The GE copy is private: mutating the caller's struct has no effect.
	ge := GilbertElliott{LossGood: 1}
	s.SetLink(Link{GE: &ge})
	ge.LossGood = 0
	if _, _, ok := s.Admit(t0.Add(time.Second), 100); ok {
		t.Error("Shaper followed a mutation of the caller's GilbertElliott")
	}
}
