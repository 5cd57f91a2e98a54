package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/bufpool"
	"braid/internal/notify"
	"braid/transport/pathmon"
	"braid/transport/pktfec"
	"braid/transport/wire"
)

// QUICConfig returns the quic-go settings braid uses on both ends. Path
// death is detected by braid's own probes within a few RTTs; the idle
// timeout only reaps connections that never come back.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           3 * time.Second,
		MaxIdleTimeout:                 15 * time.Second,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         8 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     24 << 20,
		MaxIncomingStreams:             4,
		MaxIncomingUniStreams:          64,
		KeepAlivePeriod:                0,    // braid's probes keep connections busy
		EnableDatagrams:                true, // UDP associations (udp.go)
	}
}

// Path is one provider route: a pool of QUIC connections. Shards queued
// on a path go out on whichever of its live connections is free first.
type Path struct {
	s    *Session
	info wire.PathInfo

	queue  chan shardJob // new shards
	queued atomic.Int64  // bytes waiting in queue and urgent
	// lastTake is when a writer last took a shard (session clock, ns):
	// a queue that holds bytes and has not moved is stalled.
	lastTake atomic.Int64

	// urgent holds shards sent again, served before new ones. It is not
	// bounded by a channel's size because a dead path can hand over a
	// whole window of shards at once; the flows' credit bounds it.
	umu       sync.Mutex
	urgent    []shardJob
	urgentSig chan struct{}

	mu    sync.Mutex
	conns []*pconn

	// The pool's size, when the plan sets it (client paths without a
	// fixed conns=): spawn starts the keeper of a connection slot, which
	// runs until its quit channel closes.
	pmu      sync.Mutex
	spawn    func(slot int, quit <-chan struct{})
	quits    []chan struct{}
	poolSize atomic.Int32 // the slots kept; 0 on the concentrator

	pace      *pathmon.Pacer
	up        atomic.Bool
	rate      atomic.Uint64 // bytes/s estimate, float64 bits
	srtt      atomic.Int64  // ns, best live connection
	closed    atomic.Bool
	done      chan struct{} // closed when the path is closed
	closeOnce sync.Once

	// BytesSent and BytesReceived count shard bytes (headers included)
	// and UDP associations' datagram frames: what the path carries for
	// the user, its cost and its rate.
	BytesSent, BytesReceived atomic.Uint64
	// ProbeBytesSent and ProbeBytesReceived count what the path's
	// connections carry while the path carries no shards: probes, their
	// acknowledgements and control messages, as QUIC bytes plus UDP and
	// IP headers (prober). They cost what shard bytes cost.
	ProbeBytesSent, ProbeBytesReceived atomic.Uint64
	// meter measures the current rates of BytesSent and BytesReceived.
	meter pathmon.Meter
	acct  pathAccount // shard bytes per class, for Session.Usage (account.go)
}

// costly reports whether the path's bytes cost money: it has a price, or
// the device is metered. Such a path is probed slowly while idle.
func (p *Path) costly() bool { return p.info.PriceGB > 0 || p.s.cfg.Device.Metered }

// shardBytes is what the path has carried in shards, both ways.
func (p *Path) shardBytes() uint64 { return p.BytesSent.Load() + p.BytesReceived.Load() }

type shardJob struct {
	b   *txBlock
	idx uint8
}

func newPath(s *Session, info wire.PathInfo) *Path {
	p := &Path{
		s:         s,
		info:      info,
		queue:     make(chan shardJob, 1024),
		urgentSig: make(chan struct{}, 1),
		done:      make(chan struct{}),
		pace:      pathmon.NewPacer(info.RateMbps, !s.cfg.NoMeasuredPacing),
	}
	p.rate.Store(math.Float64bits(1 << 20))
	p.lastTake.Store(int64(s.now()))
	return p
}

// Info returns what the path says about itself.
func (p *Path) Info() wire.PathInfo { return p.info }

// Name returns the path's name.
func (p *Path) Name() string { return p.info.Name }

// Up reports whether the path has a live connection.
func (p *Path) Up() bool { return p.up.Load() }

// live reports whether some connection of the path is not down: usable,
// or suspect (silent for a moment, taking no new shards until it
// answers). The planner plans on live paths, so a moment's silence does
// not make a plan without the path and another with it again.
func (p *Path) live() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.mon.State() != pathmon.StateDown {
			return true
		}
	}
	return false
}

// SRTT returns the smoothed RTT of the path's best live connection.
func (p *Path) SRTT() time.Duration { return time.Duration(p.srtt.Load()) }

// Rate returns the path's estimated sending rate in bytes/s.
func (p *Path) Rate() float64 { return math.Float64frombits(p.rate.Load()) }

