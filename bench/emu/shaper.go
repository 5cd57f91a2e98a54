// Package emu is a user-space network path emulator for tests and
// benchmarks. The kernel on the test machines has no netem, so braid's
// multipath tests put a UDP relay (Relay) on loopback between a QUIC client
// and server, one relay per emulated path. Each direction of a relay passes
// through a Shaper, which is a pure, socket-free model of a bottleneck link
// (rate, drop-tail queue, delay, jitter, loss, reordering, duplication) that
// can also be driven directly with a virtual clock.
package emu

import (
	"math/rand/v2"
	"time"
)

// Link describes one direction of an emulated path.
type Link struct {
	// RateBps is the bottleneck rate in bits/s; 0 means unlimited.
	RateBps float64
	// Delay is the one-way propagation delay.
	Delay time.Duration
	// Jitter adds a uniform extra delay in [0, Jitter). Jitter never
	// reorders packets: a packet is never delivered before the one admitted
	// before it. Only Reorder reorders.
	Jitter time.Duration
	// Loss is the random (Bernoulli) loss probability, 0..1.
	Loss float64
	// GE optionally adds bursty Gilbert-Elliott loss on top of Loss.
	GE *GilbertElliott
	// Reorder is the probability that a packet is held back by an extra
	// Delay/2, letting later packets overtake it. With Delay 0 it has no
	// effect.
	Reorder float64
	// Duplicate is the probability that a packet is delivered twice. The
	// copy is delivered at the same time and does not use bottleneck
	// capacity.
	Duplicate float64
	// QueueBytes is the drop-tail queue limit in bytes in front of the rate
	// limiter; 0 means 100 ms worth of RateBps, at least 64 KiB. It is
	// ignored when RateBps is 0 (no bottleneck, no queue).
	QueueBytes int
	// MTU drops packets larger than MTU bytes; 0 means no cap.
	MTU int
}

// minDefaultQueue is the floor of the default queue, so that slow links can
// still absorb a burst of a few dozen full-size packets.
const minDefaultQueue = 64 << 10

// QueueLimit returns the effective drop-tail queue limit in bytes (see
// QueueBytes), or 0 when the link has no rate limit and hence no queue.
func (l Link) QueueLimit() int {
	if l.RateBps <= 0 {
		return 0
	}
	if l.QueueBytes > 0 {
		return l.QueueBytes
	}
	return max(minDefaultQueue, int(l.RateBps*0.1/8))
}

// GilbertElliott is the two-state burst loss model. The channel is either in
// the good or the bad state; each packet is lost with the loss probability of
// the current state, after which the state changes with probability PGoodBad
// (from good) or PBadGood (from bad).
type GilbertElliott struct {
	PGoodBad float64 // probability of moving good -> bad after a packet
	PBadGood float64 // probability of moving bad -> good after a packet
	LossGood float64 // loss probability in the good state
	LossBad  float64 // loss probability in the bad state
}

// LossRate returns the long-run average loss probability of the model, i.e.
// the state loss probabilities weighted by the stationary state
// distribution.
func (g GilbertElliott) LossRate() float64 {
	t := g.PGoodBad + g.PBadGood
	if t == 0 {
		// The chain never moves and starts in the good state.
		return g.LossGood
	}
	bad := g.PGoodBad / t
	return (1-bad)*g.LossGood + bad*g.LossBad
}

// DirStats counts packets of one direction of a Relay, or of one Shaper.
// Duplicated copies count as extra delivered packets.
type DirStats struct {
	PacketsIn      uint64 // packets that arrived
	BytesIn        uint64 // bytes that arrived
	Admitted       uint64 // packets the Shaper accepted for delivery
	Delivered      uint64 // packets written to the destination (Relay only)
	DeliveredBytes uint64 // bytes written to the destination (Relay only)
	Duplicated     uint64 // extra copies scheduled by Link.Duplicate
	DroppedLoss    uint64 // dropped by random or Gilbert-Elliott loss
	DroppedQueue   uint64 // dropped because the bottleneck queue was full
	DroppedMTU     uint64 // dropped for exceeding Link.MTU
	DroppedBroken  uint64 // dropped while the relay was broken (Relay only)
	DroppedOther   uint64 // client table full, write errors, relay closing (Relay only)
}

