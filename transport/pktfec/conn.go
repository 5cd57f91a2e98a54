package pktfec

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"braid/internal/bufpool"

	"github.com/klauspost/reedsolomon"
)

// Config tunes a Conn. Zero fields take the defaults.
type Config struct {
	// K is the most data packets in a group (default 32, at most MaxK).
	// Groups of 64 need less parity for the same loss, but their
	// repairs come later, and quic-go declares more of the drops lost
	// meanwhile (docs/BENCH.md, "Figures behind the code's choices").
	// When the loss needs more parity than a group of K may carry (MaxM,
	// and MaxOverhead of K), the sender shortens groups (halving K, down
	// to 8) if shorter ones may carry more parity per packet (see
	// control.sized).
	K int
	// GroupDelay is the longest a group stays open (default 40 ms); a
	// peer's RTT (Conn.SetRTT) shortens it to two thirds of the RTT, not
	// under 2 ms.
	GroupDelay time.Duration
	// GroupFail is the chance, under the loss measured, that a group
	// cannot be rebuilt, which the base parity is sized for (default
	// 0.002).
	GroupFail float64
	// MaxOverhead caps parity packets per data packet (default 0.25).
	MaxOverhead float64
	// MaxPeers caps the peers a Conn codes for (default 4096); past it,
	// Enable does nothing and those peers get plain packets.
	MaxPeers int
	// MaxKeptBytes caps the packets all peers' receivers keep for repair
	// (default 64 MiB); past it, packets are not kept and not repaired.
	MaxKeptBytes int64

	fixedM int // tests: parity packets per group, whatever the loss
}

func (c *Config) fill() {
	if c.K <= 0 {
		c.K = 32
	}
	c.K = min(c.K, MaxK)
	if c.GroupDelay <= 0 {
		c.GroupDelay = 40 * time.Millisecond
	}
	if c.GroupFail <= 0 {
		c.GroupFail = 0.002
	}
	if c.MaxOverhead <= 0 {
		c.MaxOverhead = 0.25
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = 4096
	}
	if c.MaxKeptBytes <= 0 {
		c.MaxKeptBytes = 64 << 20
	}
}

func (c Config) maxM() int { return c.maxMFor(c.K) }

// maxMFor is the most parity a group of k may carry.
func (c Config) maxMFor(k int) int { return max(1, min(MaxM, int(c.MaxOverhead*float64(k)))) }

// Stats counts what a Conn did, over all peers.
type Stats struct {
	Malformed uint64 // coding packets dropped as malformed or forged
	Unknown   uint64 // parity and reports from peers not enabled, dropped
	// Plain counts packets to enabled peers sent uncoded: too large to
	// code, or at most plainMax bytes (acknowledgements).
	Plain uint64
	// Writes is the socket writes coded packets took, Packets the coded
	// packets they carried: more packets than writes where the kernel
	// segments (outQueue).
	Writes, Packets uint64
}

// PeerStats is one peer's coding, both ways.
type PeerStats struct {
	// Sent: data packets, parity packets and parity bytes sent; the
	// current code (K data packets a group, M parity packets; M 0: no
	// parity).
	DataSent, ParitySent, ParityBytes uint64
	K, M                              int
	// Queued: the peer's RTT says a queue of at least one round trip
	// stands on the path, and groups go without parity (see control).
	Queued bool
	// Full: the path had more to send than it carries (SetFull), and
	// groups go without parity (see control).
	Full bool
	// LossBefore is the peer's last measured loss before repair (the
	// fraction of our packets it did not receive), LossAfter what was left
	// after repair.
	LossBefore, LossAfter float64
	// Received: packets the peer's sequence numbers said to expect,
	// received, and rebuilt from parity.
	Expected, Received, Repaired uint64
}

