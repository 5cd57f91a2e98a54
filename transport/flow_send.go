package transport

// A flow's send side: blocks cut from writes, coded and dispatched,
// held until acknowledged (txBlock), the peer's credit, and re-sends.

import (
	"braid/transport/wire"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"braid/internal/bufpool"
	"braid/internal/notify"
)

// txBlock is a block kept until the peer acknowledges it. Its buffer holds
// k+m shards of shardLen bytes; refs counts the retention reference plus
// each queued shard, and the last release returns the buffer to the pool.
type txBlock struct {
	f     *Flow
	hdr   wire.ShardHeader // Index is set per shard
	buf   []byte
	refs  atomic.Int32
	acked atomic.Bool
	// dropped: dispatch gave up on the shards it had not placed, so a
	// shard with no path is lost, not on its way.
	dropped atomic.Bool
	sentAt  time.Time // last (re)send; under f.mu
	firstAt time.Time // when it was cut and first sent; under f.mu (blocktime.go)
	tries   int       // overdue re-sends; under f.mu
	// held is the send space (Session.takeSendSpace) the block holds
	// until it is acknowledged or dropped; under f.mu.
	held int64
	path [wire.MaxShards]atomic.Pointer[Path]
	// conn is the connection each shard was last written on; changed
	// only through setConn and finish, which keep pconn.holding true.
	conn [wire.MaxShards]atomic.Pointer[pconn]
}

func (b *txBlock) n() int { return int(b.hdr.K) + int(b.hdr.M) }

// setConn records shard i as written on c (nil: on no connection), and
// moves its count from the connection it was on to c. A shard recorded
// after its block was acknowledged is taken off again here: finish may
// have swept the block already, and each swap moves a count once.
func (b *txBlock) setConn(i int, c *pconn) {
	old := b.conn[i].Swap(c)
	if old == c {
		return
	}
	if c != nil {
		c.holding.Add(1)
	}
	if old != nil {
		old.unhold()
	}
	if c != nil && b.acked.Load() && b.conn[i].CompareAndSwap(c, nil) {
		c.unhold()
	}
}

// finish marks the block acknowledged (or dropped with its flow) and
// takes its shards off their connections' counts.
func (b *txBlock) finish() {
	b.acked.Store(true)
	for i := range b.n() {
		if old := b.conn[i].Swap(nil); old != nil {
			old.unhold()
		}
	}
}

func (b *txBlock) shard(i int) []byte {
	l := int(b.hdr.ShardLen)
	return b.buf[i*l : (i+1)*l]
}

func (b *txBlock) release() {
	if b.refs.Add(-1) == 0 {
		bufpool.Put(b.buf)
		b.buf = nil
	}
}

// live reports whether shard i sits on a live connection or in the queue
// of a live path.
func (b *txBlock) live(i int) bool {
	if c := b.conn[i].Load(); c != nil {
		return c.usable()
	}
	// A shard with no path yet is still being dispatched (dispatch waits
	// for room and places it): sending it again would send it twice.
	p := b.path[i].Load()
	if p == nil {
		return !b.dropped.Load()
	}
	return p.Up()
}

// Write sends p as one or more blocks, waiting for credit.
func (f *Flow) Write(p []byte) (int, error) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	n := 0
	for len(p) > 0 {
		take, err := f.waitCredit(len(p))
		if err != nil {
			return n, err
		}
		buf := f.blockBuf(take)
		copy(buf, p[:take])
		if err := f.sendData(buf, take); err != nil {
			return n, err
		}
		p = p[take:]
		n += take
	}
	return n, nil
}

