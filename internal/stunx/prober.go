package stunx

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
)

// Defaults of a Prober.
const (
	DefaultRTO      = 250 * time.Millisecond // first retransmission timeout
	DefaultMaxRTO   = 4 * time.Second        // retransmission timeout cap
	DefaultTimeout  = 5 * time.Second        // per-probe limit in Run
	DefaultInterval = 25 * time.Second       // Run's interval if given <= 0
)

// ProberStats counts a Prober's work; fields are updated atomically.
type ProberStats struct {
	Sent     atomic.Uint64 // requests sent, retransmissions included
	Received atomic.Uint64 // responses accepted as a probe's answer
	// Ignored counts packets read while this Prober waited that did not
	// answer it: not STUN, not a response, an unknown transaction id, from
	// another address than the server, or without a valid mapped address.
	// With several Probers on one PacketConn, a packet that belongs to
	// none of them is counted by each one waiting.
	Ignored atomic.Uint64
	LastRTT atomic.Int64 // round-trip time of the last successful probe, ns
}

// Prober sends Binding requests through one path's PacketConn to a STUN
// server address (the concentrator, or a public STUN server named in the
// path's spec) and reports results.
//
// Responses are read by a single goroutine per PacketConn, shared by all
// Probers on it and running only while some Probe waits; it hands each
// response to the Probe whose transaction id it carries. A Probe, and Run,
// may therefore be called concurrently, on one or several Probers sharing a
// PacketConn. When the last Probe on a PacketConn returns, that goroutine
// has exited.
type Prober struct {
	// RTO is the first retransmission timeout; zero means DefaultRTO. It
	// doubles after each retransmission up to MaxRTO.
	RTO time.Duration
	// MaxRTO caps the retransmission timeout; zero means DefaultMaxRTO.
	MaxRTO time.Duration
	// Timeout limits each probe Run makes; zero means the smaller of
	// DefaultTimeout and Run's interval.
	Timeout time.Duration

	// Stats counts the Prober's work.
	Stats ProberStats

	pc       PacketConn
	server   net.Addr
	serverAP netip.AddrPort // unmapped, to match response sources
}

// NewProber returns a Prober sending through pc to server, which should be
// a *net.UDPAddr (any net.Addr whose String is an IP:port works).
func NewProber(pc PacketConn, server net.Addr) *Prober {
	return &Prober{pc: pc, server: server, serverAP: addrPortOf(server)}
}

// ResponseError is a Binding error response from the server.
type ResponseError struct {
	Code   int    // e.g. 400, 420, 500
	Reason string // the server's reason phrase
}

// Error implements error.
func (e *ResponseError) Error() string {
	return "stunx: binding error response " + strconv.Itoa(e.Code) + " " + strconv.Quote(e.Reason)
}

// Probe sends one Binding request (random 96-bit transaction id) and waits
// for the matching response until ctx ends; it returns the mapped address
// and the round-trip time. Responses with a wrong transaction id, from
// another address than server, or without a valid (XOR-)MAPPED-ADDRESS are
// ignored (counted in Stats.Ignored). An error response from the server
// ends the probe with a *ResponseError.
//
// The request is retransmitted with the same transaction id, RFC 5389
// style, at 0, RTO, 3·RTO, 7·RTO, ... (0, 250 ms, 750 ms, 1.75 s, ... by
// default; the gap doubles up to MaxRTO) until ctx ends, so ctx should
// carry a deadline. The rtt is measured from the first transmission: it is
// exact unless that transmission was lost, when it is an over-estimate
// (never an under-estimate, even on paths slower than RTO). Probe returns
// an error wrapping ctx.Err() if no response came, or the error of sending.
func (p *Prober) Probe(ctx context.Context) (mapped netip.AddrPort, rtt time.Duration, err error) {
	if !p.serverAP.IsValid() {
		return netip.AddrPort{}, 0, fmt.Errorf("stunx: server address %v is not an IP address and port", p.server)
	}
	w := &waiter{p: p, ch: make(chan result, 1)}
	rand.Read(w.id[:]) // never fails (crypto/rand, Go 1.24+)
	r, err := acquire(ctx, p.pc, w)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("stunx: probe %v: %w", p.server, err)
	}
	defer release(r, w)

	req := bindingRequest(w.id)
	start := time.Now()
	rto, maxRTO := p.RTO, p.MaxRTO
	if rto <= 0 {
		rto = DefaultRTO
	}
	if maxRTO <= 0 {
		maxRTO = DefaultMaxRTO
	}
	rto = min(rto, maxRTO)
	sent := 0
	timer := time.NewTimer(0) // fires at once: the first transmission
	defer timer.Stop()
	for {
		select {
		case res := <-w.ch:
			if res.err != nil {
				return netip.AddrPort{}, 0, res.err
			}
			rtt = res.at.Sub(start)
			p.Stats.Received.Add(1)
			p.Stats.LastRTT.Store(int64(rtt))
			return res.mapped, rtt, nil
		case <-timer.C:
			if _, err := p.pc.WriteTo(req, p.server); err != nil {
				return netip.AddrPort{}, 0, fmt.Errorf("stunx: probe %v: %w", p.server, err)
			}
			p.Stats.Sent.Add(1)
			if sent > 0 {
				rto = min(2*rto, maxRTO)
			}
			sent++
			timer.Reset(rto)
		case <-ctx.Done():
			return netip.AddrPort{}, 0, fmt.Errorf("stunx: no response from %v to %d requests: %w", p.server, sent, ctx.Err())
		}
	}
}