// Conn is a UDP socket that codes packets to and from enabled peers. It is
// the net.PacketConn a quic.Transport is given. ReadFrom must be called by
// one goroutine at a time (quic-go does); WriteTo, Enable, Disable and
// Stats by any.
type Conn struct {
	udp *net.UDPConn
	cfg Config
	wq  *outQueue // coded packets on their way to the socket

	pmu   sync.RWMutex
	peers map[peerKey]*peer

	// reading side, ReadFrom's goroutine
	in   *inBatch
	rmu  sync.Mutex
	out  rebuilt
	kept atomic.Int64 // bytes kept by all receivers

	malformed, unknown, plain atomic.Uint64
	closed                    atomic.Bool
}

type peerKey = netip.AddrPort

type peer struct {
	addr *net.UDPAddr
	s    *sender
	// receiving side, under Conn.rmu
	r          receiver
	lastReport time.Time
	keptBytes  int64
	rbuf       []byte
}

var _ net.PacketConn = (*Conn)(nil)

// New wraps udp. The Conn owns it: Close closes it.
func New(udp *net.UDPConn, cfg Config) *Conn {
	cfg.fill()
	return &Conn{udp: udp, cfg: cfg, wq: newOutQueue(udp), in: newInBatch(udp), peers: map[peerKey]*peer{}}
}

func keyOf(a *net.UDPAddr) peerKey {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func udpAddr(a net.Addr) (*net.UDPAddr, bool) {
	u, ok := a.(*net.UDPAddr)
	return u, ok
}

// Enable starts coding to addr and keeping state for its packets: call it
// once the peer is known to decode (it joined with a protocol version that
// has packet coding) and is authenticated. It reports whether addr is
// coded (false past MaxPeers).
func (c *Conn) Enable(addr net.Addr) bool {
	u, ok := udpAddr(addr)
	if !ok {
		return false
	}
	k := keyOf(u)
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if _, ok := c.peers[k]; ok {
		return true
	}
	if len(c.peers) >= c.cfg.MaxPeers || c.closed.Load() {
		return false
	}
	c.peers[k] = &peer{addr: u, s: newSender(c, u)}
	return true
}

// Disable stops coding to addr and frees what its peer held.
func (c *Conn) Disable(addr net.Addr) {
	u, ok := udpAddr(addr)
	if !ok {
		return
	}
	k := keyOf(u)
	c.pmu.Lock()
	p := c.peers[k]
	delete(c.peers, k)
	c.pmu.Unlock()
	if p == nil {
		return
	}
	p.s.close()
	c.rmu.Lock()
	p.r.drop()
	c.kept.Add(-p.keptBytes)
	p.keptBytes = 0
	c.rmu.Unlock()
}

func (c *Conn) peer(k peerKey) *peer {
	c.pmu.RLock()
	p := c.peers[k]
	c.pmu.RUnlock()
	return p
}

// SetRTT tells the coder a peer's smoothed and least round-trip times (as
// quic-go measures them). The smoothed RTT bounds how long a group stays
// open; the two together tell a standing queue (see control).
func (c *Conn) SetRTT(addr net.Addr, rtt, minRTT time.Duration) {
	u, ok := udpAddr(addr)
	if !ok {
		return
	}
	if p := c.peer(keyOf(u)); p != nil {
		p.s.mu.Lock()
		p.s.ctl.rtt, p.s.ctl.minRTT = rtt, minRTT
		p.s.mu.Unlock()
	}
}

// SetFull tells the coder whether the path to a peer has more to send
// than it carries (its pacer held senders back, or shards waited for it).
// While it has, groups go without parity: parity would take the data's
// room on a full link, and the loss it would repair costs quic-go less
// than that room once the path's pool holds several windows (see
// control).
func (c *Conn) SetFull(addr net.Addr, full bool) {
	u, ok := udpAddr(addr)
	if !ok {
		return
	}
	if p := c.peer(keyOf(u)); p != nil {
		p.s.mu.Lock()
		p.s.ctl.full = full
		p.s.mu.Unlock()
	}
}

// PeerStats returns addr's coding, and false when it is not enabled.
func (c *Conn) PeerStats(addr net.Addr) (PeerStats, bool) {
	u, ok := udpAddr(addr)
	if !ok {
		return PeerStats{}, false
	}
	p := c.peer(keyOf(u))
	if p == nil {
		return PeerStats{}, false
	}
	p.s.mu.Lock()
	st := PeerStats{DataSent: p.s.dataPackets, ParitySent: p.s.parityPackets, ParityBytes: p.s.parityBytes,
		K: p.s.ctl.k, M: p.s.ctl.m, LossBefore: p.s.ctl.p, LossAfter: p.s.ctl.left, Queued: p.s.ctl.queued(),
		Full: p.s.ctl.full}
	p.s.mu.Unlock()
	c.rmu.Lock()
	st.Expected, st.Received, st.Repaired = uint64(p.r.expected), uint64(p.r.received), uint64(p.r.repaired)
	c.rmu.Unlock()
	return st, true
}

// Stats returns the Conn's counters.
func (c *Conn) Stats() Stats {
	return Stats{Malformed: c.malformed.Load(), Unknown: c.unknown.Load(), Plain: c.plain.Load(),
		Writes: c.wq.writes.Load(), Packets: c.wq.segments.Load()}
}

// WriteTo sends b to addr: coded when addr is enabled and b is a QUIC
// packet small enough, as it is otherwise.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	u, ok := udpAddr(addr)
	if !ok || !isQUIC(b) {
		return c.udp.WriteTo(b, addr)
	}
	p := c.peer(keyOf(u))
	if p == nil {
		return c.udp.WriteTo(b, addr)
	}
	if len(b) > maxPacket || len(b) <= plainMax {
		c.plain.Add(1)
		return c.udp.WriteTo(b, addr)
	}
	return p.s.write(b)
}

