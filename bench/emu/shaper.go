// Package emu is a user-space network path emulator for tests and
// benchmarks. The kernel on the test machines has no netem, so braid's
// multipath tests put a UDP relay (Relay) on loopback between a QUIC client
// and server, one relay per emulated path. Each direction of a relay passes
// through a Shaper, which is a pure, socket-free model of a bottleneck link
// (rate, drop-tail queue, delay, jitter, loss, reordering, duplication) that
// can also be driven directly with a virtual clock.
//
// A link's conditions may change over time: a Mahimahi capacity Trace
// replays the capacity a real cellular link had, Outages cut the link for
// intervals, and a Schedule changes rate, delay and loss at given times. All
// three count time from the Shaper's start (Shaper.Start), so that they are
// as reproducible as the rest of the model.
package emu

import (
	"math/rand/v2"
	"slices"
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
	// limiter; 0 means 100 ms worth of RateBps (of the Trace's mean rate
	// with a Trace), at least 64 KiB. It is ignored when RateBps is 0 and
	// there is no Trace (no bottleneck, no queue).
	QueueBytes int
	// MTU drops packets larger than MTU bytes; 0 means no cap.
	MTU int

	// Trace, when set, replaces RateBps: the bottleneck delivers at the
	// trace's opportunities, each carrying up to TraceMTU bytes, with
	// Mahimahi's semantics: packets leave the drop-tail queue in order, a
	// packet takes its bytes from the current opportunity and, if it does
	// not fit, from the following ones, and the bytes of an opportunity
	// that finds the queue empty are lost (a lone packet of up to 1500
	// bytes uses one opportunity; back-to-back smaller packets share one).
	// Delay, Jitter and losses then apply as for a RateBps link.
	Trace *Trace
	// TraceOffset is the point of the Trace that coincides with the
	// Shaper's start, so that paths replaying one trace can be out of
	// phase. It is taken modulo the trace's Period.
	TraceOffset time.Duration
	// Outages are intervals, relative to the Shaper's start, during which
	// the link drops every packet (see Outage), counted as DroppedOutage.
	Outages []Outage
	// Schedule, when set, changes the rate, delay and loss over time,
	// relative to the Shaper's start; the fields above are the values
	// before its first row and for the fields its rows leave unchanged.
	Schedule *Schedule
}

// minDefaultQueue is the floor of the default queue, so that slow links can
// still absorb a burst of a few dozen full-size packets.
const minDefaultQueue = 64 << 10

// QueueLimit returns the effective drop-tail queue limit in bytes (see
// QueueBytes), or 0 when the link has no rate limit and hence no queue. It
// ignores the Schedule: a Shaper sizes a default queue for the rate in
// effect.
func (l Link) QueueLimit() int {
	return l.queueLimit(l.RateBps)
}

// queueLimit is QueueLimit for the rate rate in effect.
func (l Link) queueLimit(rate float64) int {
	if l.Trace != nil {
		rate = l.Trace.MeanRateBps()
	}
	if rate <= 0 {
		return 0
	}
	if l.QueueBytes > 0 {
		return l.QueueBytes
	}
	return max(minDefaultQueue, int(rate*0.1/8))
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
	Delivered      uint64 // packets written to the destination (Relay and Pipe)
	DeliveredBytes uint64 // bytes written to the destination (Relay and Pipe)
	Duplicated     uint64 // extra copies scheduled by Link.Duplicate
	DroppedLoss    uint64 // dropped by random or Gilbert-Elliott loss
	DroppedQueue   uint64 // dropped because the bottleneck queue was full
	DroppedMTU     uint64 // dropped for exceeding Link.MTU
	DroppedBroken  uint64 // dropped while the relay was broken (Relay and Pipe)
	DroppedOutage  uint64 // dropped by one of Link.Outages
	DroppedOther   uint64 // client table full, write errors, relay closing (Relay and Pipe)
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

	// start is the origin of trace time, Outages and Schedule.
	start   time.Time
	started bool
	// With a Trace, cur is the last delivery opportunity that carried
	// bytes (an index for Trace.at; -1 for none yet) and curLeft what is
	// left of it for the packet that arrives before it is used.
	cur     int64
	curLeft int
	// schedRows is how many Schedule rows are in effect.
	schedRows int

	stats DirStats
}