// queueDelay is how long a shard queued now waits before it is sent.
func (p *Path) queueDelay() time.Duration {
	return time.Duration(float64(p.queued.Load()) / p.Rate() * float64(time.Second))
}

// queueLimit is how many bytes may wait on the path: about 20 ms of its
// rate, so dispatch decisions stay fresh, within fixed bounds. A paced
// path's rate is known and its writers take shards at that rate, so 50 ms
// of it keeps them fed; the 256 KiB floor of an unpaced path (which feeds
// quic-go's window on a fast link) would be 220 ms on a 10 Mbit/s one.
func (p *Path) queueLimit() int64 {
	if r := p.pace.Current(); r > 0 {
		return max(int64(r*0.05), 32<<10)
	}
	return min(max(int64(p.Rate()*0.02), 256<<10), 4<<20)
}

// liveConn returns one live connection of the path, or nil.
func (p *Path) liveConn() *pconn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.usable() {
			return c
		}
	}
	return nil
}

// refresh recomputes the path's state from its connections and reports
// whether up changed.
func (p *Path) refresh() (changed bool) {
	p.mu.Lock()
	up := false
	var rate, parity float64
	var live []*pconn
	best := time.Duration(math.MaxInt64)
	for _, c := range p.conns {
		if !c.usable() {
			continue
		}
		up = true
		st := c.qc.ConnectionStats()
		srtt := max(st.SmoothedRTT, 50*time.Microsecond)
		best = min(best, srtt)
		rate += float64(st.CongestionWindow) / srtt.Seconds()
		live = append(live, c)
	}
	p.mu.Unlock()
	// The coders' and monitors' locks are taken outside p.mu, as Stats
	// does.
	p.meter.Sample(p.s.now(), p.BytesSent.Load(), p.BytesReceived.Load())
	var bw pathmon.Sample
	full := up && p.pace.SampleFull(p.s.now(), p.queued.Load() > 0)
	for _, c := range live {
		c.setFull(full)
		if ps, ok := c.coding(); ok && ps.M > 0 && ps.K > 0 && !ps.Queued && !ps.Full {
			parity += float64(ps.M) / float64(ps.K)
		}
		cs := c.mon.Snapshot()
		bw.Deliver += cs.Delivery
		if cs.SRTT > 0 && (bw.SRTT == 0 || cs.SRTT < bw.SRTT) {
			bw.SRTT = cs.SRTT
		}
		if cs.MinRTT > 0 && (bw.MinRTT == 0 || cs.MinRTT < bw.MinRTT) {
			bw.MinRTT = cs.MinRTT
		}
	}
	if up {
		p.pace.SetParity(parity / float64(len(live)))
		bw.Busy = p.queued.Load() > 0
		p.pace.Observe(p.s.now(), bw)
		if r := p.pace.ShardRate(); r > 0 {
			rate = min(rate, r)
		}
		p.srtt.Store(int64(best))
		p.rate.Store(math.Float64bits(max(rate, 64<<10)))
	}
	return p.up.Swap(up) != up
}

// serverReapAfter is how long past going down the concentrator keeps a
// silent connection: its client has dialed another by then.
const serverReapAfter = 5 * time.Second

// closeCodeSession is the QUIC application close code of a connection
// closed because its whole session ends (the peer's CLOSE, said where no
// stream data can be lost).
const closeCodeSession = 2

// quicRTT returns quic-go's smoothed and minimum RTT of the path's best
// usable connection (from acknowledgements), zero without one.
func (p *Path) quicRTT() (srtt, minRTT time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if !c.usable() {
			continue
		}
		st := c.qc.ConnectionStats()
		if srtt == 0 || st.SmoothedRTT < srtt {
			srtt, minRTT = st.SmoothedRTT, st.MinRTT
		}
	}
	return srtt, minRTT
}

// maxConnsPerPath bounds a path's pool (conns=N allows up to 16).
const maxConnsPerPath = 16

// addConn adds a connection; it fails once the path is closed or full.
func (p *Path) addConn(c *pconn) bool {
	p.mu.Lock()
	if p.closed.Load() || len(p.conns) >= maxConnsPerPath {
		p.mu.Unlock()
		return false
	}
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	if p.refresh() {
		p.s.pathsChanged()
	}
	return true
}

func (p *Path) removeConn(c *pconn) {
	p.mu.Lock()
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	p.retire(c) // its wire bytes, while the coder still knows it (account.go)
}

