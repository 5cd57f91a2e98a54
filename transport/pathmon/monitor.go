// Package pathmon is what braid knows about each connection of a path
// and how fast it sends on it: the monitor (probe RTTs, loss, delivery,
// and a state machine for up, suspect and down) and the pacer (a
// nominal rate, or a bottleneck rate it measures). Both are pure of I/O:
// transport feeds them samples and reads them.
package pathmon

import (
	"slices"
	"sync"
	"time"
)

// The path monitor: what braid knows about each connection of a path,
// from its own probes (RTT, jitter, silence) and from quic-go's counters
// (loss, delivery). transport's prober goroutine feeds it every probe
// interval; transport's Path.Stats reads it.

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

// Machine decides a connection's state from what was observed. It is
// a pure step function so it can be table-tested: degrade fast (suspect
// after one probe interval more than a probe's round trip, down after
// max(DownAfter, 3 SRTT + 100 ms) of silence), recover slowly (UpAfter of
// answered probes before carrying data again).
type Machine struct {
	State     State
	Suspect   bool          // silent for longer than usual: no new shards
	lossy     bool          // up, but losing more than lossyAbove
	goodSince time.Duration // when a down connection started answering again
}

// Observation is one probe tick's input.
type Observation struct {
	Now, Silence, SRTT           time.Duration
	Interval, DownAfter, UpAfter time.Duration
	Loss                         float64
}

// lossyAbove is the loss rate from which a path counts as degraded.
const lossyAbove = 0.05

// step advances the machine and reports whether whether the connection's
// usability (up and not suspect) changed, and whether it went down.
func (m *Machine) step(o Observation) (usableChanged, wentDown bool) {
	wasUsable := m.usable()
	limit := max(o.DownAfter, 3*o.SRTT+100*time.Millisecond)
	switch m.State {
	case StateUp, StateDegraded:
		if o.Silence > limit {
			m.State, m.Suspect, m.goodSince = StateDown, false, 0
			return wasUsable, true
		}
		m.Suspect = o.Silence > max(2*o.Interval, o.SRTT+o.Interval)+o.Interval/2
		m.lossy = o.Loss > lossyAbove
		m.State = StateUp
		if m.Suspect || m.lossy {
			m.State = StateDegraded
		}
	case StateDown:
		if o.Silence > 2*o.Interval+o.SRTT {
			m.goodSince = 0
			break
		}
		if m.goodSince == 0 {
			m.goodSince = max(o.Now, 1)
		}
		if o.Now-m.goodSince >= o.UpAfter {
			m.State, m.Suspect, m.goodSince = StateUp, false, 0
		}
	}
	return wasUsable != m.usable(), false
}

func (m *Machine) usable() bool { return m.State != StateDown && !m.Suspect }

// RedialDue reports whether a connection has been down for after past the
// silence that made it down, and so is closed: the client dials a fresh
// one at once (quic-go's own retransmission timer, backed off through an
// outage, may take seconds to try again, and a concentrator that dropped
// or forgot the connection never answers it), the concentrator frees the
// slot of one its client has given up on.
func RedialDue(o Observation, after time.Duration) bool {
	return o.Silence > max(o.DownAfter, 3*o.SRTT+100*time.Millisecond)+after
}

// Monitor holds one connection's measurements.
type Monitor struct {
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
	sm     Machine
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

// OnPong records an answered probe: its round trip and the bytes the peer
// has received on the connection so far. The peer's count is its own
// claim and the delivery rate paces the path: it is clamped to sent, what
// quic-go has sent on the connection by now.
func (m *Monitor) OnPong(now, rtt time.Duration, received, sent uint64) {
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
func (m *Monitor) onRTT(rtt time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addRTT(rtt)
}

func (m *Monitor) addRTT(rtt time.Duration) {
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

// OnTick records quic-go's counters and derives loss and delivery rates
// over the window the ring covers.
func (m *Monitor) OnTick(now time.Duration, sent, lost, bytesSent, bytesLost, cwnd uint64) {
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

// Step advances the connection's state machine by one probe tick, with
// the loss the monitor measured, and returns what the machine's Step did
// and the machine after it.
func (m *Monitor) Step(o Observation) (usableChanged, wentDown bool, sm Machine) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o.Loss = m.loss
	usableChanged, wentDown = m.sm.step(o)
	return usableChanged, wentDown, m.sm
}

// State returns the state the connection's machine is in (suspect
// shows as up or degraded, by its loss: Snapshot says degraded).
func (m *Monitor) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sm.State
}

// ConnStats is a snapshot of one connection's monitor.
type ConnStats struct {
	State                     State
	SRTT, MinRTT, P99, Jitter time.Duration
	Loss, Delivery, Current   float64
	Cwnd, InFlight            uint64
	// Why the state: Suspect (silent for longer than usual) and Lossy
	// (losing more than 5%) make an up connection degraded; GoodSince is
	// when a down one began answering again (0: it does not), for its
	// hold-down.
	Suspect, Lossy bool
	GoodSince      time.Duration
}

func (m *Monitor) Snapshot() ConnStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := ConnStats{State: m.sm.State, SRTT: m.srtt, MinRTT: m.minRTT, Jitter: m.jitter,
		Loss: m.loss, Delivery: m.deliver, Current: m.current, Cwnd: m.cwnd,
		Suspect: m.sm.Suspect, Lossy: m.sm.lossy && m.sm.State != StateDown, GoodSince: m.sm.goodSince}
	if m.peerRecv > 0 && m.sentBytes > m.peerRecv+m.lostBytes {
		s.InFlight = m.sentBytes - m.peerRecv - m.lostBytes
	}
	if m.sm.Suspect && s.State == StateUp {
		s.State = StateDegraded
	}
	n := min(m.nrtt, len(m.rtts))
	if n > 0 {
		r := slices.Clone(m.rtts[:n])
		slices.Sort(r)
		s.P99 = r[min(n-1, n*99/100)]
	}
	return s
}
