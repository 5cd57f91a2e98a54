package transport

import (
	"sync/atomic"

	"braid/scheduler"
	"braid/transport/pktfec"
	"braid/transport/wire"
)

// Accounting's counters: what each path carried per traffic class, and
// the flow bytes each class delivered, read together by Session.Usage.
// They are monotonic atomic counters bumped beside the path's own byte
// counters (Path.BytesSent, Path.BytesReceived): no lock and no
// allocation on the data path. A reader takes deltas between two
// readings.

// pathAccount is a path's shard bytes (headers included) per class, each
// way. The path's BytesSent and BytesReceived less these sums are the
// frames of UDP associations' datagrams, which carry no class.
type pathAccount struct {
	id             atomic.Uint64 // this path's key in readings, set at the first
	sent, received [scheduler.MaxClasses]atomic.Uint64
	// retiredSent and retiredReceived are the wire bytes of the path's
	// connections that have closed (wireBytes); lastSent and lastReceived
	// the path's last reading, which later ones never go below. Under
	// Path.mu.
	retiredSent, retiredReceived uint64
	lastSent, lastReceived       uint64
}

// wireBytes is what the connection put on and took off its socket: the
// UDP payloads, so QUIC's packets with their headers, plus the packet
// coder's own header on each coded packet and its parity packets
// (transport/pktfec). Parity received is not counted (the coder keeps no
// byte count of it) and packets rebuilt from parity count as received;
// on a clean path the two are nil.
func (c *pconn) wireBytes() (sent, received uint64) {
	st := c.qc.ConnectionStats()
	sent, received = st.BytesSent, st.BytesReceived
	if ps, ok := c.coding(); ok {
		sent += ps.DataSent*pktfec.DataHeaderLen + ps.ParityBytes
		received += ps.Received * pktfec.DataHeaderLen
	}
	return sent, received
}

