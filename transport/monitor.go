package transport

import (
	"slices"
	"sync"
	"time"
)

// The path monitor: what braid knows about each connection of a path,
// from its own probes (RTT, jitter, silence) and from quic-go's counters
// (loss, delivery). The prober goroutine feeds it every probe interval;
// Path.Stats reads it.

// State is what a path (or connection) is fit for.
type State uint8

// Path states. Degraded still carries data when the cause is loss or
// delay; a silent (suspect) connection carries none until it speaks.
const (
	StateUp State = iota
	StateDegraded
	StateDown
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDegraded:
		return "degraded"
	}
	return "down"
}

// stateMachine decides a connection's state from what was observed. It is
// a pure step function so it can be table-tested: degrade fast (suspect
// after one probe interval more than a probe's round trip, down after
// max(DownAfter, 3 SRTT + 100 ms) of silence), recover slowly (UpAfter of
// answered probes before carrying data again).
type stateMachine struct {
	state     State
	suspect   bool          // silent for longer than usual: no new shards
	lossy     bool          // up, but losing more than lossyAbove
	goodSince time.Duration // when a down connection started answering again
}

// observation is one probe tick's input.
type observation struct {
	now, silence, srtt           time.Duration
	interval, downAfter, upAfter time.Duration
	loss                         float64
}

// lossyAbove is the loss rate from which a path counts as degraded.
const lossyAbove = 0.05

// step advances the machine and reports whether whether the connection's
// usability (up and not suspect) changed, and whether it went down.
func (m *stateMachine) step(o observation) (usableChanged, wentDown bool) {
	wasUsable := m.usable()
	limit := max(o.downAfter, 3*o.srtt+100*time.Millisecond)
	switch m.state {
	case StateUp, StateDegraded:
		if o.silence > limit {
			m.state, m.suspect, m.goodSince = StateDown, false, 0
			return wasUsable, true
		}
		m.suspect = o.silence > max(2*o.interval, o.srtt+o.interval)+o.interval/2
		m.lossy = o.loss > lossyAbove
		m.state = StateUp
		if m.suspect || m.lossy {
			m.state = StateDegraded
		}
	case StateDown:
		if o.silence > 2*o.interval+o.srtt {
			m.goodSince = 0
			break
		}
		if m.goodSince == 0 {
			m.goodSince = max(o.now, 1)
		}
		if o.now-m.goodSince >= o.upAfter {
			m.state, m.suspect, m.goodSince = StateUp, false, 0
		}
	}
	return wasUsable != m.usable(), false
}

func (m *stateMachine) usable() bool { return m.state != StateDown && !m.suspect }

// redialDue reports whether a connection has been down for after past the
// silence that made it down, and so is closed: the client dials a fresh
// one at once (quic-go's own retransmission timer, backed off through an
// outage, may take seconds to try again, and a concentrator that dropped
// or forgot the connection never answers it), the concentrator frees the
// slot of one its client has given up on.
func redialDue(o observation, after time.Duration) bool {
	return o.silence > max(o.downAfter, 3*o.srtt+100*time.Millisecond)+after
}

// monitor holds one connection's measurements.
type monitor struct {
	mu     sync.Mutex
	rtts   [128]time.Duration // recent probe RTTs, a ring
	nrtt   int
	srtt   time.Duration // smoothed probe RTT (1/8 gain, as RFC 6298)
	jitter time.Duration // RFC 3550 interarrival-style jitter of RTTs
	last   time.Duration
	minRTT time.Duration
	hist   [41]sample // per-tick counter snapshots, a ring: 2 s at 50 ms
	nhist  int
	loss   float64
	cwnd   uint64
	sm     stateMachine
	// Delivery, from the peer's count of bytes received, echoed in PONG.
	recv    [64]recvSample // a ring, one per answered probe
	nrecv   int
	deliver float64 // bytes/s, max over the last 2 s of 250 ms spans
	current float64 // bytes/s over the latest 250 ms span
	// In flight: what quic-go sent, less what the peer had received half
	// a round trip ago and what was declared lost.
	peerRecv, sentBytes, lostBytes uint64
}

type recvSample struct {
	at    time.Duration
	bytes uint64
}

// deliverySpan is the shortest span a delivery rate is measured over:
// long enough to smooth the arrival jitter of the probes that carry it.
const deliverySpan = 250 * time.Millisecond

