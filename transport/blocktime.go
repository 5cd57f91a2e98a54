package transport

import (
	"slices"
	"sync/atomic"
	"time"

	"braid/scheduler"
)

// blockTimeWindow is how many of a class's latest blocks BlockAckP99
// looks at, as the path monitor's RTTP99 looks at 128 probes.
const blockTimeWindow = 128

// blockTimes keeps, per traffic class, the times from a block's first
// send to its acknowledgement of the last blockTimeWindow blocks: the
// measured side of the plan's predicted p99. A class's ring is made on
// its first block, so a session pays only for the classes it uses.
// Writers (Flow.onAck) and readers (BlockAckP99) take no lock.
type blockTimes struct {
	rings [scheduler.MaxClasses]atomic.Pointer[blockRing]
}

type blockRing struct {
	n  atomic.Uint64 // blocks observed
	ns [blockTimeWindow]atomic.Int64
}

func (t *blockTimes) observe(class int, d time.Duration) {
	if class < 0 || class >= len(t.rings) {
		return
	}
	r := t.rings[class].Load()
	if r == nil {
		t.rings[class].CompareAndSwap(nil, new(blockRing))
		r = t.rings[class].Load()
	}
	i := r.n.Add(1) - 1
	r.ns[i%blockTimeWindow].Store(int64(d))
}

// BlockAckP99 returns the 99th percentile of the times from first send
// to acknowledgement of class's last 128 blocks sent by this side, and
// how many blocks it is over (0 and 0 before the first). It is an upper
// bound on the blocks' delivery time: it includes the acknowledgement's
// way back and the peer's ack delay.
func (s *Session) BlockAckP99(class int) (time.Duration, int) {
	if class < 0 || class >= len(s.blockTimes.rings) {
		return 0, 0
	}
	r := s.blockTimes.rings[class].Load()
	if r == nil {
		return 0, 0
	}
	n := int(min(r.n.Load(), blockTimeWindow))
	if n == 0 {
		return 0, 0
	}
	var buf [blockTimeWindow]int64 // on the stack: a scrape reads every session
	v := buf[:n]
	for i := range v {
		v[i] = r.ns[i].Load()
	}
	slices.Sort(v)
	return time.Duration(v[(n*99+99)/100-1]), n
}