// connStateChanged reacts to a connection going up or down.
func (p *Path) connStateChanged(c *pconn, up bool) {
	pathChanged := p.refresh()
	if !up && !p.Up() {
		p.drain()
	}
	// Down: re-send what the connection held. Up: re-send what could not
	// be placed while no path took it (resendLost finds no path then).
	p.s.resendLost()
	// Up or down, re-send acks and credit: a message sent while no
	// connection was usable, or on the one that failed, is lost.
	p.s.resync()
	if pathChanged {
		p.s.log.Info("path state", "path", p.info.Name, "up", p.Up())
		p.s.pathsChanged()
	}
}

// drain empties the queues of a dead path; the shards are re-dispatched
// by resendLost from the blocks' own records.
func (p *Path) drain() {
	for {
		select {
		case j := <-p.queue:
			p.queued.Add(-int64(j.b.hdr.ShardLen))
			j.b.release()
		default:
			p.umu.Lock()
			urgent := p.urgent
			p.urgent = nil
			p.umu.Unlock()
			for _, j := range urgent {
				p.queued.Add(-int64(j.b.hdr.ShardLen))
				j.b.release()
			}
			return
		}
	}
}

// pushUrgent queues a shard ahead of new ones.
func (p *Path) pushUrgent(j shardJob) {
	p.umu.Lock()
	p.urgent = append(p.urgent, j)
	p.umu.Unlock()
	notify.Signal(p.urgentSig)
}

// popUrgent takes the oldest urgent shard, if any.
func (p *Path) popUrgent() (shardJob, bool) {
	p.umu.Lock()
	defer p.umu.Unlock()
	if len(p.urgent) == 0 {
		return shardJob{}, false
	}
	j := p.urgent[0]
	p.urgent[0] = shardJob{}
	p.urgent = p.urgent[1:]
	if len(p.urgent) == 0 {
		p.urgent = nil
	} else {
		notify.Signal(p.urgentSig) // wake another writer for the rest
	}
	return j, true
}

// close ends every connection of the path.
func (p *Path) close(tellPeer bool) {
	p.closeOnce.Do(func() { close(p.done) })
	p.mu.Lock()
	p.closed.Store(true)
	conns := append([]*pconn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		if tellPeer {
			c.sendControl(&wire.Msg{Type: wire.MsgClose, Reason: "session closed"})
			c.flushControl()
			// CLOSE may still sit in a stream buffer that closing drops;
			// the connection's own close frame says it too, reliably.
			c.qc.CloseWithError(closeCodeSession, "session closed")
		}
		c.close(nil)
	}
	p.drain()
}

// pconn is one QUIC connection of a path.
type pconn struct {
	id   uint32
	p    *Path
	s    *Session
	qc   *quic.Conn
	ctrl *quic.Stream

	// seen is the monitor's machine as the prober last published it
	// (pathmon.State and Suspect in one word, so no reader sees half of
	// a change; see usable); close publishes it down for good.
	seen      atomic.Uint32
	retiring  atomic.Bool   // leaving a shrinking pool: no new shards, closed after a drain
	drained   chan struct{} // client: closed when the concentrator answers RETIRE
	writing   atomic.Int32  // shards being written, not yet recorded in their blocks
	holding   atomic.Int32  // shards recorded on c of blocks not yet acknowledged (txBlock.setConn)
	udp       bool          // the peer carries UDP associations here (version 4, QUIC datagrams)
	version   uint8         // the protocol version the connection speaks
	dgq       chan []byte   // datagrams for datagramWriter (udp only)
	dgMax     atomic.Int64  // the largest datagram quic-go takes now, as last asked
	drainSig  chan struct{} // a retiring connection's writing or holding reached 0
	drainOnce sync.Once
	lastHeard atomic.Int64 // session clock, ns
	mon       pathmon.Monitor

	wmu     sync.Mutex
	wbuf    []byte
	wsig    chan struct{}
	flushed chan struct{}

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	// coder codes this connection's packets beneath QUIC when both ends
	// speak codingVersion and the socket is a pktfec.Conn; nil otherwise.
	// The coder knows the peer by address: coded is the address enabled,
	// moved when QUIC follows the peer to a new one (NAT rebinding), and
	// nil once the connection is closed. full is what the coder was last
	// told of the path's fullness (setFull), told again at a new address.
	coder   *pktfec.Conn
	coderMu sync.Mutex
	coded   net.Addr
	full    bool

	// usableChanged fires when the prober finds the connection usable
	// (up and not suspect) or not any more: stream writers wait on it
	// instead of polling.
	usableChanged notify.Broadcast

	// slowProbe is set while the prober probes slowly (an idle path that
	// costs, pathmon.Prober); a shard written or read then signals
	// probeWake, so probing is fast again at once.
	slowProbe atomic.Bool
	probeWake chan struct{}
}

