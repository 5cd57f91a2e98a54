package pktfec

import (
	"encoding/binary"
	"sync"

	"braid/internal/bufpool"
)

// window is how many recent sequence numbers a receiver tracks: each
// seen or not, and (while the peer sends parity) each one's packet kept for
// repair. It spans several groups of the largest code plus reordering.
const window = 256

// pendingGroups is how many groups' parity a receiver holds at once while
// it waits for enough of their packets.
const pendingGroups = 8

// receiver rebuilds what one peer's packets lost. Only the Conn's reading
// goroutine calls it, under Conn.rmu.
type receiver struct {
	started bool
	hi      uint32 // highest seq seen
	seen    [window / 64]uint64
	kept    [window][]byte // wire packets of recent seqs, as [hdr | packet]; nil when not kept
	keptSeq [window]uint32

	groups [pendingGroups]pgroup
	next   int // the pending slot to reuse next

	expected, received, repaired uint32
	duplicates                   uint64

	lastReportExpected uint32
	mayKeep            bool // the Conn's budget has room for one more
	keptN              int  // entries of kept in use
}

// pgroup is one group's parity waiting for repair.
type pgroup struct {
	used   bool
	h      parityHeader
	sl     int
	parity [MaxM][]byte // payloads, pooled; nil where not received
	have   int
}

func (r *receiver) bit(seq uint32) bool {
	i := seq % window
	return r.seen[i/64]&(1<<(i%64)) != 0
}

func (r *receiver) setBit(seq uint32) {
	i := seq % window
	r.seen[i/64] |= 1 << (i % 64)
}

func (r *receiver) clearBit(seq uint32) {
	i := seq % window
	r.seen[i/64] &^= 1 << (i % 64)
	if r.kept[i] != nil {
		bufpool.Put(r.kept[i])
		r.kept[i] = nil
		r.keptN--
	}
}

// inWindow tells whether seq is among the last window seqs up to hi.
func (r *receiver) inWindow(seq uint32) bool {
	d := seqDiff(seq, r.hi)
	return d <= 0 && d > -window
}

// advance accounts for seq, returning false for a duplicate. A packet
// older than the window counts as new: quic-go tells duplicates apart
// itself.
func (r *receiver) advance(seq uint32) bool {
	if !r.started {
		r.started, r.hi = true, seq
		r.expected = 1
		r.setBit(seq)
		return true
	}
	d := seqDiff(seq, r.hi)
	switch {
	case d > 0:
		for i := int32(1); i <= min(d, window); i++ {
			r.clearBit((r.hi + uint32(i)) & seqMask)
		}
		r.expected += uint32(d)
		r.hi = seq
	case d <= -window:
		return true
	case r.bit(seq):
		r.duplicates++
		return false
	}
	r.setBit(seq)
	return true
}

// onData takes a data packet as read (pkt is the whole wire packet in a
// pooled buffer the receiver may keep). It returns false when the packet
// is a duplicate and must not be handed to quic-go, and whether it kept
// pkt.
func (r *receiver) onData(pkt []byte, out *rebuilt) (deliver, kept bool) {
	seq := getSeq(pkt[1:])
	if !r.advance(seq) {
		return false, false
	}
	r.received++
	if pkt[0] == typeGroupData && r.mayKeep && r.inWindow(seq) {
		i := seq % window
		if r.kept[i] != nil {
			bufpool.Put(r.kept[i])
		} else {
			r.keptN++
		}
		r.kept[i], r.keptSeq[i] = pkt, seq
		kept = true
	}
	// A late packet may be what a waiting group needed.
	for g := range r.groups {
		if r.groups[g].used && seqDiff(seq, r.groups[g].h.first) >= 0 && seqDiff(seq, r.groups[g].h.first) < int32(r.groups[g].h.n) {
			r.tryRepair(g, out)
		}
	}
	return true, kept
}

// onParity takes a parity packet; rebuilt packets go to out.
func (r *receiver) onParity(pkt []byte, out *rebuilt) error {
	h, payload, err := parseParity(pkt)
	if err != nil {
		return err
	}
	if !r.started {
		return nil
	}
	last := (h.first + uint32(h.n) - 1) & seqMask
	if seqDiff(h.first, r.hi) <= -window+MaxK || seqDiff(last, r.hi) > window/2 {
		return nil // too old to repair, or too far ahead to believe
	}
	if r.missing(h) == 0 {
		return nil
	}
	g := r.group(h, len(payload))
	if g < 0 {
		return errMalformed // the same group announced with another code or size
	}
	pg := &r.groups[g]
	if pg.parity[h.j] == nil {
		pg.parity[h.j] = append(bufpool.Get(len(payload))[:0], payload...)
		pg.have++
	}
	r.tryRepair(g, out)
	return nil
}

// missing counts the group's packets not seen.
func (r *receiver) missing(h parityHeader) int {
	n := 0
	for i := range h.n {
		s := (h.first + uint32(i)) & seqMask
		if !r.inWindow(s) || !r.bit(s) {
			n++
		}
	}
	return n
}