// ReadFrom reads r into blocks until EOF, without an intermediate copy.
// It does not close the flow's sending side.
func (f *Flow) ReadFrom(r io.Reader) (int64, error) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	var total int64
	for {
		take, err := f.waitCredit(f.s.cfg.BlockSize)
		if err != nil {
			return total, err
		}
		buf := f.blockBuf(take)
		n, rerr := r.Read(buf[:take])
		if n > 0 {
			if err := f.sendData(buf, n); err != nil {
				return total, err
			}
			total += int64(n)
		} else {
			bufpool.Put(buf)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// sendData takes the session's send space for buf (a pooled buffer it
// now owns) and sends its first n bytes as a data block.
func (f *Flow) sendData(buf []byte, n int) error {
	held := int64(cap(buf))
	if err := f.s.takeSendSpace(context.Background(), held, f.dead); err != nil {
		bufpool.Put(buf)
		return err
	}
	return f.sendOwned(context.Background(), buf, n, 0, held)
}

// blockBuf returns a pooled buffer big enough for a block of up to n data
// bytes with its padding and parity.
func (f *Flow) blockBuf(n int) []byte {
	k, m := f.s.coding(n, int(f.class.Load()))
	return bufpool.Get((k + m) * wire.ShardLenFor(n, k))
}

// waitCredit waits until the peer grants flow credit and returns how much
// of want (at most a block) may be sent. Only the flow's one sender spends
// flow credit, so it stays available; the session's send space is shared
// and is taken for the buffer actually sent, in sendData. However much
// credit the peer grants, a flow keeps at most FlowWindow bytes sent and
// unacknowledged: a peer that reads and never acknowledges cannot make
// this side hold more.
func (f *Flow) waitCredit(want int) (int, error) {
	want = min(want, f.s.cfg.BlockSize)
	for {
		f.mu.Lock()
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return 0, err
		}
		if f.txFin {
			f.mu.Unlock()
			return 0, errors.New("write after close")
		}
		acked := f.txOffset
		if len(f.txBlocks) > 0 {
			acked = f.txBlocks[0].hdr.Offset
		}
		limit := min(f.txLimit, acked+uint64(f.s.cfg.FlowWindow))
		avail := int64(limit) - int64(f.txOffset)
		if avail > 0 && len(f.txBlocks) < maxBlocksInFlight {
			f.mu.Unlock()
			return int(min(int64(want), avail)), nil
		}
		f.mu.Unlock()
		if err := f.wait(f.writable, nil); err != nil {
			return 0, err
		}
	}
}

// sendBlock sends a small control block (open, reply, fin) that carries
// data: it needs no credit.
func (f *Flow) sendBlock(ctx context.Context, data []byte, flags uint8) error {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	buf := f.blockBuf(len(data))
	copy(buf, data)
	return f.sendOwned(ctx, buf, len(data), flags, 0)
}

// sendOwned codes the n bytes at the start of buf (a pooled buffer it now
// owns) into a block and dispatches its shards; held is the send space
// taken for it. Caller holds writeMu.
func (f *Flow) sendOwned(ctx context.Context, buf []byte, n int, flags uint8, held int64) error {
	raw := n // the bytes the block carries, for offsets and credit
	if flags&(wire.FlagOpen|wire.FlagReply) == 0 && n >= minCompress {
		if enc := f.compress(buf[:n]); enc != nil {
			bufpool.Put(buf)
			buf, n = enc, len(enc)
			flags |= wire.FlagS2
		}
	}
	k, m := f.s.coding(n, int(f.class.Load()))
	sl := wire.ShardLenFor(n, k)
	if need := (k + m) * sl; cap(buf) < need {
		nb := bufpool.Get(need)
		copy(nb, buf[:n])
		bufpool.Put(buf)
		buf = nb
	}
	buf = buf[:(k+m)*sl]
	clear(buf[n : k*sl])
	if err := encodeParity(buf, sl, k, m); err != nil {
		bufpool.Put(buf)
		f.s.releaseSend(held)
		return err
	}
	b := &txBlock{f: f, buf: buf, held: held}
	b.refs.Store(int32(1 + k + m))
	f.mu.Lock()
	if f.err != nil {
		err := f.err
		f.mu.Unlock()
		bufpool.Put(buf)
		f.s.releaseSend(held)
		return err
	}
	b.hdr = wire.ShardHeader{Flags: flags, K: uint8(k), M: uint8(m), ShardLen: uint32(sl),
		Flow: f.id, Block: f.txNext, Offset: f.txOffset, BlockLen: uint32(n)}
	f.txNext++
	if flags&(wire.FlagOpen|wire.FlagReply) == 0 {
		f.txOffset += uint64(raw)
	}
	if flags&wire.FlagFin != 0 {
		f.txFin = true
	}
	b.sentAt = time.Now()
	b.firstAt = b.sentAt
	f.txBlocks = append(f.txBlocks, b)
	f.mu.Unlock()
	f.s.stats.BlocksSent.Add(1)
	if flags&(wire.FlagOpen|wire.FlagReply) == 0 {
		f.s.offered[f.class.Load()].Add(uint64(raw))
	}
	drop := func(i int) {
		// The flow died or the caller gave up: drop what was not queued.
		b.dropped.Store(true)
		for range k + m - i {
			b.release()
		}
	}
	// Flows take turns, a block each, in the order they came (dispatchTurn);
	// a latency-bound class's shards never wait for room and skip the line.
	if !f.s.priority(int(f.class.Load())) {
		select {
		case <-f.s.dispatchTurn:
			defer func() { f.s.dispatchTurn <- struct{}{} }()
		case <-f.dead:
			drop(0)
			return ErrFlowReset
		case <-f.s.done:
			drop(0)
			return f.s.Err()
		case <-ctx.Done():
			drop(0)
			return ctx.Err()
		}
	}
	for i := range k + m {
		if err := f.s.dispatch(ctx, b, i, f.dead); err != nil {
			drop(i)
			return err
		}
	}
	return nil
}

// CloseWrite sends FIN: the peer reads EOF after the bytes written so far.
func (f *Flow) CloseWrite() error {
	f.mu.Lock()
	done := f.txFin || f.err != nil
	f.mu.Unlock()
	if done {
		return nil
	}
	return f.sendBlock(context.Background(), nil, wire.FlagFin)
}

// onCredit raises the flow's send limit.
func (f *Flow) onCredit(limit uint64) {
	f.mu.Lock()
	if limit > f.txLimit {
		f.txLimit = limit
	}
	f.mu.Unlock()
	notify.Signal(f.writable)
}

// onAck releases every block before next.
func (f *Flow) onAck(next uint64) error {
	f.mu.Lock()
	if next > f.txNext {
		f.mu.Unlock()
		return wire.Malformed("ack of flow %d block %d, only %d sent", f.id, next, f.txNext)
	}
	i := 0
	var held int64
	var now time.Time
	for ; i < len(f.txBlocks) && f.txBlocks[i].hdr.Block < next; i++ {
		b := f.txBlocks[i]
		if now.IsZero() {
			now = time.Now()
		}
		f.s.blockTimes.observe(int(f.class.Load()), now.Sub(b.firstAt))
		if b.hdr.Flags&wire.FlagFin != 0 {
			f.txFinAcked = true
		}
		held += b.held
		b.held = 0
		b.finish()
		b.release()
		f.txBlocks[i] = nil
	}
	f.txBlocks = f.txBlocks[i:]
	f.mu.Unlock()
	f.s.releaseSend(held)
	if i > 0 {
		notify.Signal(f.writable)
		f.maybeRemove()
	}
	return nil
}

// checkOverdue re-sends the shards of the flow's oldest unacknowledged
// block when it has waited longer than rto: a path may be stalled without
// being down yet.
func (f *Flow) checkOverdue(rto time.Duration) {
	f.mu.Lock()
	if len(f.txBlocks) == 0 || f.err != nil {
		f.mu.Unlock()
		return
	}
	b := f.txBlocks[0]
	now := time.Now()
	if now.Sub(b.sentAt) < rto<<min(b.tries, 4) {
		f.mu.Unlock()
		return
	}
	b.sentAt = now
	b.tries++
	f.mu.Unlock()
	best := f.s.bestConn()
	if best == nil {
		return
	}
	// Send k shards again on the best path, preferring those that are not
	// already on it.
	var order [wire.MaxShards]int
	n := 0
	for i := range b.n() {
		if c := b.conn[i].Load(); c == nil || c.p != best.p {
			order[n] = i
			n++
		}
	}
	for i := range b.n() {
		if c := b.conn[i].Load(); c != nil && c.p == best.p {
			order[n] = i
			n++
		}
	}
	for _, i := range order[:int(b.hdr.K)] {
		if f.s.resend(b, i, best.p) {
			f.s.stats.ShardsOverdue.Add(1)
		}
	}
}

// resendLost re-sends shards of blocks that can no longer complete from
// the shards on live connections.
func (f *Flow) resendLost() {
	f.mu.Lock()
	blocks := append([]*txBlock(nil), f.txBlocks...)
	f.mu.Unlock()
	for _, b := range blocks {
		if b.acked.Load() {
			continue
		}
		live := 0
		for i := range b.n() {
			if b.live(i) {
				live++
			}
		}
		for i := 0; i < b.n() && live < int(b.hdr.K); i++ {
			if !b.live(i) {
				c := b.conn[i].Load()
				if p := f.s.pickPath(int(b.hdr.ShardLen), i, int(f.class.Load()), true); p != nil {
					if f.s.resend(b, i, p) && c != nil && c.retiring.Load() && c.closed() {
						f.s.stats.ShardsCut.Add(1)
					}
					live++
				}
			}
		}
	}
}
