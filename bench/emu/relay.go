package emu

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"braid/internal/notify"
)

const (
	// MaxClients is the number of client addresses a Relay tracks at once;
	// packets from further clients are dropped (counted as DroppedOther)
	// until idle ones expire.
	MaxClients = 1024
	// IdleTimeout is how long a client mapping, and its upstream socket,
	// survives without traffic in either direction.
	IdleTimeout = 2 * time.Minute

	// maxBatch bounds how many packets a scheduler takes per lock hold, so
	// that readers are not locked out during a long burst.
	maxBatch = 128
	// sockBuf is the socket buffer size requested, so that bursts are queued
	// by the emulated link rather than dropped by the kernel.
	sockBuf = 4 << 20
)

// Stats holds the counters of both directions of a Relay. Up is client to
// target, Down is target to client.
type Stats struct {
	Up, Down DirStats
}

// Relay forwards UDP datagrams between clients and one target address,
// passing each direction through a Link. Each client address gets its own
// upstream socket, so the target sees one peer per client socket.
type Relay struct {
	ln     *net.UDPConn
	target *net.UDPAddr
	up     *direction
	down   *direction
	broken atomic.Bool

	idleTimeout time.Duration
	maxClients  int

	mu      sync.Mutex // guards clients and closed
	clients map[netip.AddrPort]*mapping
	closed  bool

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// mapping is one client address and its upstream socket to the target.
type mapping struct {
	client     netip.AddrPort
	conn       *net.UDPConn
	lastActive atomic.Int64 // unix nanoseconds
}

// relayConfig holds knobs that tests shorten.
type relayConfig struct {
	idleTimeout time.Duration
	maxClients  int
}

// NewRelay listens on listenAddr (e.g. "127.0.0.1:0") and forwards to
// target. up applies to client->target, down to target->client. seed makes
// loss/jitter decisions deterministic.
func NewRelay(listenAddr string, target *net.UDPAddr, up, down Link, seed int64) (*Relay, error) {
	return newRelay(listenAddr, target, up, down, seed, relayConfig{idleTimeout: IdleTimeout, maxClients: MaxClients})
}

func newRelay(listenAddr string, target *net.UDPAddr, up, down Link, seed int64, cfg relayConfig) (*Relay, error) {
	if target == nil {
		return nil, errors.New("emu: nil target address")
	}
	laddr, err := net.ResolveUDPAddr("udp", listenAddr)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, err
	}
	_ = ln.SetReadBuffer(sockBuf)
	_ = ln.SetWriteBuffer(sockBuf)
	r := &Relay{
		ln:          ln,
		target:      target,
		idleTimeout: cfg.idleTimeout,
		maxClients:  cfg.maxClients,
		clients:     make(map[netip.AddrPort]*mapping),
		done:        make(chan struct{}),
	}
	// Different streams per direction, so that the up decisions do not
	// depend on how much traffic flows down.
	r.up = newDirection(&r.broken, up, seed)
	r.down = newDirection(&r.broken, down, seed^0x5DEECE66D)
	// Both directions count trace time, outages and schedules from the
	// relay's creation, not from their first packets.
	r.SetStart(time.Now())
	r.wg.Add(4)
	go r.up.run(r.done, &r.wg)
	go r.down.run(r.done, &r.wg)
	go r.readClients()
	go r.janitor()
	return r, nil
}

// Addr returns the address clients send to.
func (r *Relay) Addr() *net.UDPAddr { return r.ln.LocalAddr().(*net.UDPAddr) }

// Target returns the address the relay forwards to.
func (r *Relay) Target() *net.UDPAddr { return r.target }

// SetBroken is the path kill switch: while broken, every packet in both
// directions is dropped, including those already queued inside the relay.
func (r *Relay) SetBroken(broken bool) {
	r.broken.Store(broken)
	if broken {
		r.up.flushBroken()
		r.down.flushBroken()
	}
}

// Broken reports whether the kill switch is on.
func (r *Relay) Broken() bool { return r.broken.Load() }