// group returns the pending slot for h, taking the oldest when none
// matches; -1 when a slot for the same group disagrees with h.
func (r *receiver) group(h parityHeader, sl int) int {
	for g := range r.groups {
		pg := &r.groups[g]
		if pg.used && pg.h.first == h.first {
			if pg.h.n != h.n || pg.h.k != h.k || pg.h.m != h.m || pg.sl != sl {
				return -1
			}
			return g
		}
	}
	g := r.next
	r.next = (r.next + 1) % pendingGroups
	r.release(g)
	r.groups[g] = pgroup{used: true, h: h, sl: sl}
	r.groups[g].h.j = 0
	return g
}

func (r *receiver) release(g int) {
	pg := &r.groups[g]
	for j := range pg.parity {
		if pg.parity[j] != nil {
			bufpool.Put(pg.parity[j])
			pg.parity[j] = nil
		}
	}
	pg.used, pg.have = false, 0
}

var zeroShard [maxShard]byte

// shardsPool holds the slice headers handed to the coder.
var shardsPool = sync.Pool{New: func() any { return new([MaxK + MaxM][]byte) }}

// tryRepair rebuilds group g's missing packets once it holds as many
// shards as the code's k: its kept packets, the zero shards past n, and
// the parity received.
func (r *receiver) tryRepair(g int, out *rebuilt) {
	pg := &r.groups[g]
	h := pg.h
	avail, lost := h.k-h.n+pg.have, 0
	for i := range h.n {
		s := (h.first + uint32(i)) & seqMask
		idx := s % window
		switch {
		case r.inWindow(s) && r.kept[idx] != nil && r.keptSeq[idx] == s:
			avail++
		case !r.inWindow(s) || !r.bit(s):
			lost++
		}
	}
	if lost == 0 {
		r.release(g)
		return
	}
	if avail < h.k {
		return
	}
	enc, err := coder(h.k, h.m)
	if err != nil {
		r.release(g)
		return
	}
	arr := shardsPool.Get().(*[MaxK + MaxM][]byte)
	shards := arr[:h.k+h.m]
	defer func() { clear(shards); shardsPool.Put(arr) }()
	for i := range h.n {
		s := (h.first + uint32(i)) & seqMask
		idx := s % window
		if r.inWindow(s) && r.kept[idx] != nil && r.keptSeq[idx] == s {
			// The kept wire packet becomes the shard [len | packet |
			// zeros]: its seq bytes are no longer needed.
			p := r.kept[idx]
			l := len(p) - dataHdr
			if lenPrefix+l > pg.sl || cap(p) < dataHdr+pg.sl {
				r.release(g)
				return // a parity shorter than a packet it covers: forged
			}
			p = p[:cap(p)]
			binary.BigEndian.PutUint16(p[dataHdr-lenPrefix:], uint16(l))
			clear(p[dataHdr+l : dataHdr-lenPrefix+pg.sl])
			shards[i] = p[dataHdr-lenPrefix : dataHdr-lenPrefix+pg.sl]
			continue
		}
		shards[i] = bufpool.Get(pg.sl)[:0]
	}
	for i := h.n; i < h.k; i++ {
		shards[i] = zeroShard[:pg.sl]
	}
	for j := range h.m {
		if pg.parity[j] != nil {
			shards[h.k+j] = pg.parity[j]
		}
	}
	err = enc.ReconstructData(shards)
	for i := range h.n {
		s := (h.first + uint32(i)) & seqMask
		idx := s % window
		if r.inWindow(s) && r.kept[idx] != nil && r.keptSeq[idx] == s {
			// Leave the kept packet as it came, so a later group
			// decode reads it the same way.
			continue
		}
		sh := shards[i]
		if err != nil || len(sh) != pg.sl {
			if cap(sh) > 0 {
				bufpool.Put(sh[:cap(sh)])
			}
			continue
		}
		l := int(binary.BigEndian.Uint16(sh))
		if l == 0 || lenPrefix+l > pg.sl || !isQUIC(sh[lenPrefix:lenPrefix+l]) || (r.inWindow(s) && r.bit(s)) {
			bufpool.Put(sh[:cap(sh)])
			continue // seen meanwhile, or garbage from forged parity
		}
		if seqDiff(s, r.hi) > 0 {
			r.advance(s)
		} else {
			r.setBit(s)
		}
		r.repaired++
		out.push(sh, lenPrefix, lenPrefix+l)
	}
	r.release(g)
}

// drop frees everything the receiver holds.
func (r *receiver) drop() {
	for i := range r.kept {
		if r.kept[i] != nil {
			bufpool.Put(r.kept[i])
			r.kept[i] = nil
		}
	}
	r.keptN = 0
	for g := range r.groups {
		r.release(g)
	}
}

// rebuilt is a queue of rebuilt packets waiting for quic-go's reads.
type rebuilt struct {
	q    []rebuiltPacket
	from peerKey // whose packets are being rebuilt now
}

type rebuiltPacket struct {
	buf        []byte // pooled
	start, end int
	from       peerKey
}

func (q *rebuilt) push(buf []byte, start, end int) {
	q.q = append(q.q, rebuiltPacket{buf: buf, start: start, end: end, from: q.from})
}