// NewShaper returns a Shaper for l whose random decisions are determined by
// seed: two Shapers with the same Link and seed fed the same packets make the
// same decisions.
func NewShaper(l Link, seed int64) *Shaper {
	s := &Shaper{rng: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)), cur: -1}
	s.SetLink(l)
	return s
}

// Start sets the Shaper's start: the instant at which the Trace is at
// TraceOffset and from which Outages and Schedule rows count. Without a
// call, the first Admit's time is the start. Calling Start again restarts
// that timeline (the trace from TraceOffset, the schedule before its first
// row); the queue backlog carries over. Packets that arrive before the
// start wait for it on a Trace link.
func (s *Shaper) Start(t time.Time) {
	s.start, s.started = t, true
	s.cur, s.curLeft = -1, 0
	s.schedRows = 0
}

// SetLink changes the link parameters. Queue backlog, Gilbert-Elliott state,
// the random sequence and the start carry over, as they would on a real path
// whose conditions change. The point of a Trace follows from the time since
// the start, so a new Trace or TraceOffset plays from the point it has at the
// current time, and new Outages and Schedule rows count from the start too.
func (s *Shaper) SetLink(l Link) {
	if l.GE != nil {
		s.ge = *l.GE
		l.GE = &s.ge
	}
	// Private copy, like GE, so that callers may reuse their slice.
	l.Outages = slices.Clone(l.Outages)
	if l.Trace != s.link.Trace || l.TraceOffset != s.link.TraceOffset {
		s.cur, s.curLeft = -1, 0
	}
	if l.Schedule != s.link.Schedule {
		s.schedRows = 0
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
	l.Outages = slices.Clone(l.Outages)
	return l
}

// Stats returns the Shaper's counters (the Relay-only fields stay zero).
func (s *Shaper) Stats() DirStats { return s.stats }

// Admit is called when a packet of size bytes arrives at time now. It returns
// the delivery time, or ok=false if the packet is dropped (with the reason
// counted). A packet waits in the drop-tail queue (QueueBytes) for the
// bottleneck, which serializes it at RateBps or carries it at the Trace's
// delivery opportunities, then is delayed by Delay+jitter. Outages and the
// Schedule rows in effect are those of now's time since the start. dup
// reports that the packet should be delivered twice. Calls must have
// non-decreasing now.
func (s *Shaper) Admit(now time.Time, size int) (deliverAt time.Time, dup bool, ok bool) {
	l := &s.link
	s.stats.PacketsIn++
	s.stats.BytesIn += uint64(size)
	if !s.started {
		s.Start(now)
	}
	rel := now.Sub(s.start)

	if s.inOutage(rel, rel) {
		s.stats.DroppedOutage++
		return time.Time{}, false, false
	}
	rate, delay, loss := s.conditions(rel)

	if l.MTU > 0 && size > l.MTU {
		s.stats.DroppedMTU++
		return time.Time{}, false, false
	}
	lost := loss > 0 && s.rng.Float64() < loss
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
	switch {
	case l.Trace != nil:
		var cur int64
		var left int
		depart, cur, left, ok = s.traceDepart(now, rel, size)
		if !ok {
			s.stats.DroppedQueue++
			return time.Time{}, false, false
		}
		// A packet still queued when an outage begins is flushed with the
		// queue, leaving the bottleneck state as if it never came.
		if s.inOutage(rel, depart.Sub(s.start)) {
			s.stats.DroppedOutage++
			return time.Time{}, false, false
		}
		s.cur, s.curLeft = cur, left
		s.busyUntil = depart
	case rate > 0:
		start := now
		if s.busyUntil.After(now) {
			backlog := s.busyUntil.Sub(now).Seconds() * rate / 8
			if backlog+float64(size) > float64(l.queueLimit(rate)) {
				s.stats.DroppedQueue++
				return time.Time{}, false, false
			}
			start = s.busyUntil
		}
		depart = start.Add(time.Duration(float64(size)*8e9/rate + 0.5))
		if s.inOutage(rel, depart.Sub(s.start)) {
			s.stats.DroppedOutage++
			return time.Time{}, false, false
		}
		s.busyUntil = depart
	}

	deliverAt = depart.Add(delay)
	if l.Jitter > 0 {
		deliverAt = deliverAt.Add(time.Duration(s.rng.Int64N(int64(l.Jitter))))
	}
	if l.Reorder > 0 && s.rng.Float64() < l.Reorder {
		// Held back packets do not move lastDeliver, so the packets after
		// them may overtake them.
		deliverAt = deliverAt.Add(delay / 2)
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

// conditions returns the rate, delay and loss in effect at rel after the
// start: the Link's, overridden by the Schedule rows whose time has come.
func (s *Shaper) conditions(rel time.Duration) (rate float64, delay time.Duration, loss float64) {
	l := &s.link
	rate, delay, loss = l.RateBps, l.Delay, l.Loss
	if l.Schedule == nil {
		return rate, delay, loss
	}
	rows := l.Schedule.rows
	for s.schedRows < len(rows) && rows[s.schedRows].at <= rel {
		s.schedRows++
	}
	if s.schedRows == 0 {
		return rate, delay, loss
	}
	r := &rows[s.schedRows-1]
	if r.set&setRate != 0 {
		rate = r.rate
	}
	if r.set&setDelay != 0 {
		delay = r.delay
	}
	if r.set&setLoss != 0 {
		loss = r.loss
	}
	return rate, delay, loss
}

// inOutage reports whether a packet that arrives at rel after the start and
// leaves the bottleneck at departRel falls to an outage: it arrives during
// one, or is still queued when one begins.
func (s *Shaper) inOutage(rel, departRel time.Duration) bool {
	for _, o := range s.link.Outages {
		if o.From < o.To && rel < o.To && departRel >= o.From {
			return true
		}
	}
	return false
}

// traceDepart computes when a packet of size bytes arriving at now (rel
// after the start) leaves a Trace bottleneck, without changing the state:
// it returns the departure and the new cur and curLeft, or ok=false when the
// queue has no room for it.
func (s *Shaper) traceDepart(now time.Time, rel time.Duration, size int) (depart time.Time, cur int64, left int, ok bool) {
	l := &s.link
	tr := l.Trace
	off := tr.offset(l.TraceOffset)
	// Trace time: the trace is at off at the start and packets that come
	// earlier wait for it.
	tnow := max(rel, 0) + off
	cur, left = s.cur, s.curLeft

	// The bytes queued are those of the opportunities from now up to cur,
	// which are all used, less what is left of cur. Opportunities at
	// exactly now have not gone yet: a packet arriving at an opportunity's
	// instant still catches it.
	if cur >= 0 && tr.at(cur) >= tnow {
		backlog := (cur-tr.firstAtOrAfter(tnow)+1)*TraceMTU - int64(left)
		if backlog+int64(size) > int64(l.queueLimit(0)) {
			return time.Time{}, 0, 0, false
		}
	}

	// A zero-length datagram still needs a byte of an opportunity to
	// leave.
	need := max(size, 1)
	if cur >= 0 && left > 0 && tr.at(cur) >= tnow {
		// The queue is not empty: the packet follows the previous one
		// into what is left of its last opportunity.
		take := min(left, need)
		need -= take
		left -= take
	}
	if need > 0 {
		// The first opportunity after the previous packet's, at or after
		// now, and never before the backlog left by an earlier rate
		// limit (after SetLink) has drained.
		from := tnow
		if s.busyUntil.After(now) {
			from = max(from, s.busyUntil.Sub(s.start)+off)
		}
		first := max(cur+1, tr.firstAtOrAfter(from))
		n := int64((need + TraceMTU - 1) / TraceMTU)
		cur = first + n - 1
		left = int(n*TraceMTU) - need
	}
	return s.start.Add(tr.at(cur) - off), cur, left, true
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
