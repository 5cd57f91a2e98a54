package pathmon

import (
	"sync"
	"sync/atomic"
	"time"
)

// Share is the share of a path's nominal rate (rate= in its SPEC) its
// shards may use; the rest is for QUIC's packet headers and ACKs. It is
// above the 90% the planner fills (transport's capacityHeadroom), so a path the plan
// fills drains its queue in braid without filling the link's
// (docs/BENCH.md, "Figures behind the code's choices").
const Share = 0.95

// paceBurst is how far a pacer lets a path run ahead of its rate after an
// idle spell: a few full shards, so that pacing costs no throughput to
// timer granularity, and little enough to leave a bottleneck queue empty.
const paceBurst = 4 * time.Millisecond

// Pacer spaces a path's shards to a rate. A path told its nominal
// rate is never sent faster than that: a sender that saturates a link
// fills the bottleneck's queue, and a full drop-tail queue both delays
// every shard behind it and drops packets, and a block whose shard is
// dropped waits a whole round trip of that path for the re-send (the
// stalls of a saturating flow). quic-go paces within its congestion
// window, which grows until the queue overflows; this keeps the queue
// empty instead, at the cost of the share of the link it leaves unused.
// A path without a nominal rate is paced to what it measurably carries
// (bwModel), once that is known; until then, and on a path whose round
// trip is too short to hold a queue worth keeping short, it is not paced.
type Pacer struct {
	hint     float64 // bytes/s from rate= (times paceShare); 0: measured
	measured bool    // without a hint, pace by the model (else never)

	// paced mirrors rate > 0, so an unpaced path's senders take no lock
	// per shard.
	paced atomic.Bool

	mu   sync.Mutex
	rate float64       // bytes/s now; 0: off
	next time.Duration // when the bytes sent so far are paid for
	// parity is the packet-coding parity the path's connections add per
	// data byte (M/K of their current code): those bytes cross the link
	// too, so a shard is charged 1+parity times its size. Without it a
	// coded path is sent faster than its rate, its queue fills, and the
	// coder then turns parity off (it cannot tell the queue's drops from
	// the link's), so random loss reaches quic-go again.
	parity float64
	// limited: a sender waited for the pace since the last observation
	// (the path had more to send than the pace let it).
	limited bool
	// held is limited for fullness (sampleFull), which looks on its own
	// clock; fullAvg averages its samples, fullAt is when it last took one.
	held    bool
	fullAvg float64
	fullAt  time.Duration
	model   bwModel
}

func NewPacer(rateMbps float64, measured bool) *Pacer {
	r := rateMbps * 1e6 / 8 * Share
	p := &Pacer{hint: r, measured: measured}
	p.setRate(r)
	return p
}

// setRate sets the pace to r bytes/s (0: off), under p.mu or before p is
// shared.
func (p *Pacer) setRate(r float64) {
	p.rate = r
	p.paced.Store(r > 0)
}

// Wait returns how long a sender must Wait, at now, before it may send;
// 0 when it may send at once.
func (p *Pacer) Wait(now time.Duration) time.Duration {
	if !p.paced.Load() {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate <= 0 {
		return 0
	}
	d := max(p.next-paceBurst-now, 0)
	if d > 0 {
		p.limited, p.held = true, true
	}
	return d
}

// SampleFull says whether the path has been full lately: more to send
// than its pace let go (or, unpaced, shards waiting for its connections)
// in most of the last second's samples, one taken each fullEvery. A
// response that waits for the pace for a few milliseconds does not make
// a path full; a bulk transfer does. waiting says shards wait now.
func (p *Pacer) SampleFull(now time.Duration, waiting bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now-p.fullAt >= fullEvery {
		p.fullAt = now
		var x float64
		if p.held || waiting {
			x = 1
		}
		p.held = false
		p.fullAvg += (x - p.fullAvg) * fullGain
	}
	return p.fullAvg > 0.5
}

// fullEvery and fullGain: sampleFull's sample spacing and the weight of a
// new sample (a time constant of about half a second).
const (
	fullEvery = 100 * time.Millisecond
	fullGain  = 0.2
)

// Spend charges n bytes sent at now.
func (p *Pacer) Spend(now time.Duration, n int) {
	if !p.paced.Load() {
		return
	}
	p.mu.Lock()
	if p.rate > 0 {
		p.next = max(p.next, now) + time.Duration(float64(n)*(1+p.parity)/p.rate*float64(time.Second))
	}
	p.mu.Unlock()
}

// SetParity sets the parity charged per data byte (clamped to [0, 1]).
func (p *Pacer) SetParity(f float64) {
	p.mu.Lock()
	p.parity = min(max(f, 0), 1)
	p.mu.Unlock()
}

// Current is the pace in bytes/s; 0 when the path is not paced.
func (p *Pacer) Current() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// ShardRate is the rate shards may go at: the pace less the parity; 0
// when the path is not paced.
func (p *Pacer) ShardRate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate / (1 + p.parity)
}