type sample struct {
	at         time.Duration
	sent, lost uint64 // packets
}

// onPong records an answered probe: its round trip and the bytes the peer
// has received on the connection so far. The peer's count is its own
// claim and the delivery rate paces the path: it is clamped to sent, what
// quic-go has sent on the connection by now.
func (m *monitor) onPong(now, rtt time.Duration, received, sent uint64) {
	received = min(received, sent)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addRTT(rtt)
	m.peerRecv = received
	m.recv[m.nrecv%len(m.recv)] = recvSample{at: now, bytes: received}
	m.nrecv++
	// For every sample of the last 2 s, the rate since the latest sample
	// at least a span older; the best of them is the delivery rate.
	n := min(m.nrecv, len(m.recv))
	at := func(i int) recvSample { return m.recv[(m.nrecv-n+i)%len(m.recv)] }
	m.deliver, m.current = 0, 0
	j := 0
	for i := 1; i < n; i++ {
		b := at(i)
		if now-b.at > 2*time.Second {
			continue
		}
		for j+1 < i && b.at-at(j+1).at >= deliverySpan {
			j++
		}
		a := at(j)
		if b.at-a.at < deliverySpan || b.bytes < a.bytes {
			continue
		}
		r := float64(b.bytes-a.bytes) / (b.at - a.at).Seconds()
		m.deliver = max(m.deliver, r)
		if i == n-1 {
			m.current = r
		}
	}
}

// onRTT records a probe's round trip.
func (m *monitor) onRTT(rtt time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addRTT(rtt)
}

func (m *monitor) addRTT(rtt time.Duration) {
	m.rtts[m.nrtt%len(m.rtts)] = rtt
	m.nrtt++
	if m.srtt == 0 {
		m.srtt, m.last, m.minRTT = rtt, rtt, rtt
		return
	}
	m.srtt += (rtt - m.srtt) / 8
	d := rtt - m.last
	if d < 0 {
		d = -d
	}
	m.jitter += (d - m.jitter) / 16
	m.last = rtt
	m.minRTT = min(m.minRTT, rtt)
}

// onTick records quic-go's counters and derives loss and delivery rates
// over the window the ring covers.
func (m *monitor) onTick(now time.Duration, sent, lost, bytesSent, bytesLost, cwnd uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cwnd = cwnd
	m.sentBytes, m.lostBytes = bytesSent, bytesLost
	cur := sample{at: now, sent: sent, lost: lost}
	m.hist[m.nhist%len(m.hist)] = cur
	m.nhist++
	n := min(m.nhist, len(m.hist))
	oldest := m.hist[(m.nhist-n)%len(m.hist)]
	if ds := int64(cur.sent) - int64(oldest.sent); ds > 0 {
		dl := max(int64(cur.lost)-int64(oldest.lost), 0)
		m.loss = min(float64(dl)/float64(ds), 1)
	}
}

// connStats is a snapshot of one connection's monitor.
type connStats struct {
	state                     State
	srtt, minRTT, p99, jitter time.Duration
	loss, delivery, current   float64
	cwnd, inFlight            uint64
}

func (m *monitor) snapshot() connStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := connStats{state: m.sm.state, srtt: m.srtt, minRTT: m.minRTT, jitter: m.jitter,
		loss: m.loss, delivery: m.deliver, current: m.current, cwnd: m.cwnd}
	if m.peerRecv > 0 && m.sentBytes > m.peerRecv+m.lostBytes {
		s.inFlight = m.sentBytes - m.peerRecv - m.lostBytes
	}
	if m.sm.suspect && s.state == StateUp {
		s.state = StateDegraded
	}
	n := min(m.nrtt, len(m.rtts))
	if n > 0 {
		r := slices.Clone(m.rtts[:n])
		slices.Sort(r)
		s.p99 = r[min(n-1, n*99/100)]
	}
	return s
}