// wakeProber makes a slowly probing connection probe at once, at its
// full rate: it carries shards again.
func (c *pconn) wakeProber() {
	if c.slowProbe.Load() {
		notify.Signal(c.probeWake)
	}
}

// attach starts a joined connection on path p, joined with protocol
// version. It returns nil, closing the connection, when the session has
// ended meanwhile.
func (s *Session) attach(p *Path, qc *quic.Conn, ctrl *quic.Stream, version uint8) *pconn {
	c := &pconn{
		id:        s.nextConnID.Add(1),
		p:         p,
		s:         s,
		qc:        qc,
		ctrl:      ctrl,
		wsig:      make(chan struct{}, 1),
		flushed:   make(chan struct{}, 1),
		drained:   make(chan struct{}),
		drainSig:  make(chan struct{}, 1),
		done:      make(chan struct{}),
		probeWake: make(chan struct{}, 1),
	}
	c.lastHeard.Store(int64(s.now()))
	c.publish(pathmon.StateUp, false)
	c.usableChanged.Fire()
	if coder := pktfec.FromContext(qc.Context()); coder != nil && version >= wire.CodingVersion && coder.Enable(qc.RemoteAddr()) {
		c.coder, c.coded = coder, qc.RemoteAddr()
	}
	c.version = version
	dg := qc.ConnectionState().SupportsDatagrams
	c.udp = version >= wire.UDPVersion && dg.Local && dg.Remote
	if c.udp {
		// Before the connection is visible: a sender may pick it at once.
		c.dgq = make(chan []byte, dgQueue)
		c.probeDatagramMax()
	}
	// Whether another connection could carry control messages: when none
	// could, this one re-sends what they lost (below).
	alone := s.bestConn() == nil
	s.wg.Add(1) // before the connection is visible, so Close waits for it
	if !p.addConn(c) {
		s.wg.Done()
		qc.CloseWithError(0, "session closed or path full")
		return nil
	}
	c.wg.Add(4 + s.cfg.StreamsPerConn)
	if c.udp {
		c.wg.Add(2)
		go c.datagramReader()
		go c.datagramWriter()
	}
	go c.controlReader()
	go c.controlWriter()
	go c.acceptStreams()
	go c.prober()
	for range s.cfg.StreamsPerConn {
		go c.streamWriter()
	}
	// The first live connection after none (every one dead and dialed
	// afresh) is a way out again, as a connection coming back up is
	// (connStateChanged): shards no path could take go out now, and acks
	// and credit go again, since those sent while every connection was
	// dead died with them (a sender waiting for credit would wait for
	// ever).
	if alone {
		s.resendLost()
		s.resync()
	}
	go func() {
		defer s.wg.Done()
		select {
		case <-qc.Context().Done():
			c.close(context.Cause(qc.Context()))
		case <-c.done:
		}
		c.wg.Wait()
	}()
	return c
}

// followCoded keeps the coder on the peer's current address and tells it
// the connection's RTTs.
func (c *pconn) followCoded(rtt, minRTT time.Duration) {
	if c.coder == nil {
		return
	}
	c.coderMu.Lock()
	defer c.coderMu.Unlock()
	if c.coded == nil { // closed
		return
	}
	if a := c.qc.RemoteAddr(); a.String() != c.coded.String() {
		c.coder.Disable(c.coded)
		c.coded = nil
		if !c.coder.Enable(a) {
			return // past the coder's peers: this connection goes plain
		}
		c.coded = a
		c.coder.SetFull(a, c.full)
	}
	c.coder.SetRTT(c.coded, rtt, minRTT)
}

// setFull tells the coder whether the path is full (pktfec.Conn.SetFull),
// only when that changed: the coder's lock is the one its packet writes
// take, and refresh runs at every probe of every connection.
func (c *pconn) setFull(full bool) {
	if c.coder == nil {
		return
	}
	c.coderMu.Lock()
	defer c.coderMu.Unlock()
	if c.coded != nil && c.full != full {
		c.coder.SetFull(c.coded, full)
		c.full = full
	}
}

// coding returns the connection's packet coding, false when it does not
// code.
func (c *pconn) coding() (pktfec.PeerStats, bool) {
	if c.coder == nil {
		return pktfec.PeerStats{}, false
	}
	c.coderMu.Lock()
	defer c.coderMu.Unlock()
	if c.coded == nil {
		return pktfec.PeerStats{}, false
	}
	return c.coder.PeerStats(c.coded)
}

