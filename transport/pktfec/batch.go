package pktfec

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// outQueue is where a Conn's coded packets wait for the one goroutine that
// writes them to the socket. quic-go hands a Conn one packet per WriteTo
// (a Conn is not an OOBCapablePacketConn, whose batched reads would bypass
// the decoder), and one sendto per packet cost braid four times the CPU
// per byte that quic-go's own batched sends cost on loopback
// (docs/BENCH.md, "Where the CPU goes"). So WriteTo copies the packet, with
// its coding header, into the queue and returns; the writer takes all that
// waits at once and sends each run of packets to one peer that are the
// same size (the last may be shorter) as one UDP_SEGMENT (GSO) write,
// where the kernel has it. Packets keep their order: a group's parity
// never overtakes its last packet.
//
// The queue holds at most queueBytes; a writer waits for room, which is
// how the socket's pace reaches quic-go, as a blocking sendto did.
type outQueue struct {
	udp *net.UDPConn
	oob []byte      // the writer's scratch for UDP_SEGMENT
	gso atomic.Bool // UDP_SEGMENT works on this socket (gsoSupported, no EIO yet)

	mu    sync.Mutex
	ready sync.Cond // the writer waits for packets
	room  sync.Cond // senders wait for room
	buf   []byte    // the packets waiting, back to back
	ents  []outPacket
	spare struct {
		buf  []byte
		ents []outPacket
	}
	closed bool
	done   chan struct{} // the writer has ended

	writes, segments atomic.Uint64 // socket writes, packets they carried
}

// outPacket is one packet in outQueue.buf.
type outPacket struct {
	off, n int
	to     netip.AddrPort
	s      *sender // told of a failed write
}

const (
	// queueBytes bounds each of the queue's two buffers: about 180
	// full-size packets, a few hundred microseconds of a fast link.
	queueBytes = 256 << 10
	// maxSegments and maxGSOBytes bound one UDP_SEGMENT write: the
	// kernel takes at most 64 segments, and one UDP datagram's payload.
	maxSegments = 64
	maxGSOBytes = 65000
)

func newOutQueue(udp *net.UDPConn) *outQueue {
	q := &outQueue{udp: udp, oob: segmentOOB(), buf: make([]byte, 0, queueBytes), done: make(chan struct{})}
	q.spare.buf = make([]byte, 0, queueBytes)
	q.ready.L, q.room.L = &q.mu, &q.mu
	q.gso.Store(gsoSupported(udp))
	go q.run()
	return q
}

// put queues hdr and body as one packet to to. It waits while the queue
// is full, and fails once the queue is closed.
func (q *outQueue) put(s *sender, to netip.AddrPort, hdr, body []byte) error {
	n := len(hdr) + len(body)
	q.mu.Lock()
	for !q.closed && len(q.buf)+n > cap(q.buf) && len(q.ents) > 0 {
		q.room.Wait()
	}
	if q.closed {
		q.mu.Unlock()
		return net.ErrClosed
	}
	off := len(q.buf)
	q.buf = append(q.buf, hdr...)
	q.buf = append(q.buf, body...)
	q.ents = append(q.ents, outPacket{off: off, n: n, to: to, s: s})
	if len(q.ents) == 1 {
		q.ready.Signal()
	}
	q.mu.Unlock()
	return nil
}

// run writes out what waits until the queue is closed and empty.
func (q *outQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.ents) == 0 && !q.closed {
			q.ready.Wait()
		}
		if len(q.ents) == 0 {
			q.mu.Unlock()
			return
		}
		buf, ents := q.buf, q.ents
		q.buf, q.ents = q.spare.buf[:0], q.spare.ents[:0]
		q.spare.buf, q.spare.ents = nil, nil
		q.room.Broadcast()
		q.mu.Unlock()

		q.write(buf, ents)

		clear(ents)
		q.mu.Lock()
		q.spare.buf, q.spare.ents = buf[:0], ents[:0]
		q.mu.Unlock()
	}
}

// write sends ents, in order, in as few socket writes as the sizes allow.
func (q *outQueue) write(buf []byte, ents []outPacket) {
	for i := 0; i < len(ents); {
		e := ents[i]
		j := i + 1
		if q.gso.Load() {
			for j < len(ents) && j-i < maxSegments && ents[j].to == e.to &&
				ents[j-1].n == e.n && ents[j].n <= e.n && (j-i+1)*e.n <= maxGSOBytes {
				j++
			}
		}
		var err error
		if j-i == 1 {
			_, err = q.udp.WriteToUDPAddrPort(buf[e.off:e.off+e.n], e.to)
		} else {
			last := ents[j-1]
			err = writeSegments(q.udp, q.oob, buf[e.off:last.off+last.n], e.n, e.to)
			if isGSOError(err) {
				// The interface cannot segment (no checksum offload):
				// one packet a write from now on, as quic-go does.
				q.gso.Store(false)
				err = nil
				for _, f := range ents[i:j] {
					if _, werr := q.udp.WriteToUDPAddrPort(buf[f.off:f.off+f.n], f.to); werr != nil {
						err = werr
					}
				}
				q.writes.Add(uint64(j - i - 1))
			}
		}
		q.writes.Add(1)
		q.segments.Add(uint64(j - i))
		if err != nil {
			for _, f := range ents[i:j] {
				if f.s != nil {
					f.s.failed(err)
				}
			}
		}
		i = j
	}
}

// close writes out what waits, then ends the writer; puts fail from now on.
func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.ready.Broadcast()
	q.room.Broadcast()
	q.mu.Unlock()
	<-q.done
}

// inBatch is what one socket read brought in: with UDP_GRO (Linux), the
// kernel hands over up to 64 datagrams of one sender back to back, each
// gso bytes long (the last may be shorter), in one read; next returns
// them one at a time. On loopback, where the sender's UDP_SEGMENT write
// then reaches the socket whole, neither end segments it at all. Used by
// ReadFrom's goroutine only.
type inBatch struct {
	udp      *net.UDPConn
	gro      bool
	buf, oob []byte
	off, n   int // the datagrams not yet returned: buf[off:n]
	gso      int
	from     netip.AddrPort
}

func newInBatch(udp *net.UDPConn) *inBatch {
	b := &inBatch{udp: udp, gro: enableGRO(udp)}
	if b.gro {
		b.buf, b.oob = make([]byte, 1<<16), make([]byte, 64)
	}
	return b
}

// next reads the next datagram into p, as ReadFromUDPAddrPort does.
func (b *inBatch) next(p []byte) (int, netip.AddrPort, error) {
	if !b.gro {
		return b.udp.ReadFromUDPAddrPort(p)
	}
	if b.off >= b.n {
		n, oobn, _, from, err := b.udp.ReadMsgUDPAddrPort(b.buf, b.oob)
		if err != nil {
			return 0, from, err
		}
		b.off, b.n, b.from = 0, n, from
		b.gso = groSize(b.oob[:oobn])
		if b.gso <= 0 || b.gso > n {
			b.gso = n
		}
		if n == 0 {
			return 0, from, nil
		}
	}
	end := min(b.off+b.gso, b.n)
	k := copy(p, b.buf[b.off:end])
	b.off = end
	return k, b.from, nil
}