// PathStats is what braid knows about a path now.
type PathStats struct {
	Name     string
	Medium   uint8
	Operator uint8
	PriceGB  float64
	State    State
	Conns    int // live connections in the pool
	// RTT is the smoothed round trip of braid's probes; MinRTT the least
	// seen; RTTP99 the 99th percentile of the last 128 probes; Jitter the
	// mean change between consecutive probes.
	RTT, MinRTT, RTTP99, Jitter time.Duration
	// Loss is the fraction of packets quic-go declared lost over the last
	// two seconds: what packet coding did not repair.
	Loss float64
	// Packet coding (docs/PROTOCOL.md), over the connections that code
	// (Coded of them): LinkLoss is the fraction of our packets the peer
	// last measured lost before repair, weighted by packets sent;
	// DataPackets and ParityPackets count what they sent, ParityBytes the
	// parity's bytes; Expected counts the peer's packets their sequence
	// numbers said to expect, Received those that arrived, Repaired those
	// we rebuilt. The counts restart with a connection (or its peer's new
	// address).
	Coded                                             int
	LinkLoss                                          float64
	DataPackets, ParityPackets, ParityBytes, Repaired uint64
	Expected, Received                                uint64
	// ParityHeld says why a coded connection sends no parity now though
	// its peer measures loss: "queue" (quic-go's RTT shows a standing
	// queue) or "full" (the path has more to send than it carries: parity
	// would take the data's room, and the pool carries the loss); "" when
	// none holds it back.
	ParityHeld string
	// DeliveryBps is the most the path delivered in any 250 ms of the last
	// two seconds, in bits/s, as counted by the receiving peer (QUIC
	// payload); SpareBps what it delivered less than that recently (an
	// estimate of room left).
	DeliveryBps, SpareBps float64
	// PaceBps is what the path's shards and parity are paced to, in
	// bits/s: rate= less its headroom, or the measured pace (pace.go's
	// bwModel); 0 while the path is not paced (start-up, a LAN, or
	// Config.NoMeasuredPacing).
	PaceBps float64
	// CwndBytes sums the connections' congestion windows; InFlightBytes
	// estimates the bytes sent and not yet received (sent, less what the
	// peer reported received and what was lost).
	CwndBytes, InFlightBytes uint64
	// BytesSent and BytesReceived count shard bytes, headers included.
	BytesSent, BytesReceived uint64
}

// Stats returns a snapshot of the path: the best of its connections for
// state and delay, sums for rates.
func (p *Path) Stats() PathStats {
	st := PathStats{Name: p.info.Name, Medium: p.info.Medium, Operator: p.info.Operator, PriceGB: p.info.PriceGB,
		State: StateDown, BytesSent: p.BytesSent.Load(), BytesReceived: p.BytesReceived.Load()}
	p.mu.Lock()
	conns := append([]*pconn(nil), p.conns...)
	p.mu.Unlock()
	var lossW, weight, linkW, linkN float64
	var current float64
	for _, c := range conns {
		cs := c.mon.snapshot()
		if cs.state < st.State || (cs.state == st.State && (st.RTT == 0 || cs.srtt < st.RTT)) {
			st.State, st.RTT, st.MinRTT, st.RTTP99, st.Jitter = cs.state, cs.srtt, cs.minRTT, cs.p99, cs.jitter
		}
		if cs.state != StateDown {
			st.Conns++
		}
		st.DeliveryBps += cs.delivery * 8
		current += cs.current * 8
		st.CwndBytes += cs.cwnd
		st.InFlightBytes += cs.inFlight
		w := max(cs.delivery, 1)
		lossW += cs.loss * w
		weight += w
		if ps, ok := c.coding(); ok {
			st.Coded++
			st.DataPackets += ps.DataSent
			st.ParityPackets += ps.ParitySent
			st.ParityBytes += ps.ParityBytes
			st.Repaired += ps.Repaired
			st.Expected += ps.Expected
			st.Received += ps.Received
			switch {
			case ps.LossBefore <= 0:
			case ps.Queued:
				st.ParityHeld = "queue"
			case ps.Full && st.ParityHeld == "":
				st.ParityHeld = "full"
			}
			linkW += ps.LossBefore * float64(ps.DataSent)
			linkN += float64(ps.DataSent)
		}
	}
	if weight > 0 {
		st.Loss = lossW / weight
	}
	if linkN > 0 {
		st.LinkLoss = linkW / linkN
	}
	if st.RTT == 0 && st.State != StateDown {
		st.RTT = p.SRTT() // no probe answered yet: quic-go's handshake RTT
		st.MinRTT, st.RTTP99 = st.RTT, st.RTT
	}
	st.SpareBps = max(st.DeliveryBps-current, 0)
	st.PaceBps = p.pace.current() * 8
	return st
}