// SetLinks changes the link parameters at run time; it is safe to call
// concurrently with traffic. Packets already queued keep their delivery time.
// The timeline carries over: new Outages and Schedule rows count from the
// relay's start (see SetStart), and a Trace or TraceOffset that changes
// starts playing at the point it has at the current time.
func (r *Relay) SetLinks(up, down Link) {
	r.up.setLink(up)
	r.down.setLink(down)
}

// SetStart restarts the timeline of both directions at t: the instant at
// which their Traces are at TraceOffset and from which their Outages and
// Schedule rows count (see Shaper.Start). NewRelay starts it at creation;
// relays that must replay their traces or schedules in step, such as the
// paths of one test, call SetStart with one shared instant.
func (r *Relay) SetStart(t time.Time) {
	r.up.setStart(t)
	r.down.setStart(t)
}

// Links returns the current link parameters.
func (r *Relay) Links() (up, down Link) {
	return r.up.link(), r.down.link()
}

// Stats returns the per-direction counters.
func (r *Relay) Stats() Stats {
	return Stats{Up: r.up.stats(), Down: r.down.stats()}
}

// Clients returns the number of client addresses currently mapped.
func (r *Relay) Clients() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients)
}

// Close stops every goroutine the relay started and closes its sockets.
// Queued packets are discarded. It is idempotent; later calls return the
// result of the first.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		clients := r.clients
		r.clients = nil
		r.mu.Unlock()

		close(r.done)
		r.closeErr = r.ln.Close()
		for _, m := range clients {
			m.conn.Close()
		}
		r.wg.Wait()
		r.up.discard()
		r.down.discard()
	})
	return r.closeErr
}

// readClients is the single reader of the listening socket.
func (r *Relay) readClients() {
	defer r.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := r.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.stopped(err) {
				return
			}
			continue
		}
		m := r.lookup(from)
		if m == nil {
			r.up.dropOther(n)
			continue
		}
		r.up.enqueue(buf[:n], m.conn, netip.AddrPort{}, m)
	}
}

// readTarget is the single reader of one upstream socket; replies go back to
// the mapping's client from the listening socket.
func (r *Relay) readTarget(m *mapping) {
	defer r.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, err := m.conn.Read(buf)
		if err != nil {
			// Connected UDP sockets report ICMP port unreachable as a read
			// error (e.g. while the target restarts); only closing ends the
			// loop.
			if r.stopped(err) {
				return
			}
			continue
		}
		r.down.enqueue(buf[:n], r.ln, m.client, m)
	}
}

// stopped reports whether a read error means the socket is gone for good.
func (r *Relay) stopped(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// lookup returns the mapping for a client, creating it and its upstream
// socket on first sight. It returns nil if the client table is full, the
// relay is closing, or the upstream socket cannot be opened.
func (r *Relay) lookup(client netip.AddrPort) *mapping {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.clients[client]; m != nil {
		return m
	}
	if r.closed || len(r.clients) >= r.maxClients {
		return nil
	}
	// DialUDP picks a local address of the target's family and connects,
	// so the kernel filters out datagrams from anyone but the target.
	conn, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil
	}
	_ = conn.SetReadBuffer(sockBuf)
	_ = conn.SetWriteBuffer(sockBuf)
	m := &mapping{client: client, conn: conn}
	m.lastActive.Store(time.Now().UnixNano())
	r.clients[client] = m
	r.wg.Add(1)
	go r.readTarget(m)
	return m
}

// Rebind forgets every client mapping, as a NAT that loses its state (or a
// provider handover) does: each client's next packet reaches the target
// from a new source port, and replies to the old port are lost.
func (r *Relay) Rebind() {
	r.mu.Lock()
	old := r.clients
	r.clients = make(map[netip.AddrPort]*mapping, len(old))
	r.mu.Unlock()
	for _, m := range old {
		m.conn.Close() // its reader ends on net.ErrClosed
	}
}

// janitor expires idle client mappings.
func (r *Relay) janitor() {
	defer r.wg.Done()
	t := time.NewTicker(max(r.idleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			r.expire(now)
		}
	}
}