// Shaper decides, for each packet, whether it is dropped and when it is
// delivered. It keeps no packets and reads no clock, so it can be driven by a
// virtual clock. Not safe for concurrent use.
type Shaper struct {
	link Link
	ge   GilbertElliott // private copy so callers may reuse their *GilbertElliott
	rng  *rand.Rand

	geBad bool
	// busyUntil is when the bottleneck finishes serializing the last
	// admitted packet; the backlog at time t is busyUntil-t worth of bytes.
	busyUntil time.Time
	// lastDeliver is the latest in-order delivery time; clamping to it keeps
	// jitter from reordering packets.
	lastDeliver time.Time

	stats DirStats
}

// NewShaper returns a Shaper for l whose random decisions are determined by
// seed: two Shapers with the same Link and seed fed the same packets make the
// same decisions.
func NewShaper(l Link, seed int64) *Shaper {
	s := &Shaper{rng: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))}
	s.SetLink(l)
	return s
}

// SetLink changes the link parameters. Queue backlog, Gilbert-Elliott state
// and the random sequence carry over, as they would on a real path whose
// conditions change.
func (s *Shaper) SetLink(l Link) {
	if l.GE != nil {
		s.ge = *l.GE
		l.GE = &s.ge
	}
	s.link = l
}

// Link returns the current link parameters.
func (s *Shaper) Link() Link {
	l := s.link
	if l.GE != nil {
		ge := *l.GE
		l.GE = &ge
	}
	return l
}

// Stats returns the Shaper's counters (the Relay-only fields stay zero).
func (s *Shaper) Stats() DirStats { return s.stats }

// Admit is called when a packet of size bytes arrives at time now. It returns
// the delivery time, or ok=false if the packet is dropped (with the reason
// counted). A packet is serialized at RateBps after the previous one leaves
// the bottleneck (drop-tail when the backlog exceeds QueueBytes), then
// delayed by Delay+jitter. dup reports that the packet should be delivered
// twice. Calls must have non-decreasing now.
func (s *Shaper) Admit(now time.Time, size int) (deliverAt time.Time, dup bool, ok bool) {
	l := &s.link
	s.stats.PacketsIn++
	s.stats.BytesIn += uint64(size)

	if l.MTU > 0 && size > l.MTU {
		s.stats.DroppedMTU++
		return time.Time{}, false, false
	}
	lost := l.Loss > 0 && s.rng.Float64() < l.Loss
	// The Gilbert-Elliott chain advances on every packet, even one already
	// lost at random, so that its burst statistics do not depend on Loss.
	if l.GE != nil && s.geLost() {
		lost = true
	}
	if lost {
		s.stats.DroppedLoss++
		return time.Time{}, false, false
	}

	depart := now
	if l.RateBps > 0 {
		start := now
		if s.busyUntil.After(now) {
			backlog := s.busyUntil.Sub(now).Seconds() * l.RateBps / 8
			if backlog+float64(size) > float64(l.QueueLimit()) {
				s.stats.DroppedQueue++
				return time.Time{}, false, false
			}
			start = s.busyUntil
		}
		s.busyUntil = start.Add(time.Duration(float64(size)*8e9/l.RateBps + 0.5))
		depart = s.busyUntil
	}

	deliverAt = depart.Add(l.Delay)
	if l.Jitter > 0 {
		deliverAt = deliverAt.Add(time.Duration(s.rng.Int64N(int64(l.Jitter))))
	}
	if l.Reorder > 0 && s.rng.Float64() < l.Reorder {
		// Held back packets do not move lastDeliver, so the packets after
		// them may overtake them.
		deliverAt = deliverAt.Add(l.Delay / 2)
	} else {
		if deliverAt.Before(s.lastDeliver) {
			deliverAt = s.lastDeliver
		}
		s.lastDeliver = deliverAt
	}

	if l.Duplicate > 0 && s.rng.Float64() < l.Duplicate {
		dup = true
		s.stats.Duplicated++
	}
	s.stats.Admitted++
	return deliverAt, dup, true
}

// geLost decides the loss of one packet in the current Gilbert-Elliott state
// and then advances the chain.
func (s *Shaper) geLost() bool {
	g := &s.ge
	p := g.LossGood
	if s.geBad {
		p = g.LossBad
	}
	lost := p > 0 && s.rng.Float64() < p
	if s.geBad {
		if s.rng.Float64() < g.PBadGood {
			s.geBad = false
		}
	} else if s.rng.Float64() < g.PGoodBad {
		s.geBad = true
	}
	return lost
}