// ReadFrom reads the next packet for quic-go: one that arrived, stripped
// of its coding header, or one rebuilt from parity. Coding packets that
// carry nothing for quic-go (parity, reports) are taken and not returned.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if len(c.out.q) > 0 {
			rp := c.out.q[0]
			c.out.q[0] = rebuiltPacket{}
			c.out.q = c.out.q[1:]
			n := copy(b, rp.buf[rp.start:rp.end])
			bufpool.Put(rp.buf[:cap(rp.buf)])
			return n, net.UDPAddrFromAddrPort(rp.from), nil
		}
		buf := bufpool.Get(readBufLen)
		c.rmu.Unlock()
		n, ap, err := c.in.next(buf)
		c.rmu.Lock()
		if err != nil {
			bufpool.Put(buf)
			return 0, nil, err
		}
		pkt := buf[:n]
		if n == 0 || pkt[0]&0xc0 != 0 || pkt[0] < typeData || pkt[0] > typeReport {
			// QUIC, STUN, or anything else: quic-go sorts it out.
			n = copy(b, pkt)
			bufpool.Put(buf)
			return n, net.UDPAddrFromAddrPort(ap), nil
		}
		k := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		p := c.peer(k)
		switch pkt[0] {
		case typeData, typeGroupData:
			if n <= dataHdr || !isQUIC(pkt[dataHdr:]) {
				c.malformed.Add(1)
				bufpool.Put(buf)
				continue
			}
			deliver := true
			kept := false
			if p != nil {
				c.out.from = k
				p.r.mayKeep = c.kept.Load()+readBufLen <= c.cfg.MaxKeptBytes
				before := p.r.keptN
				deliver, kept = p.r.onData(pkt, &c.out)
				if d := int64(p.r.keptN-before) * readBufLen; d != 0 {
					c.kept.Add(d)
					p.keptBytes += d
				}
				c.maybeReport(p)
			}
			if !deliver {
				bufpool.Put(buf)
				continue
			}
			n = copy(b, pkt[dataHdr:])
			if !kept {
				bufpool.Put(buf)
			}
			return n, net.UDPAddrFromAddrPort(ap), nil
		case typeParity:
			if p == nil {
				c.unknown.Add(1)
			} else {
				c.out.from = k
				before := p.r.keptN
				if err := p.r.onParity(pkt, &c.out); err != nil {
					c.malformed.Add(1)
				}
				if d := int64(p.r.keptN-before) * readBufLen; d != 0 {
					c.kept.Add(d)
					p.keptBytes += d
				}
			}
			bufpool.Put(buf)
		case typeReport:
			r, err := parseReport(pkt)
			switch {
			case err != nil:
				c.malformed.Add(1)
			case p == nil:
				c.unknown.Add(1)
			default:
				p.s.onReport(r, time.Now())
			}
			bufpool.Put(buf)
		}
	}
}