// close ends the connection; err nil means a clean close.
func (c *pconn) close(err error) {
	c.closeOnce.Do(func() {
		close(c.done)
		if err != nil {
			c.s.log.Info("path connection ended", "path", c.p.info.Name, "err", err)
			var code quic.ApplicationErrorCode
			if errors.Is(err, wire.ErrMalformed) {
				code = 1
				c.s.stats.ProtocolErrors.Add(1)
			}
			c.qc.CloseWithError(code, truncate(err.Error(), 200))
		} else {
			c.qc.CloseWithError(0, "")
		}
		c.p.removeConn(c)
		if c.coder != nil {
			c.coderMu.Lock()
			if c.coded != nil {
				c.coder.Disable(c.coded)
				c.coded = nil
			}
			c.coderMu.Unlock()
		}
		wasUp := stateOf(c.seen.Swap(seenClosed|packSeen(pathmon.StateDown, false))) != pathmon.StateDown
		if wasUp {
			c.p.connStateChanged(c, false)
		} else if c.p.refresh() {
			c.s.pathsChanged()
		}
	})
	// The peer closed the connection because its session ends (code 2),
	// however this side learnt it: the data or control stream's read
	// error, or the connection's own end.
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == closeCodeSession {
		c.s.closeWith(fmt.Errorf("%w by peer", ErrSessionClosed), false)
	}
}

// closed reports whether the connection has ended.
func (c *pconn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// usable reports whether the connection may carry shards: up and not
// suspected of having died.
func (c *pconn) usable() bool {
	v := c.seen.Load()
	return stateOf(v) != pathmon.StateDown && v&1 == 0
}

// publish makes the machine's state what readers of seen get, unless the
// connection has closed (a probe tick that raced close cannot bring it
// back up).
func (c *pconn) publish(st pathmon.State, suspect bool) {
	for {
		old := c.seen.Load()
		if old&seenClosed != 0 || c.seen.CompareAndSwap(old, packSeen(st, suspect)) {
			return
		}
	}
}

// seenClosed marks seen final: the connection has closed.
const seenClosed = 1 << 31

func packSeen(st pathmon.State, suspect bool) uint32 {
	v := uint32(st) << 1
	if suspect {
		v |= 1
	}
	return v
}

func stateOf(v uint32) pathmon.State { return pathmon.State(v &^ seenClosed >> 1) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Done is closed when the connection has ended.
func (c *pconn) Done() <-chan struct{} { return c.done }

func (c *pconn) heard() { c.lastHeard.Store(int64(c.s.now())) }

// maxStallDiscount bounds the time the prober takes off a connection's
// silence for its own late ticks: a dead path on a starved machine is
// found at most this much later.
const maxStallDiscount = time.Second

// sendControl queues a control message; a writer goroutine batches them.
func (c *pconn) sendControl(m *wire.Msg) {
	c.wmu.Lock()
	if len(c.wbuf) > maxControlBacklog {
		c.wmu.Unlock()
		// The peer does not read its control stream (or floods us with
		// pings): it cannot make us hold more.
		go c.close(wire.Malformed("control stream backlog over %d bytes", maxControlBacklog))
		return
	}
	c.wbuf = wire.AppendMsg(c.wbuf, m)
	c.wmu.Unlock()
	notify.Signal(c.wsig)
}

// maxControlBacklog bounds control bytes waiting to be written.
const maxControlBacklog = 1 << 20

// flushControl waits briefly for queued control messages to be written.
func (c *pconn) flushControl() {
	select {
	case <-c.flushed:
	default:
	}
	notify.Signal(c.wsig)
	select {
	case <-c.flushed:
	case <-c.done:
	case <-time.After(100 * time.Millisecond):
	}
}

func (c *pconn) controlWriter() {
	defer c.wg.Done()
	var out []byte
	for {
		select {
		case <-c.wsig:
		case <-c.done:
			return
		}
		c.wmu.Lock()
		out, c.wbuf = c.wbuf, out[:0]
		c.wmu.Unlock()
		if len(out) > 0 {
			if _, err := c.ctrl.Write(out); err != nil {
				c.close(fmt.Errorf("write control stream: %w", err))
				return
			}
		}
		notify.Signal(c.flushed)
	}
}

func (c *pconn) controlReader() {
	defer c.wg.Done()
	r := bufio.NewReaderSize(c.ctrl, 4096)
	var hdr [3]byte
	body := make([]byte, wire.MaxControlBody)
	var m wire.Msg
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			c.close(readErr("control stream", err))
			return
		}
		t, n, err := wire.ParseMsgHeader(hdr[:])
		if err == nil {
			if _, err = io.ReadFull(r, body[:n]); err != nil {
				c.close(readErr("control stream", err))
				return
			}
			err = wire.ParseMsgBody(t, body[:n], &m)
		}
		if err == nil {
			c.heard()
			err = c.onControl(&m)
		}
		if err != nil {
			c.close(fmt.Errorf("control stream: %w", err))
			return
		}
	}
}

