package transport

import (
	"fmt"
	"time"

	"braid/transport/pathmon"
)

// PathStats is what braid knows about a path now.
type PathStats struct {
	Name     string
	Medium   uint8
	Operator uint8
	PriceGB  float64
	State    pathmon.State
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
	// ProbeBytesSent and ProbeBytesReceived count what the connections
	// carried while the path carried no shards (probes, their
	// acknowledgements, control messages), with UDP and IP headers.
	ProbeBytesSent, ProbeBytesReceived uint64
	// SendBps and ReceiveBps are the shard bytes sent and received over
	// about the last second (pathmon.MeterWindow), in bits/s.
	SendBps, ReceiveBps float64
	// SlowProbing counts the connections probed every
	// pathmon.SlowProbeInterval: the path costs and carries nothing.
	SlowProbing int
	// Why says what makes the path's State, "" when it is up: "no
	// connection", "silent for 1.2s", "answering again for 300ms of the
	// 1s hold-down", "silent for 180ms: takes no new shards",
	// "losing 7.0% of packets".
	Why string
}

// Started returns when the session began.
func (s *Session) Started() time.Time { return s.epoch }

// IsClient reports whether this is the client's end of the session.
func (s *Session) IsClient() bool { return s.client }

// PolicyName returns the name of the scheduling policy the session
// follows (Config.Policy; "weighted" when none was named).
func (s *Session) PolicyName() string {
	if s.cfg.Policy == "" {
		return "weighted"
	}
	return s.cfg.Policy
}

// Stats returns a snapshot of the path: the best of its connections for
// state and delay, sums for rates.
func (p *Path) Stats() PathStats {
	now := p.s.now()
	st := PathStats{Name: p.info.Name, Medium: p.info.Medium, Operator: p.info.Operator, PriceGB: p.info.PriceGB,
		State: pathmon.StateDown, BytesSent: p.BytesSent.Load(), BytesReceived: p.BytesReceived.Load(),
		ProbeBytesSent: p.ProbeBytesSent.Load(), ProbeBytesReceived: p.ProbeBytesReceived.Load()}
	send, recv := p.meter.Rates(now, st.BytesSent, st.BytesReceived)
	st.SendBps, st.ReceiveBps = send*8, recv*8
	p.mu.Lock()
	conns := append([]*pconn(nil), p.conns...)
	p.mu.Unlock()
	var lossW, weight, linkW, linkN float64
	var current float64
	var best pathmon.ConnStats
	var bestSilence time.Duration
	for i, c := range conns {
		cs := c.mon.Snapshot()
		if i == 0 || cs.State < st.State || (cs.State == st.State && (st.RTT == 0 || cs.SRTT < st.RTT)) {
			st.State, st.RTT, st.MinRTT, st.RTTP99, st.Jitter = cs.State, cs.SRTT, cs.MinRTT, cs.P99, cs.Jitter
			best, bestSilence = cs, now-time.Duration(c.lastHeard.Load())
		}
		if c.slowProbe.Load() {
			st.SlowProbing++
		}
		if cs.State != pathmon.StateDown {
			st.Conns++
		}
		st.DeliveryBps += cs.Delivery * 8
		current += cs.Current * 8
		st.CwndBytes += cs.Cwnd
		st.InFlightBytes += cs.InFlight
		w := max(cs.Delivery, 1)
		lossW += cs.Loss * w
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
	if st.RTT == 0 && st.State != pathmon.StateDown {
		st.RTT = p.SRTT() // no probe answered yet: quic-go's handshake RTT
		st.MinRTT, st.RTTP99 = st.RTT, st.RTT
	}
	st.SpareBps = max(st.DeliveryBps-current, 0)
	st.PaceBps = p.pace.Current() * 8
	st.Why = why(len(conns), st.State, best, bestSilence, now, p.s.cfg.UpAfter)
	return st
}

// why says what makes a path's state, from its best connection.
func why(conns int, state pathmon.State, best pathmon.ConnStats, silence, now, upAfter time.Duration) string {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	switch {
	case conns == 0:
		return "no connection"
	case state == pathmon.StateDown && best.GoodSince > 0:
		return fmt.Sprintf("answering again for %v of the %v hold-down", ms(now-best.GoodSince), upAfter)
	case state == pathmon.StateDown:
		return fmt.Sprintf("silent for %v", ms(silence))
	case best.Suspect:
		return fmt.Sprintf("silent for %v: takes no new shards", ms(silence))
	case best.Lossy:
		return fmt.Sprintf("losing %.1f%% of packets", best.Loss*100)
	}
	return ""
}
