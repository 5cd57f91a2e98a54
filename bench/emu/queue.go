package emu

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxDatagram is the largest UDP payload; read buffers have this size so
// that no datagram is ever truncated.
const maxDatagram = 65535

// Buffers are pooled in power-of-two size classes from 2 KiB (a full-size
// QUIC packet) to 64 KiB (the largest datagram), so a queued packet holds a
// buffer close to its size instead of a 64 KiB read buffer.
const (
	minBufShift = 11 // 2 KiB
	numBufPools = 6  // 2, 4, 8, 16, 32, 64 KiB
)

var bufPools [numBufPools]sync.Pool

func bufClass(n int) int {
	c := 0
	for n > 1<<(minBufShift+c) {
		c++
	}
	return c
}

// getBuf returns a pooled buffer of at least n bytes (n <= 64 KiB). Pointers
// to slices are pooled so that Put does not allocate.
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if v := bufPools[c].Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, 1<<(minBufShift+c))
	return &b
}

func putBuf(b *[]byte) {
	bufPools[bufClass(len(*b))].Put(b)
}

// packet is a datagram waiting in a direction's scheduler.
type packet struct {
	at   time.Time // delivery time
	seq  uint64    // admission order, to keep the heap stable
	buf  *[]byte
	n    int
	conn *net.UDPConn
	addr netip.AddrPort // destination; zero when conn is connected
	dup  bool           // write twice
}

// copies is how many times the packet is to be written.
func (p *packet) copies() uint64 {
	if p.dup {
		return 2
	}
	return 1
}

func (p *packet) before(q *packet) bool {
	if p.at.Equal(q.at) {
		return p.seq < q.seq
	}
	return p.at.Before(q.at)
}

// ring is a growable FIFO of packets. It holds the common case, packets with
// non-decreasing delivery times, at O(1) per packet.
type ring struct {
	buf  []packet
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) push(p packet) {
	if r.n == len(r.buf) {
		nb := make([]packet, max(64, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = p
	r.n++
}

func (r *ring) front() *packet { return &r.buf[r.head] }

func (r *ring) back() *packet { return &r.buf[(r.head+r.n-1)%len(r.buf)] }

func (r *ring) pop() packet {
	p := r.buf[r.head]
	r.buf[r.head] = packet{} // drop references for the GC
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return p
}

// pktHeap is a min-heap by delivery time for the packets that would break the
// FIFO order (reordered ones). It is hand-written rather than container/heap
// to avoid boxing every packet in an interface.
type pktHeap []packet

func (h *pktHeap) push(p packet) {
	*h = append(*h, p)
	s := *h
	i := len(s) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !s[i].before(&s[parent]) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *pktHeap) pop() packet {
	s := *h
	p := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = packet{}
	s = s[:last]
	i := 0
	for {
		l, smallest := 2*i+1, i
		if l < len(s) && s[l].before(&s[smallest]) {
			smallest = l
		}
		if r := l + 1; r < len(s) && s[r].before(&s[smallest]) {
			smallest = r
		}
		if smallest == i {
			break
		}
		s[i], s[smallest] = s[smallest], s[i]
		i = smallest
	}
	*h = s
	return p
}