// Run probes every interval (DefaultInterval if interval <= 0), starting at
// once, until ctx ends. It calls onChange(old, new) when the mapped address
// changes, including the first result (old is then the zero, invalid
// AddrPort), and onFail(err) when a probe fails; a failure does not forget
// the last address, so a path that comes back unchanged is not reported as
// a change. Each probe is limited by Timeout. The callbacks (either may be
// nil) are called from Run's goroutine, one at a time, and delay the next
// probe while they run. Run returns when ctx ends, without calling onFail
// for the probe that ctx cut short.
func (p *Prober) Run(ctx context.Context, interval time.Duration, onChange func(old, new netip.AddrPort), onFail func(error)) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = min(interval, DefaultTimeout)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var last netip.AddrPort
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		mapped, _, err := p.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			if onFail != nil {
				onFail(err)
			}
		case mapped != last:
			old := last
			last = mapped
			if onChange != nil {
				onChange(old, mapped)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// result is what the read loop hands a waiting Probe.
type result struct {
	mapped netip.AddrPort
	at     time.Time // when the response was read
	err    error
}

// waiter is one Probe waiting for its response.
type waiter struct {
	p  *Prober
	id txID
	ch chan result // capacity 1; later answers are dropped
}

// demux maps each PacketConn some Probe is waiting on to its reader. One
// mutex guards the map and every reader's fields: probes and responses are
// rare, so contention does not matter and the locking stays obvious.
var demux struct {
	mu    sync.Mutex
	conns map[PacketConn]*reader
}

// reader dispatches the responses read from pc to the waiters. At most one
// read loop per reader reads pc at any time: a new loop first waits for the
// previous one to exit.
type reader struct {
	pc      PacketConn
	waiters map[txID]*waiter
	cancel  context.CancelFunc // non-nil while a read loop is wanted
	done    chan struct{}      // closed when the latest read loop has exited
	ready   chan struct{}      // closed when the latest read loop reads
}

// acquire registers w with the reader for pc, starting its read loop if
// needed, and returns once the loop is reading (so that even the first
// response on a fresh quic.Transport, which drops non-QUIC packets until
// ReadNonQUICPacket was called once, is not lost).
func acquire(ctx context.Context, pc PacketConn, w *waiter) (*reader, error) {
	demux.mu.Lock()
	if demux.conns == nil {
		demux.conns = make(map[PacketConn]*reader)
	}
	r := demux.conns[pc]
	if r == nil {
		r = &reader{pc: pc, waiters: make(map[txID]*waiter)}
		demux.conns[pc] = r
	}
	r.waiters[w.id] = w
	if r.cancel == nil {
		lctx, cancel := context.WithCancel(context.Background())
		prev := r.done
		r.cancel = cancel
		r.done = make(chan struct{})
		r.ready = make(chan struct{})
		go r.loop(lctx, prev, r.done, r.ready)
	}
	ready := r.ready
	demux.mu.Unlock()

	select {
	case <-ready:
		return r, nil
	case <-ctx.Done():
		release(r, w)
		return nil, ctx.Err()
	}
}

// release unregisters w. If no waiter is left it stops the read loop and
// waits for it to exit.
func release(r *reader, w *waiter) {
	demux.mu.Lock()
	if r.waiters[w.id] == w {
		delete(r.waiters, w.id)
	}
	var wait chan struct{}
	if len(r.waiters) == 0 {
		if r.cancel != nil {
			r.cancel()
			r.cancel = nil
			wait = r.done
		} else if isClosed(r.done) && demux.conns[r.pc] == r {
			// The loop already died of a read error.
			delete(demux.conns, r.pc)
		}
	}
	demux.mu.Unlock()
	if wait != nil {
		<-wait
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// loop reads pc until ctx ends or a read fails, dispatching what it reads.
func (r *reader) loop(ctx context.Context, prev, done, ready chan struct{}) {
	if prev != nil {
		<-prev
	}
	buf := make([]byte, maxPacket+1)
	c := new(codec) // this goroutine's, reused for every packet
	// The first read uses a cancelled context: it returns at once, and
	// afterwards a quic.Transport queues non-QUIC packets for us.
	primer, cancelPrimer := context.WithCancel(ctx)
	cancelPrimer()
	rctx := primer
	var err error
	for ctx.Err() == nil {
		var n int
		var addr net.Addr
		n, addr, err = r.pc.ReadNonQUICPacket(rctx, buf)
		at := time.Now()
		if rctx != ctx { // the primer read
			rctx = ctx
			close(ready)
			if errors.Is(err, context.Canceled) && ctx.Err() == nil {
				err = nil
				continue
			}
		}
		if err != nil {
			break
		}
		r.dispatch(c, buf[:n], addr, at)
	}

	failed := err != nil && ctx.Err() == nil // not stopped by release
	demux.mu.Lock()
	if r.done == done { // still the latest loop
		if failed && r.cancel != nil { // (release may have stopped it meanwhile)
			r.cancel()
			r.cancel = nil
			for _, w := range r.waiters {
				w.deliver(result{err: fmt.Errorf("stunx: probe %v: read: %w", w.p.server, err)})
			}
		}
		if len(r.waiters) == 0 && demux.conns[r.pc] == r {
			delete(demux.conns, r.pc)
		}
	}
	close(done)
	demux.mu.Unlock()
}

// dispatch hands one packet to the waiter whose transaction id it carries,
// if it is a valid answer to it. c is the read loop's codec.
func (r *reader) dispatch(c *codec, b []byte, from net.Addr, at time.Time) {
	m, err := c.decode(b)
	if err != nil || (m.Type != stun.BindingSuccess && m.Type != stun.BindingError) {
		r.ignoredByAll()
		return
	}
	demux.mu.Lock()
	w := r.waiters[m.TransactionID]
	demux.mu.Unlock()
	if w == nil {
		r.ignoredByAll()
		return
	}
	p := w.p
	// The port must be the server's; the address may differ: a concentrator
	// with several addresses answers on the same socket, and the kernel
	// picks the reply's source address from its routes (quic-go's WriteTo
	// cannot choose it). The 96-bit transaction id is what authenticates
	// the answer.
	if addrPortOf(from).Port() != p.serverAP.Port() {
		p.Stats.Ignored.Add(1)
		return
	}
	if m.Type == stun.BindingError {
		w.deliver(result{err: errorResponse(m)})
		return
	}
	mapped, ok := c.mappedAddress(m)
	if !ok {
		p.Stats.Ignored.Add(1)
		return
	}
	w.deliver(result{mapped: mapped, at: at})
}

// deliver hands res to the waiting Probe unless it already has an answer
// (a response to a retransmission, say).
func (w *waiter) deliver(res result) {
	select {
	case w.ch <- res:
	default:
	}
}

// ignoredByAll counts a packet that answers nobody on every Prober waiting.
func (r *reader) ignoredByAll() {
	demux.mu.Lock()
	defer demux.mu.Unlock()
	var seen []*Prober
	for _, w := range r.waiters {
		counted := false
		for _, p := range seen {
			counted = counted || p == w.p
		}
		if !counted {
			seen = append(seen, w.p)
			w.p.Stats.Ignored.Add(1)
		}
	}
}

// errorResponse decodes the ERROR-CODE of a Binding error response.
func errorResponse(m *stun.Message) *ResponseError {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return &ResponseError{Reason: "(no valid ERROR-CODE)"}
	}
	reason := ec.Reason // aliases m
	if len(reason) > 128 {
		reason = reason[:128]
	}
	return &ResponseError{Code: int(ec.Code), Reason: string(reason)}
}