func (r *Relay) expire(now time.Time) {
	cutoff := now.Add(-r.idleTimeout).UnixNano()
	var idle []*mapping
	r.mu.Lock()
	for k, m := range r.clients {
		if m.lastActive.Load() < cutoff {
			delete(r.clients, k)
			idle = append(idle, m)
		}
	}
	r.mu.Unlock()
	// Closing ends the mapping's reader; packets still queued for it fail
	// to write and count as DroppedOther.
	for _, m := range idle {
		m.conn.Close()
	}
}

// direction is one way through the relay: a Shaper deciding the fate of
// each packet and a scheduler goroutine writing packets when they are due.
type direction struct {
	broken *atomic.Bool

	mu     sync.Mutex // guards everything below up to the atomics
	shaper *Shaper
	fifo   ring    // packets in delivery order (the common case)
	held   pktHeap // packets due before the FIFO's tail (reordered)
	seq    uint64
	// sleeping and sleepUntil describe the scheduler's wait, so that a
	// reader only wakes it when a new packet is due earlier than that.
	sleeping   bool
	sleepUntil time.Time // zero: waiting for a packet, no timer
	wake       chan struct{}

	// sink, when set, delivers every packet instead of its conn (a Pipe).
	sink func([]byte) error
	// overhead is the bytes at the head of each packet that the link
	// neither charges nor counts (a Pipe's headers below UDP's payload).
	overhead int

	// Counters touched outside mu; the rest live in the Shaper.
	packetsIn      atomic.Uint64
	bytesIn        atomic.Uint64
	delivered      atomic.Uint64
	deliveredBytes atomic.Uint64
	droppedBroken  atomic.Uint64
	droppedOther   atomic.Uint64
}

func newDirection(broken *atomic.Bool, l Link, seed int64) *direction {
	return &direction{
		broken: broken,
		shaper: NewShaper(l, seed),
		wake:   make(chan struct{}, 1),
	}
}

func (d *direction) setLink(l Link) {
	d.mu.Lock()
	d.shaper.SetLink(l)
	d.mu.Unlock()
}

func (d *direction) setStart(t time.Time) {
	d.mu.Lock()
	d.shaper.Start(t)
	d.mu.Unlock()
}

func (d *direction) link() Link {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.shaper.Link()
}

func (d *direction) stats() DirStats {
	d.mu.Lock()
	s := d.shaper.Stats()
	d.mu.Unlock()
	// The Shaper only sees packets that got past the kill switch and the
	// client table, so the arrival counters are kept here.
	s.PacketsIn = d.packetsIn.Load()
	s.BytesIn = d.bytesIn.Load()
	s.Delivered = d.delivered.Load()
	s.DeliveredBytes = d.deliveredBytes.Load()
	s.DroppedBroken = d.droppedBroken.Load()
	s.DroppedOther = d.droppedOther.Load()
	return s
}

func (d *direction) dropOther(n int) {
	d.packetsIn.Add(1)
	d.bytesIn.Add(uint64(n))
	d.droppedOther.Add(1)
}

// enqueue passes one datagram, which the caller may reuse afterwards,
// through the Shaper and queues a copy for delivery via conn (to addr, or
// connected when addr is zero).
func (d *direction) enqueue(data []byte, conn *net.UDPConn, addr netip.AddrPort, m *mapping) {
	size := max(len(data)-d.overhead, 1)
	d.packetsIn.Add(1)
	d.bytesIn.Add(uint64(size))
	if d.broken.Load() {
		// A broken path keeps its mappings, like a NAT that still sees
		// the client sending.
		if m != nil {
			m.lastActive.Store(time.Now().UnixNano())
		}
		d.droppedBroken.Add(1)
		return
	}
	d.mu.Lock()
	// Read the clock under the lock: the Shaper needs non-decreasing
	// arrival times and several readers share the down direction.
	now := time.Now()
	if m != nil {
		m.lastActive.Store(now.UnixNano())
	}
	at, dup, ok := d.shaper.Admit(now, size)
	if !ok {
		d.mu.Unlock()
		return
	}
	buf := getBuf(len(data))
	copy(*buf, data)
	d.seq++
	p := packet{at: at, seq: d.seq, buf: buf, n: len(data), conn: conn, addr: addr, dup: dup}
	if d.fifo.len() == 0 || !at.Before(d.fifo.back().at) {
		d.fifo.push(p)
	} else {
		d.held.push(p)
	}
	wake := d.sleeping && (d.sleepUntil.IsZero() || at.Before(d.sleepUntil))
	if wake {
		d.sleeping = false
	}
	d.mu.Unlock()
	if wake {
		notify.Signal(d.wake)
	}
}

