package transport

import (
	"github.com/klauspost/compress/s2"

	"braid/internal/bufpool"
	"braid/transport/wire"
)

// Compression, per block with S2 (klauspost/compress; S2's block format:
// no framing, no per-call allocation, about a gigabyte a second per core).
// A flow compresses only when its class's plan says compression pays on
// its paths for this device (scheduler.Plan.Compress, under bestvalue)
// and a sample of its bytes, its first data block of minCompress bytes or
// more, shrinks by 10% or more. A flow whose sample does not shrink is
// sampled again every resample blocks (its content may change). Any
// block that would not shrink goes as it is. The receiver decompresses
// before delivering, so offsets and credit count the bytes the
// application wrote.

const (
	minCompress     = 4 << 10 // smaller blocks are not worth it
	resample        = 256     // blocks between samples of a flow that did not shrink
	maxDecodedBlock = 1 << 20 // the most a compressed block may decode to
)

// compress returns buf compressed into a pooled buffer, or nil when the
// block goes uncompressed.
func (f *Flow) compress(buf []byte) []byte {
	s := f.s
	if s.comp == nil || !s.comp.Compress(int(f.class.Load())) {
		return nil
	}
	c := f.comp.Load()
	if c < 0 {
		if f.compSkip.Add(-1) > 0 {
			return nil
		}
	}
	enc := bufpool.Get(s2.MaxEncodedLen(len(buf)))
	out := s2.Encode(enc, buf)
	shrunk := len(out)*10 <= len(buf)*9
	if c <= 0 {
		if shrunk {
			f.comp.Store(1)
		} else {
			f.comp.Store(-1)
			f.compSkip.Store(resample)
		}
	}
	if !shrunk && (c <= 0 || len(out) >= len(buf)) {
		bufpool.Put(enc)
		return nil
	}
	s.stats.BlocksCompressed.Add(1)
	s.stats.BytesSaved.Add(uint64(len(buf) - len(out)))
	return out
}

// decompress replaces a complete compressed block's data shards with one
// segment of the decompressed bytes, appended to the flow's read queue,
// and returns its length. The shards go back to the pool. Caller holds
// f.mu.
func (f *Flow) decompress(rb *rxBlock) (int, error) {
	h := &rb.hdr
	k := int(h.K)
	var comp []byte
	var tmp []byte
	if k == 1 {
		comp = rb.shards[0][:h.BlockLen]
	} else {
		tmp = bufpool.Get(int(h.BlockLen))
		left := int(h.BlockLen)
		for i := 0; i < k && left > 0; i++ {
			n := copy(tmp[int(h.BlockLen)-left:], rb.shards[i][:min(left, len(rb.shards[i]))])
			left -= n
		}
		comp = tmp[:h.BlockLen]
	}
	n, err := s2.DecodedLen(comp)
	if err == nil && (n <= 0 || n > maxDecodedBlock || h.Offset+uint64(n) > f.rxLimit) {
		err = wire.Malformed("flow %d block %d decodes to %d bytes", f.id, h.Block, n)
	}
	var out []byte
	if err == nil {
		out = getShard(n)
		if _, derr := s2.Decode(out, comp); derr != nil {
			putShard(out)
			err = wire.Malformed("flow %d block %d: %v", f.id, h.Block, derr)
		}
	}
	if tmp != nil {
		bufpool.Put(tmp)
	}
	for i := range k {
		if sh := rb.shards[i]; sh != nil {
			f.s.rxHeld.Add(-int64(cap(sh)))
			putShard(sh[:cap(sh)])
			rb.shards[i] = nil
		}
	}
	if err != nil {
		return 0, err
	}
	f.rxSegs = append(f.rxSegs, out[:n])
	return n, nil
}