// wireBytes sums the wire bytes of the path's connections, closed ones
// included. The connections are read outside p.mu, as the coders' locks
// are everywhere. A connection that closes meanwhile may be seen live by
// one reading and retired (with at least as much) by the next; one read
// between its leaving the pool and its bytes' retiring would count less
// than the last, so a reading never goes below the last one.
func (p *Path) wireBytes() (sent, received uint64) {
	var buf [maxConnsPerPath]*pconn
	p.mu.Lock()
	sent, received = p.acct.retiredSent, p.acct.retiredReceived
	conns := append(buf[:0], p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		s, r := c.wireBytes()
		sent += s
		received += r
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sent, received = max(sent, p.acct.lastSent), max(received, p.acct.lastReceived)
	p.acct.lastSent, p.acct.lastReceived = sent, received
	return sent, received
}

// retire folds a closing connection's wire bytes into the path's, once
// the connection has left the pool (removeConn).
func (p *Path) retire(c *pconn) {
	s, r := c.wireBytes()
	p.mu.Lock()
	p.acct.retiredSent += s
	p.acct.retiredReceived += r
	p.mu.Unlock()
}

// nextPathKey numbers paths for Usage: a path that leaves and comes back
// under the same name is another path, whose counters began again.
var nextPathKey atomic.Uint64

func (a *pathAccount) key() uint64 {
	if k := a.id.Load(); k != 0 {
		return k
	}
	a.id.CompareAndSwap(0, nextPathKey.Add(1))
	return a.id.Load()
}

// onSent counts a shard of class sent; a class out of range counts as
// the default class.
func (a *pathAccount) onSent(class uint32, n int) {
	if class >= scheduler.MaxClasses {
		class = 0
	}
	a.sent[class].Add(uint64(n))
}

// onReceived counts a shard of class received.
func (a *pathAccount) onReceived(class uint32, n int) {
	if class >= scheduler.MaxClasses {
		class = 0
	}
	a.received[class].Add(uint64(n))
}

// sessionAccount is the flow bytes each class delivered to this side's
// readers (after decoding and decompression); what each class sent is
// Session.offered.
type sessionAccount struct {
	delivered [scheduler.MaxClasses]atomic.Uint64
}

func (a *sessionAccount) onDelivered(class uint32, n uint64) {
	if class >= scheduler.MaxClasses {
		class = 0
	}
	a.delivered[class].Add(n)
}

// shardClass returns the class of a received shard's flow: the flow's,
// else, for the first shard of an OPEN block (which the flow's class
// begins), that byte; 0 for a shard of a flow no longer (or never) there.
func (s *Session) shardClass(h *wire.ShardHeader, buf []byte) uint32 {
	if f := s.flows.get(h.Flow); f != nil {
		return f.class.Load()
	}
	if h.Flags&wire.FlagOpen != 0 && h.Index == 0 && len(buf) > 0 {
		return s.tierClass(buf[0])
	}
	return 0
}

// tierClass is the class a peer's OPEN names, as this session files it:
// a class the session's tier does not have is the default class, so its
// bytes are billed and planned as the default's, not left out of every
// reading (a flow must not ride free).
func (s *Session) tierClass(c byte) uint32 {
	if int(c) >= len(s.terms.Load().classes()) {
		return 0
	}
	return uint32(c)
}

// Usage is one reading of a session's monotonic counters, for
// accounting: take two and subtract. Counters only grow while the
// session lives; a path that left and came back has another Key.
type Usage struct {
	// Paths are the session's paths now.
	Paths []PathUsage
	// Classes are the session's traffic classes, the default one first
	// (one default class without a tier).
	Classes []ClassUsage
}

// PathUsage is one path's counters.
type PathUsage struct {
	// Key tells this path apart from another of the same name later.
	Key     uint64
	Name    string
	PriceGB float64
	// Sent and Received are Path.BytesSent and Path.BytesReceived: shard
	// bytes with headers, and datagram frames.
	Sent, Received uint64
	// ProbeSent and ProbeReceived are what the path's connections
	// carried while it carried no shards (Path.ProbeBytesSent, ...).
	ProbeSent, ProbeReceived uint64
	// ClassSent and ClassReceived are the shard bytes of each class;
	// Sent less their sum is datagram frames (likewise Received).
	ClassSent, ClassReceived [scheduler.MaxClasses]uint64
	// WireSent and WireReceived are the UDP payload bytes the path's
	// connections sent and received, closed connections included: QUIC
	// packets (shards, acknowledgements, probes, control, re-sends) and
	// the packet coder's parity. What a provider bills.
	WireSent, WireReceived uint64
}

// ClassUsage is one traffic class's counters.
type ClassUsage struct {
	Name string
	// Offered is the flow bytes this side cut into blocks for the class
	// (before compression); Delivered the flow bytes it delivered to its
	// readers (after decompression).
	Offered, Delivered uint64
	// Planned is true while the class has a plan in force (bestvalue);
	// Feasible whether that plan meets the SLA; Violations counts the
	// planner's ticks whose plan broke the SLA (PlanInfo.Violations).
	Planned, Feasible bool
	Violations        uint64
}

// Usage fills u with a reading of the session's counters, reusing its
// slices. It takes no lock on the data path and may be called from any
// goroutine.
func (s *Session) Usage(u *Usage) {
	paths := s.pathList()
	u.Paths = u.Paths[:0]
	for _, p := range paths {
		pu := PathUsage{Key: p.acct.key(), Name: p.info.Name, PriceGB: p.info.PriceGB}
		// The hooks count a path's total before its class, so reading
		// the classes first keeps each class within its path's total.
		for c := range pu.ClassSent {
			pu.ClassSent[c] = p.acct.sent[c].Load()
			pu.ClassReceived[c] = p.acct.received[c].Load()
		}
		pu.Sent, pu.Received = p.BytesSent.Load(), p.BytesReceived.Load()
		pu.ProbeSent, pu.ProbeReceived = p.ProbeBytesSent.Load(), p.ProbeBytesReceived.Load()
		pu.WireSent, pu.WireReceived = p.wireBytes()
		u.Paths = append(u.Paths, pu)
	}
	classes := s.terms.Load().classes()
	plans := s.Plans()
	u.Classes = u.Classes[:0]
	for i, c := range classes {
		cu := ClassUsage{Name: c.Name, Offered: s.offered[i].Load(), Delivered: s.acct.delivered[i].Load()}
		for j := range plans {
			if plans[j].Class == c.Name {
				cu.Planned, cu.Feasible, cu.Violations = true, plans[j].Plan.Feasible, plans[j].Violations
			}
		}
		u.Classes = append(u.Classes, cu)
	}
}