// next returns the queued packet due first, or nil.
func (d *direction) next() *packet {
	var p *packet
	if d.fifo.len() > 0 {
		p = d.fifo.front()
	}
	if len(d.held) > 0 && (p == nil || d.held[0].before(p)) {
		p = &d.held[0]
	}
	return p
}

// popDue appends to batch the packets due at now, in delivery order.
func (d *direction) popDue(now time.Time, batch []packet) []packet {
	for len(batch) < maxBatch {
		p := d.next()
		if p == nil || p.at.After(now) {
			break
		}
		if d.fifo.len() > 0 && p == d.fifo.front() {
			batch = append(batch, d.fifo.pop())
		} else {
			batch = append(batch, d.held.pop())
		}
	}
	return batch
}

// run is the direction's scheduler: it sleeps until the earliest packet is
// due, then writes every packet whose time has come in one wake-up.
func (d *direction) run(done <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	batch := make([]packet, 0, maxBatch)
	for {
		d.mu.Lock()
		d.sleeping = false
		now := time.Now()
		batch = d.popDue(now, batch[:0])
		var wait time.Duration
		if len(batch) == 0 {
			d.sleeping = true
			d.sleepUntil = time.Time{}
			if p := d.next(); p != nil {
				d.sleepUntil = p.at
				wait = p.at.Sub(now)
			}
		}
		d.mu.Unlock()

		if len(batch) > 0 {
			d.send(batch)
			clear(batch)
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-done:
			timer.Stop()
			return
		case <-d.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// send writes a batch outside the lock. Delivery is counted before the write
// so that a receiver never observes a packet the counters do not yet show.
func (d *direction) send(batch []packet) {
	for i := range batch {
		p := &batch[i]
		b := (*p.buf)[:p.n]
		for range p.copies() {
			// The kill switch may have been thrown after the packet was
			// popped.
			if d.broken.Load() {
				d.droppedBroken.Add(1)
				continue
			}
			size := max(p.n-d.overhead, 1)
			d.delivered.Add(1)
			d.deliveredBytes.Add(uint64(size))
			var err error
			if d.sink != nil {
				err = d.sink(b)
			} else if p.addr.IsValid() {
				_, err = p.conn.WriteToUDPAddrPort(b, p.addr)
			} else {
				_, err = p.conn.Write(b)
			}
			if err != nil {
				d.delivered.Add(^uint64(0))
				d.deliveredBytes.Add(^uint64(size - 1))
				d.droppedOther.Add(1)
			}
		}
		putBuf(p.buf)
	}
}

// takeAll empties the queues and returns what they held.
func (d *direction) takeAll() []packet {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]packet, 0, d.fifo.len()+len(d.held))
	for d.fifo.len() > 0 {
		out = append(out, d.fifo.pop())
	}
	out = append(out, d.held...)
	clear(d.held)
	d.held = d.held[:0]
	return out
}

// flushBroken drops everything queued, counting it as dropped while broken.
func (d *direction) flushBroken() {
	for _, p := range d.takeAll() {
		d.droppedBroken.Add(p.copies())
		putBuf(p.buf)
	}
}

// discard drops everything queued at Close.
func (d *direction) discard() {
	for _, p := range d.takeAll() {
		d.droppedOther.Add(p.copies())
		putBuf(p.buf)
	}
}