// Observe feeds a path without a nominal rate one look at its
// connections and sets its pace from the model. busy says shards were
// waiting for the path.
func (p *Pacer) Observe(now time.Duration, o Sample) {
	if p.hint > 0 || !p.measured {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	o.Busy = o.Busy || p.limited
	p.limited = false
	r := p.model.step(now, o)
	if r > 0 {
		// The peer counts QUIC bytes; parity crosses the link beside them
		// and is charged here, so the pace carries it on top.
		r *= 1 + p.parity
	}
	switch {
	case r > 0 && p.rate == 0:
		p.next = now // the pace starts now, with no debt
	case r > 0 && p.next > now:
		// What is still owed was charged at the old rate: owe the same
		// bytes at the new one, so a pace that rises after a slow spell
		// is not held back by that spell's debt.
		p.next = now + time.Duration(float64(p.next-now)*p.rate/r)
	}
	p.setRate(r)
}

// Sample is what a path's monitors say at one look: the delivery rate
// the peer counted (the most in any 250 ms of the last two seconds),
// braid's probes' smoothed and least round trip, and whether the path had
// shards waiting.
type Sample struct {
	Deliver      float64 // bytes/s
	SRTT, MinRTT time.Duration
	Busy         bool
}

// bwModel paces a path without a nominal rate to its bottleneck rate,
// measured, as BBR does (Cardwell et al., "BBR: Congestion-Based
// Congestion Control", ACM Queue 2016), on top of quic-go's Reno, which
// braid cannot replace (quic-go has no congestion-control hook): a Reno
// window that never meets a full queue is not cut by its drops, and a
// queue kept short keeps every shard's delay near the path's least.
//
//   - Start-up: not paced, so quic-go's slow start finds the rate, until
//     the delivery rate stops growing by a quarter for three rounds.
//   - Then a cycle of eight phases of a round each, paced at 1.25, 0.75,
//     then six times 1.0 the bottleneck rate: the first probes for more
//     room, the second drains what the probe queued. A round is 250 ms,
//     the span the delivery rate is measured over (shorter probes would
//     not show in it); a cycle is the two seconds the rate's maximum is
//     taken over, so the latest probe is always in it.
//   - The bottleneck rate is the most delivered in any 250 ms of the last
//     two seconds; it may fall only while the path was busy (a path with
//     little to send does not learn a low rate from its own idleness).
//   - A bottleneck rate that falls under half the most delivered in any
//     round of the last 10 s (a fade, an outage) goes back to start-up,
//     which finds the rate again faster than the probes' quarter per
//     cycle would.
//   - Nothing else: the round trip is no signal here (a trace-driven or
//     cellular link's delay swings by half its least without any queue of
//     ours, and pacing to a fraction of the latest delivery whenever it
//     rose spiralled the pace down to nothing on the Verizon LTE trace),
//     and a cap on what is in flight, as BBR's window is, measured from
//     the probes' counts half a round trip old, held the lte scenario's
//     goodput well below unpaced (docs/BENCH.md).
//
// It is a pure step function of its samples, so it is table-tested.
type bwModel struct {
	btlBw            float64 // bytes/s
	full             bool    // start-up is over
	fullBw           float64
	fullRounds       int
	roundAt, phaseAt time.Duration
	phase            int
	started          bool
	// rounds holds the most delivered in each of the last bwLongRounds
	// rounds (a ring; round counts them): a bottleneck rate that falls
	// under half of their most, with no queue standing, was lost to a
	// slow spell (a cellular link's fade, an outage), and start-up finds
	// the rate again faster than the probes' quarter per cycle would.
	rounds [bwLongRounds]float64
	round  int
}

// bwLongRounds is how many rounds the long-term most is kept over: 10 s.
const bwLongRounds = 40

// bwMinPackets is the fewest full-size packets per round trip a pace
// allows (BBR's least window is four): a pace set from a link that
// delivered next to nothing (a fade, a trace's empty spell) must not hold
// a shard back for seconds, or the path never shows it has come back.
const bwMinPackets = 4 * 1500

// bwRound is the model's round: a probe phase and the start-up's check.
const bwRound = 250 * time.Millisecond

// bwMinRTT is the least round trip from which a path is paced by
// measurement: below it (a LAN, loopback) there is no queue worth keeping
// short and pacing would only cost throughput to timer granularity.
const bwMinRTT = 2 * time.Millisecond

var bwGains = [8]float64{1.25, 0.75, 1, 1, 1, 1, 1, 1}

// step takes one sample and returns the pace in bytes/s (0: not paced).
// Rounds and phases go by time, so the samples may come at any rate
// (each connection of a path looks every probe interval).
func (m *bwModel) step(now time.Duration, o Sample) float64 {
	if o.Deliver <= 0 || o.MinRTT <= 0 {
		return m.pace(o) // nothing measured yet
	}
	if o.MinRTT < bwMinRTT {
		*m = bwModel{}
		return 0
	}
	if o.Busy || o.Deliver > m.btlBw {
		m.btlBw = o.Deliver
	}
	if !m.started {
		m.started, m.roundAt, m.fullBw = true, now, m.btlBw
	}
	i := m.round % bwLongRounds
	m.rounds[i] = max(m.rounds[i], o.Deliver)
	if now-m.roundAt >= bwRound {
		m.roundAt = now
		m.round++
		m.rounds[m.round%bwLongRounds] = 0
		if !m.full {
			if m.btlBw >= 1.25*m.fullBw {
				m.fullBw, m.fullRounds = m.btlBw, 0
			} else {
				m.fullRounds++
			}
			if m.fullRounds >= 3 {
				m.full, m.phase, m.phaseAt = true, 1, now // drain what start-up queued
			}
		} else if m.btlBw < 0.5*m.longMax() {
			m.full, m.fullBw, m.fullRounds = false, m.btlBw, 0
		}
	}
	if m.full && now-m.phaseAt >= bwRound {
		m.phase = (m.phase + 1) % len(bwGains)
		m.phaseAt = now
	}
	return m.pace(o)
}

func (m *bwModel) pace(o Sample) float64 {
	if !m.full || m.btlBw <= 0 {
		return 0
	}
	rtt := max(o.SRTT, o.MinRTT, time.Millisecond)
	least := bwMinPackets / rtt.Seconds()
	return max(bwGains[m.phase]*m.btlBw, least)
}

// longMax is the most delivered in any round of the last 10 s.
func (m *bwModel) longMax() float64 {
	var b float64
	for _, r := range m.rounds {
		b = max(b, r)
	}
	return b
}