// maybeReport tells p what we received of its packets, every 100 ms while
// they come.
func (c *Conn) maybeReport(p *peer) {
	now := time.Now()
	if now.Sub(p.lastReport) < 100*time.Millisecond || p.r.expected == p.r.lastReportExpected {
		return
	}
	p.lastReport = now
	p.r.lastReportExpected = p.r.expected
	p.rbuf = appendReport(p.rbuf[:0], report{p.r.expected, p.r.received, p.r.repaired})
	c.udp.WriteTo(p.rbuf, p.addr)
}

// Close stops coding and closes the socket.
func (c *Conn) Close() error {
	c.closed.Store(true)
	c.pmu.Lock()
	peers := c.peers
	c.peers = map[peerKey]*peer{}
	c.pmu.Unlock()
	for _, p := range peers {
		p.s.close()
	}
	c.wq.close() // what quic-go wrote last (a CONNECTION_CLOSE) goes out
	err := c.udp.Close()
	c.rmu.Lock()
	for _, p := range peers {
		p.r.drop()
	}
	for _, rp := range c.out.q {
		bufpool.Put(rp.buf[:cap(rp.buf)])
	}
	c.out.q = nil
	c.kept.Store(0)
	c.rmu.Unlock()
	return err
}

// LocalAddr returns the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// SetDeadline and the rest pass to the socket.
func (c *Conn) SetDeadline(t time.Time) error      { return c.udp.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.udp.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }

// SetReadBuffer and SetWriteBuffer let quic-go size the socket's buffers.
func (c *Conn) SetReadBuffer(n int) error  { return c.udp.SetReadBuffer(n) }
func (c *Conn) SetWriteBuffer(n int) error { return c.udp.SetWriteBuffer(n) }

// SyscallConn lets quic-go set the don't-fragment bit, so its path MTU
// discovery holds with the coding headers added. (Conn is not an
// OOBCapablePacketConn: quic-go's batched reads would bypass it.)
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }

// UDP returns the socket under the Conn.
func (c *Conn) UDP() *net.UDPConn { return c.udp }

// Coders are cached per (k, m): building one inverts matrices, and an
// encoder is safe for concurrent use.
var coders sync.Map // [2]uint8 -> reedsolomon.Encoder

func coder(k, m int) (reedsolomon.Encoder, error) {
	key := [2]uint8{uint8(k), uint8(m)}
	if e, ok := coders.Load(key); ok {
		return e.(reedsolomon.Encoder), nil
	}
	e, err := reedsolomon.New(k, m, reedsolomon.WithMaxGoroutines(1))
	if err != nil {
		return nil, fmt.Errorf("reed-solomon %d+%d: %w", k, m, err)
	}
	actual, _ := coders.LoadOrStore(key, e)
	return actual.(reedsolomon.Encoder), nil
}

type ctxKey struct{}

// NewContext returns ctx carrying c: the context a QUIC connection over c
// is dialed or accepted with (quic-go keeps its values in the
// connection's Context), so the layer above finds the coder beneath it.
func NewContext(ctx context.Context, c *Conn) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the Conn NewContext put in ctx, or nil.
func FromContext(ctx context.Context) *Conn {
	c, _ := ctx.Value(ctxKey{}).(*Conn)
	return c
}