func readErr(what string, err error) error {
	switch {
	case err == io.EOF:
		return fmt.Errorf("%s closed by peer", what)
	case err == io.ErrUnexpectedEOF:
		return wire.Malformed("%s ended inside a message", what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

func (c *pconn) onControl(m *wire.Msg) error {
	switch m.Type {
	case wire.MsgPing:
		c.sendControl(&wire.Msg{Type: wire.MsgPong, Seq: m.Seq, Time: m.Time, Value: c.qc.ConnectionStats().BytesReceived})
		return nil
	case wire.MsgPong:
		// The time is ours, echoed; one from the future is the peer's
		// invention and is ignored.
		if now := c.s.now(); m.Time > 0 && now >= time.Duration(m.Time) {
			c.mon.OnPong(now, now-time.Duration(m.Time), m.Value, c.qc.ConnectionStats().BytesSent)
		}
		return nil
	case wire.MsgJoin, wire.MsgJoinOK, wire.MsgJoinErr:
		return wire.Malformed("%v after join", m.Type)
	case wire.MsgRetire:
		if c.s.client {
			if !c.retiring.Load() {
				return wire.Malformed("retire from the concentrator unasked")
			}
			c.drainOnce.Do(func() { close(c.drained) })
			return nil
		}
		if !c.retiring.Swap(true) {
			c.s.log.Debug("path connection retiring", "path", c.p.info.Name)
			go func() {
				c.waitDrained(nil)
				c.sendControl(&wire.Msg{Type: wire.MsgRetire})
			}()
		}
		return nil
	}
	return c.s.onControl(m)
}

// prober pings the peer every probe interval (every
// pathmon.SlowProbeInterval while the path costs and carries nothing),
// feeds the monitor, counts the bytes of an idle path's probing and
// steps the connection's state machine (pathmon.Machine).
func (c *pconn) prober() {
	defer c.wg.Done()
	cfg := &c.s.cfg
	t := time.NewTimer(cfg.ProbeInterval)
	defer t.Stop()
	var seq uint32
	var due, stalled time.Duration // when the timer is due; time not run since last heard
	var heardAt int64
	var probe pathmon.Prober
	var last quic.ConnectionStats
	// UDP and IP headers, which quic-go's byte counts leave out.
	hdr := uint64(28)
	if a, ok := c.qc.RemoteAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		hdr = 48
	}
	for {
		fired := false
		select {
		case <-c.done:
			return
		case <-t.C:
			fired = true
		case <-c.probeWake:
		}
		seq++
		now := c.s.now()
		// A tick that fires late says this process did not run (a loaded
		// machine, a stop of the world): it could not read what the peer
		// sent meanwhile either. That time, summed since the peer was
		// last heard, is not the path's silence.
		if h := c.lastHeard.Load(); h != heardAt {
			heardAt, stalled = h, 0
		}
		if fired && due > 0 && now > due {
			stalled = min(stalled+now-due, maxStallDiscount)
		}
		c.sendControl(&wire.Msg{Type: wire.MsgPing, Seq: seq, Time: int64(now)})
		st := c.qc.ConnectionStats()
		c.mon.OnTick(now, st.PacketsSent, st.PacketsLost, st.BytesSent, st.BytesLost, st.CongestionWindow)
		c.followCoded(st.SmoothedRTT, st.MinRTT)
		ps := probe.Step(pathmon.ProbeTick{Now: now, PathBytes: c.p.shardBytes(), Queued: c.p.queued.Load() > 0,
			Costly: c.p.costly(), Usable: c.usable(), LastHeard: time.Duration(c.lastHeard.Load())},
			cfg.ProbeInterval, cfg.DownAfter)
		c.slowProbe.Store(ps.Slow)
		t.Reset(ps.Next)
		due = now + ps.Next
		// What the connection carried since the last tick, when the path
		// has carried no shard for a while (past the acknowledgements of
		// its last ones), is the cost of probing it.
		if ps.IdleFor >= max(4*cfg.ProbeInterval, 2*st.SmoothedRTT) && st.BytesSent >= last.BytesSent &&
			st.BytesReceived >= last.BytesReceived {
			c.p.ProbeBytesSent.Add(st.BytesSent - last.BytesSent + (st.PacketsSent-last.PacketsSent)*hdr)
			c.p.ProbeBytesReceived.Add(st.BytesReceived - last.BytesReceived + (st.PacketsReceived-last.PacketsReceived)*hdr)
		}
		last = st
		// The hold-down keeps a flapping path from whipsawing traffic
		// while another path carries it; with none usable, a path that
		// answers a few probes in a row is better than none (paths that
		// flap in turn would otherwise never come up).
		upAfter := cfg.UpAfter
		if !c.s.anyUsable() {
			upAfter = min(upAfter, 3*cfg.ProbeInterval)
		}
		obs := pathmon.Observation{
			Now: now, Silence: max(0, now-time.Duration(c.lastHeard.Load())-stalled), SRTT: st.SmoothedRTT,
			Interval: ps.Interval, DownAfter: ps.DownAfter, UpAfter: upAfter}
		usableChanged, wentDown, sm := c.mon.Step(obs)
		after := cfg.RedialAfter
		if !c.s.client {
			after = serverReapAfter
		}
		if sm.State == pathmon.StateDown && pathmon.RedialDue(obs, after) {
			c.close(fmt.Errorf("no answer for %v", obs.Silence.Round(time.Millisecond)))
			return
		}
		was := c.usable()
		c.publish(sm.State, sm.Suspect)
		if c.usable() != was {
			c.usableChanged.Fire()
		}
		switch {
		case wentDown:
			c.s.log.Info("path connection down", "path", c.p.info.Name,
				"silence", (now - time.Duration(c.lastHeard.Load())).Round(time.Millisecond))
			c.p.connStateChanged(c, false)
		case usableChanged:
			if sm.Suspect {
				c.s.log.Debug("path connection suspect", "path", c.p.info.Name)
			} else if sm.State != pathmon.StateDown {
				c.s.log.Info("path connection up", "path", c.p.info.Name)
			}
			c.p.connStateChanged(c, c.usable())
		default:
			if c.p.refresh() {
				c.s.pathsChanged()
			}
		}
	}
}

// streamWriter owns one data stream and sends queued shards on it while
// the connection is up.
func (c *pconn) streamWriter() {
	defer c.wg.Done()
	st, err := c.qc.OpenUniStreamSync(c.qc.Context())
	if err != nil {
		c.close(fmt.Errorf("open data stream: %w", err))
		return
	}
	defer st.CancelWrite(0)
	p := c.p
	hdr := make([]byte, 0, wire.ShardHeaderLen)
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for {
		if c.retiring.Load() {
			<-c.done // a retired connection takes no shard again
			return
		}
		if !c.usable() {
			// Wait for the prober to find it usable again: take the
			// wake-up first, then look, so a change between is not
			// missed.
			ch := c.usableChanged.Wait()
			if !c.usable() && !c.retiring.Load() {
				select {
				case <-c.done:
					return
				case <-ch:
				}
			}
			continue
		}
		if d := p.pace.Wait(c.s.now()); d > 0 {
			idle.Reset(d)
			select {
			case <-c.done:
				return
			case <-idle.C:
			}
			continue
		}
		j, ok := p.popUrgent()
		if !ok {
			select {
			case <-p.urgentSig:
				continue
			case j = <-p.queue:
			case <-c.done:
				return
			}
		}
		size := int64(j.b.hdr.ShardLen)
		p.queued.Add(-size)
		now := c.s.now()
		p.lastTake.Store(int64(now))
		notify.Signal(c.s.space)
		// A writer that waited for a shard while its connection began to
		// retire hands the shard back, ahead of new ones (the counter first,
		// so a retiring connection that sees no writer has none).
		c.writing.Add(1)
		if c.retiring.Load() {
			c.wrote()
			p.queued.Add(size)
			p.pushUrgent(j)
			continue
		}
		if !j.b.acked.Load() {
			p.pace.Spend(now, int(size)+wire.ShardHeaderLen)
			h := j.b.hdr
			h.Index = j.idx
			hdr = wire.AppendShardHeader(hdr[:0], &h)
			_, err := st.Write(hdr)
			if err == nil {
				_, err = st.Write(j.b.shard(int(j.idx)))
			}
			if err != nil {
				// The shard may not have left: send it elsewhere.
				j.b.setConn(int(j.idx), nil)
				c.wrote()
				c.s.redispatch(j)
				c.close(fmt.Errorf("write data stream: %w", err))
				return
			}
			j.b.setConn(int(j.idx), c)
			p.BytesSent.Add(uint64(size + wire.ShardHeaderLen))
			p.acct.onSent(j.b.f.class.Load(), int(size)+wire.ShardHeaderLen)
			c.s.stats.ShardsSent.Add(1)
			c.wakeProber()
		}
		c.wrote()
		j.b.release()
	}
}

func (c *pconn) acceptStreams() {
	defer c.wg.Done()
	for {
		st, err := c.qc.AcceptUniStream(c.qc.Context())
		if err != nil {
			return // the connection ended; its context says why
		}
		c.wg.Add(1)
		go c.streamReader(st)
	}
}

func (c *pconn) streamReader(st *quic.ReceiveStream) {
	defer c.wg.Done()
	r := bufio.NewReaderSize(st, 32<<10)
	var hb [wire.ShardHeaderLen]byte
	var h wire.ShardHeader
	for {
		if _, err := io.ReadFull(r, hb[:]); err != nil {
			if err != io.EOF {
				c.close(readErr("data stream", err))
			}
			return
		}
		if err := wire.ParseShardHeader(hb[:], &h); err != nil {
			c.close(fmt.Errorf("data stream: %w", err))
			return
		}
		buf := getShard(int(h.ShardLen))
		if _, err := io.ReadFull(r, buf); err != nil {
			putShard(buf)
			c.close(readErr("data stream", err))
			return
		}
		c.heard()
		c.p.BytesReceived.Add(uint64(h.ShardLen) + wire.ShardHeaderLen)
		c.p.acct.onReceived(c.s.shardClass(&h, buf), int(h.ShardLen)+wire.ShardHeaderLen)
		c.wakeProber()
		if err := c.s.onShard(&h, buf); err != nil {
			c.close(fmt.Errorf("data stream: %w", err))
			return
		}
	}
}

func getShard(n int) []byte { return bufpool.Get(n) }
func putShard(b []byte)     { bufpool.Put(b) }

// setPool sizes a plan-sized pool to n connections (1..maxConnsPerPath):
// it starts keepers for the missing slots and retires the highest ones.
// A pool of fixed size (conns=, or the concentrator's side) ignores it.
func (p *Path) setPool(n int) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if p.spawn == nil {
		return
	}
	n = min(max(n, 1), maxConnsPerPath)
	for len(p.quits) < n {
		q := make(chan struct{})
		p.quits = append(p.quits, q)
		p.spawn(len(p.quits)-1, q)
	}
	for len(p.quits) > n {
		close(p.quits[len(p.quits)-1])
		p.quits = p.quits[:len(p.quits)-1]
	}
	p.poolSize.Store(int32(n))
}

// poolSized says the path's pool follows setPool (no conns=, the
// client's side).
func (p *Path) poolSized() bool {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return p.spawn != nil
}

// poolSlots is the number of connections the path keeps, live or being
// dialed (the client's), or has (the concentrator's).
func (p *Path) poolSlots() int {
	if n := p.poolSize.Load(); n > 0 {
		return int(n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// retireDrain bounds how long a retired connection stays open for the
// shards already on it, in either direction, to be acknowledged.
const retireDrain = 3 * time.Second

// retire takes a connection out of a shrinking pool without losing a
// shard: it stops taking new shards and asks the concentrator to do the
// same (RETIRE); the concentrator answers RETIRE once every block it sent
// a shard of on the connection is acknowledged, and the client closes the
// connection once it has that answer and the same holds for its own
// blocks, or after retireDrain. Shards still unacknowledged then are sent
// again elsewhere, as for any connection that ends.
func (c *pconn) retire() {
	if c.retiring.Swap(true) {
		return
	}
	c.s.log.Debug("path connection retiring", "path", c.p.info.Name)
	c.sendControl(&wire.Msg{Type: wire.MsgRetire})
	go func() {
		c.waitDrained(c.drained)
		c.close(nil)
	}()
}

// waitDrained waits until no unacknowledged block has a shard on c and
// peer (if not nil) is closed, for at most retireDrain or until c ends.
// It wakes when the last shard being written or held on c lets go
// (drainSig), not on a timer.
func (c *pconn) waitDrained(peer <-chan struct{}) {
	deadline := time.NewTimer(retireDrain)
	defer deadline.Stop()
	peerDone := peer == nil
	for {
		if peerDone && c.drainedHere() {
			return
		}
		select {
		case <-c.done:
			return
		case <-deadline.C:
			return
		case <-c.drainSig:
		case <-peer:
			peerDone, peer = true, nil
		}
	}
}

// drainedHere says no shard is being written on c and none it carried
// waits for an acknowledgement.
func (c *pconn) drainedHere() bool { return c.writing.Load() == 0 && c.holding.Load() == 0 }

// wrote ends a shard's write on c (writing), waking a drain at the last.
func (c *pconn) wrote() {
	if c.writing.Add(-1) == 0 && c.retiring.Load() {
		notify.Signal(c.drainSig)
	}
}

// unhold takes one acknowledged, dropped or moved shard off c's count,
// waking a drain at the last.
func (c *pconn) unhold() {
	if c.holding.Add(-1) == 0 && c.retiring.Load() {
		notify.Signal(c.drainSig)
	}
}
