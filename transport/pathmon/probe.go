package pathmon

import (
	"sync"
	"time"
)

// Idle probing. Every connection is probed every probe interval (50 ms by
// default) so that a dead path is found within a few round trips. Each
// probe is a PING and a PONG in packets of their own and the peer's
// acknowledgements of them: about 5 kB/s per connection, both ways, on
// the wire. On a path that costs money for each byte (a price per GB, or
// a metered device) and carries no shards that is the whole bill, so
// there a connection is probed every SlowProbeInterval once the path has
// been idle for IdleAfter, and the state machine is given limits that
// fit the slower probes: the connection is down after SlowDownAfter of
// silence, which two unanswered probes in a row make. A shard sent or
// received on the connection makes its probing fast again at once; the
// slow limits hold until the connection is heard from after that, so the
// silence of the slow probing does not read as an outage.

const (
	// SlowProbeInterval is how often a connection is probed while its
	// path costs money and carries nothing: 20 times fewer probes than the
	// default 50 ms.
	SlowProbeInterval = time.Second
	// IdleAfter is how long a path carries no shard, either way, before
	// its probing slows.
	IdleAfter = time.Second
	// SlowDownAfter is the silence after which a slowly probed connection
	// counts as down (or 3 SRTT + 100 ms, when that is more, as at full
	// rate). Ticks a second apart find that silence at most a second
	// late: a dead idle path is down within 3.5 s of its last answer
	// when its RTT is under 800 ms, within 3 s under 500 ms.
	SlowDownAfter = 5 * SlowProbeInterval / 2
)

// Prober decides, at each probe tick of a connection, how long until the
// next probe and what limits the state machine takes. It is pure: the
// caller passes the time and the counters in.
type Prober struct {
	started   bool
	lastBytes uint64        // the path's shard bytes at the last tick
	busyAt    time.Duration // the last tick that found the path carrying shards
	slow      bool
	wokeAt    time.Duration // when slow probing ended, until the connection is heard from
}

// ProbeTick is what a connection's prober knows at a tick.
type ProbeTick struct {
	Now time.Duration
	// PathBytes counts the shard bytes the path has sent and received;
	// Queued says shards wait on the path.
	PathBytes uint64
	Queued    bool
	// Costly: the path has a price, or the device pays for its bytes.
	Costly bool
	// Usable: the connection is up and not suspect. Only a usable
	// connection is probed slowly: one that is down is probed at the
	// full rate, to see it come back.
	Usable bool
	// LastHeard is when the connection last heard from its peer.
	LastHeard time.Duration
}

// ProbeStep is a tick's decision.
type ProbeStep struct {
	// Next is how long until the next probe.
	Next time.Duration
	// Interval and DownAfter are the limits for this tick's Observation.
	Interval, DownAfter time.Duration
	// Slow reports slow probing; IdleFor how long the path has carried no
	// shard (0 when it carries some now).
	Slow    bool
	IdleFor time.Duration
}

// Step returns the decision for tick t, given the configured probe
// interval and down limit.
func (p *Prober) Step(t ProbeTick, interval, downAfter time.Duration) ProbeStep {
	busy := t.Queued || t.PathBytes != p.lastBytes || !p.started
	p.started, p.lastBytes = true, t.PathBytes
	if busy {
		p.busyAt = t.Now
	}
	idle := t.Now - p.busyAt
	slow := t.Costly && t.Usable && !busy && idle >= IdleAfter && SlowProbeInterval > interval
	if p.slow && !slow {
		p.wokeAt = max(t.Now, 1)
	}
	p.slow = slow
	if p.wokeAt > 0 && t.LastHeard >= p.wokeAt {
		p.wokeAt = 0
	}
	st := ProbeStep{Next: interval, Interval: interval, DownAfter: downAfter, Slow: slow, IdleFor: idle}
	if slow {
		st.Next = SlowProbeInterval
	}
	if slow || p.wokeAt > 0 {
		st.Interval, st.DownAfter = SlowProbeInterval, max(downAfter, SlowDownAfter)
	}
	return st
}

// Meter measures a path's current rates each way from its byte counters,
// sampled at the probe ticks. It is safe for concurrent use.
type Meter struct {
	mu  sync.Mutex
	buf [24]meterSample // a ring, at least meterSpacing apart
	n   int
}

type meterSample struct {
	at         time.Duration
	sent, recv uint64
}

// meterSpacing is the least time between kept samples, and MeterWindow
// the span a rate is measured over.
const (
	meterSpacing = 100 * time.Millisecond
	// MeterWindow is the span the current rates are measured over.
	MeterWindow = time.Second
)

// Sample records the counters at now.
func (m *Meter) Sample(now time.Duration, sent, recv uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n > 0 && now-m.buf[(m.n-1)%len(m.buf)].at < meterSpacing {
		return
	}
	m.buf[m.n%len(m.buf)] = meterSample{at: now, sent: sent, recv: recv}
	m.n++
}

// Rates returns bytes/s sent and received over about the last
// MeterWindow: from the newest sample at least that old (or the oldest
// kept) to the counters now. Without a sample older than a tenth of the
// window they are zero.
func (m *Meter) Rates(now time.Duration, sent, recv uint64) (sendRate, recvRate float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := min(m.n, len(m.buf))
	if k == 0 {
		return 0, 0
	}
	from := m.buf[(m.n-k)%len(m.buf)] // the oldest
	for i := m.n - 1; i >= m.n-k; i-- {
		if s := m.buf[i%len(m.buf)]; now-s.at >= MeterWindow {
			from = s
			break
		}
	}
	dt := now - from.at
	if dt < MeterWindow/10 {
		return 0, 0
	}
	if sent >= from.sent {
		sendRate = float64(sent-from.sent) / dt.Seconds()
	}
	if recv >= from.recv {
		recvRate = float64(recv-from.recv) / dt.Seconds()
	}
	return sendRate, recvRate
}
