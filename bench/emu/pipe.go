package emu

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Pipe is one direction of an emulated link that is not a UDP relay: each
// packet Sent passes the same Shaper a Relay's directions use (rate, delay,
// jitter, loss, bursts, traces, outages, schedules) and is handed, when
// due, to the deliver function, from one goroutine, in delivery order. The
// bench's kernel systems forward IP packets between TUN devices through a
// pair of Pipes per path.
type Pipe struct {
	d         *direction
	broken    atomic.Bool
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewPipe starts a Pipe over l that delivers with deliver (whose error
// counts the packet as DroppedOther). overhead is the bytes at the head of
// every packet the link neither charges nor counts: a forwarder of whole
// IPv4 packets passes 28 so that a packet costs what a UDP relay charges
// for the same payload (the relay sees UDP payloads only). seed makes the
// Shaper's decisions deterministic.
func NewPipe(l Link, seed int64, overhead int, deliver func([]byte) error) *Pipe {
	p := &Pipe{done: make(chan struct{})}
	p.d = newDirection(&p.broken, l, seed)
	p.d.sink = deliver
	p.d.overhead = max(overhead, 0)
	p.SetStart(time.Now())
	p.wg.Add(1)
	go p.d.run(p.done, &p.wg)
	return p
}

// Send admits a copy of b (the caller may reuse b at once) to the link.
func (p *Pipe) Send(b []byte) {
	if len(b) == 0 || len(b) > maxDatagram {
		p.d.dropOther(len(b))
		return
	}
	select {
	case <-p.done:
		p.d.dropOther(len(b))
		return
	default:
	}
	p.d.enqueue(b, nil, netip.AddrPort{}, nil)
}

// SetBroken is the kill switch: while broken, every packet is dropped,
// those already queued included.
func (p *Pipe) SetBroken(broken bool) {
	p.broken.Store(broken)
	if broken {
		p.d.flushBroken()
	}
}

// SetLink changes the link at run time, as Relay.SetLinks does.
func (p *Pipe) SetLink(l Link) { p.d.setLink(l) }

// SetStart restarts the timeline at t, as Relay.SetStart does.
func (p *Pipe) SetStart(t time.Time) { p.d.setStart(t) }

// Stats returns the Pipe's counters; byte counts leave out each packet's
// overhead.
func (p *Pipe) Stats() DirStats { return p.d.stats() }

// Close stops the Pipe's goroutine and drops what it still queues. It is
// idempotent.
func (p *Pipe) Close() {
	p.closeOnce.Do(func() {
		close(p.done)
		p.wg.Wait()
		p.d.discard()
	})
}
