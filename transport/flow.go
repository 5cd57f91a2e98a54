package transport

import (
	"braid/scheduler"
	"braid/transport/wire"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"braid/internal/bufpool"
)

// Flow is one proxied connection: an ordered, reliable byte stream each
// way. One goroutine may read and one may write at a time; Reset and Close
// may be called from any goroutine.
type Flow struct {
	s  *Session
	id uint32
	// comp is the flow's compression decision: 0 not yet sampled, 1 on,
	// -1 off (its bytes did not shrink by 10%); compress.go.
	comp     atomic.Int32
	compSkip atomic.Int32 // blocks to send before sampling again
	// class is the flow's traffic class (the tier's classes), set before
	// the flow sends: by OpenFlow, or from the OPEN block.
	class atomic.Uint32

	writeMu sync.Mutex // serializes senders; they own the tx sequence

	mu sync.Mutex
	// Sending side.
	txNext     uint64 // next block number
	txOffset   uint64 // next data offset
	txLimit    uint64 // flow credit the peer granted
	txBlocks   []*txBlock
	txFin      bool // FIN block queued
	txFinAcked bool
	// Receiving side.
	rxNext      uint64
	rxPending   map[uint64]*rxBlock
	rxSegs      [][]byte
	rxSegOff    int
	rxFin       bool // FIN delivered into rxSegs' order
	rxHigh      uint64
	rxConsumed  uint64
	rxLimit     uint64
	rxDelivered uint64 // data bytes delivered in order
	rxFinal     uint64 // final offset once known
	// The receive window (rxLimit - rxConsumed after a grant) and its
	// auto-tuning epoch, as quic-go tunes a stream's: it doubles when a
	// window's worth is read within a few round trips.
	rxWindow      uint64
	rxEpochStart  time.Time
	rxEpochOffset uint64
	rxCounted     uint64 // this flow's part of the session's rxGranted
	// End.
	err       error // set once the flow is reset or its session fails
	resetSent bool
	lastReset time.Time // when this side last sent RESET
	settled   bool      // every byte the peer sent is counted as taken
	removed   bool

	dest     []byte // concentrator: the destination the client asked for
	reply    chan byte
	answered atomic.Bool

	readable chan struct{}
	writable chan struct{}
	dead     chan struct{}
	deadline atomic.Pointer[time.Time]
}

// newFlow makes a flow; the caller holds s.flows.mu.
func newFlow(s *Session, id uint32) *Flow {
	w := uint64(s.cfg.InitialFlowWindow)
	s.rxGranted.Add(w)
	s.cfg.Budget.add(int64(w))
	return &Flow{
		s:            s,
		id:           id,
		txLimit:      s.peerFlow,
		rxLimit:      w,
		rxWindow:     w,
		rxCounted:    w,
		rxEpochStart: time.Now(),
		rxPending:    make(map[uint64]*rxBlock),
		readable:     make(chan struct{}, 1),
		writable:     make(chan struct{}, 1),
		dead:         make(chan struct{}),
	}
}

// ID returns the flow's identifier within its session.
func (f *Flow) ID() uint32 { return f.id }

// Dest returns the destination the client asked for, in SOCKS5 address
// encoding (concentrator side).
func (f *Flow) Dest() []byte { return f.dest }

// signal wakes ch's waiter if none is pending already: a send that never
// blocks, on a channel of capacity one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

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
	tries   int       // overdue re-sends; under f.mu
	// held is the send space (Session.takeSendSpace) the block holds
	// until it is acknowledged or dropped; under f.mu.
	held int64
	path [wire.MaxShards]atomic.Pointer[Path]
	conn [wire.MaxShards]atomic.Pointer[pconn]
}

func (b *txBlock) n() int { return int(b.hdr.K) + int(b.hdr.M) }

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

// rxBlock gathers the shards of one block.
type rxBlock struct {
	hdr    wire.ShardHeader
	have   uint32
	count  int
	shards [wire.MaxShards][]byte
	done   bool
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

// wait blocks until ch is signalled, the flow dies or the deadline passes.
func (f *Flow) wait(ch chan struct{}, deadline *time.Time) error {
	var timeout <-chan time.Time
	if deadline != nil && !deadline.IsZero() {
		d := time.Until(*deadline)
		if d <= 0 {
			return errTimeout
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
		return nil
	case <-f.dead:
		return nil // the caller sees f.err
	case <-timeout:
		return errTimeout
	}
}

var errTimeout = fmt.Errorf("flow: %w", errDeadline{})

type errDeadline struct{}

func (errDeadline) Error() string   { return "i/o timeout" }
func (errDeadline) Timeout() bool   { return true }
func (errDeadline) Temporary() bool { return true }

var _ net.Error = errDeadline{}

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

// Read reads the flow's next bytes; io.EOF after the peer's FIN.
func (f *Flow) Read(p []byte) (int, error) {
	for {
		f.mu.Lock()
		if len(f.rxSegs) > 0 {
			n := 0
			for n < len(p) && len(f.rxSegs) > 0 {
				seg := f.rxSegs[0]
				c := copy(p[n:], seg[f.rxSegOff:])
				n += c
				f.rxSegOff += c
				if f.rxSegOff == len(seg) {
					putShard(seg[:cap(seg)])
					f.rxSegs[0] = nil
					f.rxSegs = f.rxSegs[1:]
					f.rxSegOff = 0
				}
			}
			f.consumedLocked(n)
			return n, nil
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return 0, err
		}
		if f.rxFin {
			f.mu.Unlock()
			return 0, io.EOF
		}
		f.mu.Unlock()
		if err := f.wait(f.readable, f.deadline.Load()); err != nil {
			return 0, err
		}
	}
}

// WriteTo writes the flow's bytes to w until EOF, straight from the
// received shard buffers.
func (f *Flow) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var bufs net.Buffers
	var owned [][]byte
	for {
		f.mu.Lock()
		if len(f.rxSegs) > 0 {
			bufs, owned = bufs[:0], owned[:0]
			n := 0
			for i, seg := range f.rxSegs {
				if i == 0 {
					seg = seg[f.rxSegOff:]
				}
				bufs = append(bufs, seg)
				owned = append(owned, f.rxSegs[i])
				n += len(seg)
				f.rxSegs[i] = nil
			}
			f.rxSegs = f.rxSegs[:0]
			f.rxSegOff = 0
			f.mu.Unlock()
			_, err := bufs.WriteTo(w)
			for _, b := range owned {
				putShard(b[:cap(b)])
			}
			f.mu.Lock()
			f.consumedLocked(n)
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return total, err
		}
		if f.rxFin {
			f.mu.Unlock()
			return total, nil
		}
		f.mu.Unlock()
		if err := f.wait(f.readable, f.deadline.Load()); err != nil {
			return total, err
		}
	}
}

// consumedLocked records that the reader took n bytes, grants flow credit
// once a quarter of the window is free, and unlocks f.mu. Once the flow is
// settled, its bytes have been counted already.
func (f *Flow) consumedLocked(n int) {
	if f.settled {
		f.mu.Unlock()
		return
	}
	f.rxConsumed += uint64(n)
	var grant uint64
	if !f.rxFin && f.err == nil && f.rxLimit-f.rxConsumed <= f.rxWindow*3/4 {
		if w := f.grantLocked(time.Now()); f.rxConsumed+w > f.rxLimit {
			f.rxLimit = f.rxConsumed + w
			grant = f.rxLimit
		}
	}
	f.recountLocked()
	f.mu.Unlock()
	if grant != 0 {
		f.s.sendControl(&wire.Msg{Type: wire.MsgCredit, Flow: f.id, Value: grant})
	}
	f.s.consumed(uint64(n))
}

// grantLocked tunes the flow's window and returns the window to grant from
// the bytes read so far. The window doubles, up to FlowWindow, when the
// reader took more than half of it within four times the fraction taken
// of a round trip (so the window, not the reader, was what held the flow
// back: quic-go's auto-tuning). A flow's grant is then held to a fair
// share of the session window, SessionWindow/(flows+1), and to what the
// other flows leave of it, but never below the initial window: a stalled
// flow keeps its own window and a new flow gets its share at once. With
// the shared budget spent, flows get only their initial window. Caller
// holds f.mu.
func (f *Flow) grantLocked(now time.Time) uint64 {
	s := f.s
	initial, most := uint64(s.cfg.InitialFlowWindow), uint64(s.cfg.FlowWindow)
	if read := f.rxConsumed - f.rxEpochOffset; read > f.rxWindow/2 {
		frac := float64(read) / float64(f.rxWindow)
		if f.rxWindow < most && now.Sub(f.rxEpochStart) < time.Duration(4*frac*float64(s.creditRTT())) {
			f.rxWindow = min(2*f.rxWindow, most)
		}
		f.rxEpochStart, f.rxEpochOffset = now, f.rxConsumed
	}
	flows := uint64(s.flows.count())
	others := s.rxGranted.Load() - f.rxCounted
	session := uint64(s.cfg.SessionWindow)
	w := min(f.rxWindow, max(initial, session/(flows+1)))
	if others+w > session {
		w = initial
		if session > others {
			w = max(initial, session-others)
		}
	}
	if s.cfg.Budget.over() {
		w = min(w, initial)
	}
	return w
}

// recountLocked brings the session's rxGranted up to date with what the
// flow may still make this side hold: the rest of its window, or, once
// the peer's FIN is in, its unread bytes; nothing once it has ended.
// Caller holds f.mu. It runs on every read, so it takes no session lock.
func (f *Flow) recountLocked() {
	var c uint64
	switch {
	case f.settled || f.err != nil:
	case f.rxFin:
		c = f.rxFinal - min(f.rxConsumed, f.rxFinal)
	default:
		c = f.rxLimit - f.rxConsumed
	}
	if c == f.rxCounted {
		return
	}
	f.s.rxGranted.Add(c - f.rxCounted) // modular: c may be the smaller
	f.s.cfg.Budget.add(int64(c) - int64(f.rxCounted))
	f.rxCounted = c
}

// settleLocked counts every byte the peer sent on the flow, up to final,
// as taken: the reader will take no more, and the session credit they
// hold must come back. It returns how much the session's received total
// grows and how much it gets back. Caller holds f.mu; it runs once.
func (f *Flow) settleLocked(final uint64) (grow, unread uint64) {
	if f.settled {
		return 0, 0
	}
	f.settled = true
	final = max(final, f.rxHigh)
	grow = final - f.rxHigh
	f.rxHigh = final
	unread = final - f.rxConsumed
	f.rxConsumed = final
	f.recountLocked()
	return grow, unread
}

func (f *Flow) applySettle(grow, unread uint64) {
	if grow > 0 {
		f.s.rxAccount(grow)
	}
	f.s.consumed(unread)
}

// SetReadDeadline bounds Read and WriteTo; the zero time means none.
func (f *Flow) SetReadDeadline(t time.Time) error {
	f.deadline.Store(&t)
	signal(f.readable)
	return nil
}

// Accept answers an opened flow with success (concentrator side).
func (f *Flow) Accept() error {
	if !f.answered.CompareAndSwap(false, true) {
		return errors.New("flow already answered")
	}
	return f.sendBlock(context.Background(), []byte{0}, wire.FlagReply)
}

// Refuse answers an opened flow with a SOCKS5 reply code and ends it.
func (f *Flow) Refuse(code byte) error {
	if !f.answered.CompareAndSwap(false, true) {
		return errors.New("flow already answered")
	}
	return f.sendBlock(context.Background(), []byte{code}, wire.FlagReply|wire.FlagFin)
}

// Close ends the flow: a graceful FIN when the peer has finished sending
// too, otherwise a reset, as TCP does when unread data would be lost.
func (f *Flow) Close() error {
	f.mu.Lock()
	rxDone := f.rxFin
	f.mu.Unlock()
	if !rxDone {
		f.Reset()
		return nil
	}
	err := f.CloseWrite()
	f.mu.Lock()
	segs := f.rxSegs
	f.rxSegs = nil
	f.rxSegOff = 0
	grow, unread := f.settleLocked(f.rxFinal)
	f.mu.Unlock()
	for _, seg := range segs {
		putShard(seg[:cap(seg)])
	}
	f.applySettle(grow, unread)
	return err
}

// Reset aborts the flow in both directions. The peer answers with its own
// RESET, whose final offset settles the bytes still on their way; when the
// peer's FIN has arrived already, the final offset is known.
func (f *Flow) Reset() {
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return
	}
	f.err = ErrFlowReset
	final := f.txOffset
	f.resetSent = true
	f.lastReset = time.Now()
	var grow, unread uint64
	if f.rxFin {
		grow, unread = f.settleLocked(f.rxFinal)
	}
	f.mu.Unlock()
	f.abort()
	f.applySettle(grow, unread)
	f.s.sendReset(f.id, final, resetCodeApp)
	f.maybeRemove()
}

// onReset handles the peer's reset, whose final offset settles the
// session credit of bytes this side will never read. A reset that is not
// itself an answer is answered with this side's final offset.
func (f *Flow) onReset(final uint64, code uint8) {
	f.mu.Lock()
	first := f.err == nil
	if first {
		f.err = fmt.Errorf("%w by peer", ErrFlowReset)
	}
	mine := f.txOffset
	answer := !f.resetSent && code != resetCodeAnswer
	f.resetSent = true
	grow, unread := f.settleLocked(final)
	f.rxFinal = f.rxHigh
	f.rxFin = true
	f.mu.Unlock()
	if first {
		f.abort()
	}
	f.applySettle(grow, unread)
	if answer {
		f.s.sendReset(f.id, mine, resetCodeAnswer)
	}
	f.maybeRemove()
}

// resendReset repeats this side's RESET while the peer's answer is
// missing: a RESET lost with a connection would otherwise leave both ends
// holding the flow.
func (f *Flow) resendReset(minGap time.Duration) {
	f.mu.Lock()
	due := f.err != nil && f.resetSent && !f.rxFin && !f.removed && time.Since(f.lastReset) >= minGap
	if due {
		f.lastReset = time.Now()
	}
	final := f.txOffset
	f.mu.Unlock()
	if due {
		f.s.sendReset(f.id, final, resetCodeApp)
	}
}

// fail ends the flow because its session ended.
func (f *Flow) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
	f.abort()
}

// abort releases the flow's buffers and wakes its waiters; f.err is set.
func (f *Flow) abort() {
	f.mu.Lock()
	blocks := f.txBlocks
	f.txBlocks = nil
	var held int64
	for _, b := range blocks {
		held += b.held
		b.held = 0
	}
	f.recountLocked()
	pending := f.rxPending
	f.rxPending = map[uint64]*rxBlock{}
	segs := f.rxSegs
	f.rxSegs = nil
	f.rxSegOff = 0
	f.mu.Unlock()
	f.s.releaseSend(held)
	for _, b := range blocks {
		b.acked.Store(true)
		b.release()
	}
	for _, rb := range pending {
		f.dropRx(rb)
	}
	for _, seg := range segs {
		putShard(seg[:cap(seg)])
	}
	select {
	case <-f.dead:
	default:
		close(f.dead)
	}
}

func (f *Flow) dropRx(rb *rxBlock) {
	for i, sh := range rb.shards {
		if sh != nil {
			f.s.rxHeld.Add(-int64(cap(sh)))
			putShard(sh[:cap(sh)])
			rb.shards[i] = nil
		}
	}
}

func (f *Flow) deadErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	return ErrFlowReset
}

// maybeRemove drops the flow from its session once both directions are
// over: FIN sent and acknowledged (or reset) and FIN received (or reset).
func (f *Flow) maybeRemove() {
	f.mu.Lock()
	done := !f.removed && f.rxFin && (f.txFinAcked || f.err != nil)
	if done {
		f.removed = true
	}
	f.mu.Unlock()
	if done {
		f.s.removeFlow(f)
	}
}

// onCredit raises the flow's send limit.
func (f *Flow) onCredit(limit uint64) {
	f.mu.Lock()
	if limit > f.txLimit {
		f.txLimit = limit
	}
	f.mu.Unlock()
	signal(f.writable)
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
	for ; i < len(f.txBlocks) && f.txBlocks[i].hdr.Block < next; i++ {
		b := f.txBlocks[i]
		if b.hdr.Flags&wire.FlagFin != 0 {
			f.txFinAcked = true
		}
		held += b.held
		b.held = 0
		b.acked.Store(true)
		b.release()
		f.txBlocks[i] = nil
	}
	f.txBlocks = f.txBlocks[i:]
	f.mu.Unlock()
	f.s.releaseSend(held)
	if i > 0 {
		signal(f.writable)
		f.maybeRemove()
	}
	return nil
}

// onShard files a received shard (it owns buf) and delivers every block
// that is now complete and next in order.
func (f *Flow) onShard(h *wire.ShardHeader, buf []byte) error {
	f.mu.Lock()
	if f.err != nil || h.Block < f.rxNext {
		next := f.rxNext
		dead := f.err != nil
		f.mu.Unlock()
		putShard(buf)
		f.s.stats.ShardsDuplicate.Add(1)
		if dead {
			f.resendReset(100 * time.Millisecond) // the peer goes on: it lacks our RESET
		} else {
			f.s.sendControl(&wire.Msg{Type: wire.MsgAck, Flow: f.id, Value: next})
		}
		return nil
	}
	if h.Block > f.rxNext+maxBlocksInFlight { // +1: a FIN may follow a full window
		f.mu.Unlock()
		putShard(buf)
		return wire.Malformed("flow %d block %d is beyond the %d blocks in flight after %d", f.id, h.Block, maxBlocksInFlight, f.rxNext)
	}
	isData := h.Flags&(wire.FlagOpen|wire.FlagReply) == 0
	if isData && h.Offset+uint64(h.BlockLen) > f.rxLimit {
		f.mu.Unlock()
		putShard(buf)
		return wire.Malformed("flow %d overran its window: %d > %d", f.id, h.Offset+uint64(h.BlockLen), f.rxLimit)
	}
	if (h.Flags&wire.FlagOpen != 0 && f.s.client) || (h.Flags&wire.FlagReply != 0 && !f.s.client) {
		f.mu.Unlock()
		putShard(buf)
		return wire.Malformed("flow %d: block flags %#x from the wrong side", f.id, h.Flags)
	}
	rb := f.rxPending[h.Block]
	// Memory, not windows, at the session: every new flow gets its initial
	// window whether or not the session has room, so a peer opening many
	// flows into destinations that do not read could make this side hold
	// MaxFlows initial windows. Once the session holds SessionWindow
	// unread (or the shared budget is spent), a flow whose reader has a
	// block's worth waiting takes no new block, nor one out of order once
	// it holds that much; the sender re-sends it when it is overdue. The
	// block next in order is always taken while the reader has nothing,
	// since only it can free the rest.
	bs := uint64(f.s.cfg.BlockSize)
	if isData && rb == nil && (f.rxDelivered-f.rxConsumed >= bs || h.Block != f.rxNext && f.rxHigh-f.rxConsumed >= bs) &&
		(f.s.rxUnread.Load() > int64(f.s.cfg.SessionWindow) || f.s.cfg.Budget.over()) {
		f.mu.Unlock()
		putShard(buf)
		f.s.stats.ShardsDropped.Add(1)
		return nil
	}
	if rb != nil && !rb.hdr.SameBlock(h) {
		f.mu.Unlock()
		putShard(buf)
		return wire.Malformed("flow %d block %d: shard headers disagree", f.id, h.Block)
	}
	bit := uint32(1) << h.Index
	if rb != nil && (rb.done || rb.have&bit != 0) {
		f.mu.Unlock()
		putShard(buf)
		f.s.stats.ShardsDuplicate.Add(1)
		return nil
	}
	// The budget on shard bytes held bounds what a peer can park here
	// beyond the windows (parity, blocks waiting on an earlier one). The
	// block next in order is always taken: it is what frees the rest.
	if held := f.s.rxHeld.Add(int64(cap(buf))); held > int64(2*f.s.cfg.SessionWindow)+int64(wire.MaxShards*wire.MaxShardSize) && h.Block != f.rxNext {
		// Over budget: drop; the sender re-sends overdue blocks.
		f.s.rxHeld.Add(-int64(cap(buf)))
		f.mu.Unlock()
		putShard(buf)
		f.s.stats.ShardsDropped.Add(1)
		return nil
	}
	if rb == nil {
		rb = &rxBlock{hdr: *h}
		f.rxPending[h.Block] = rb
	}
	rb.have |= bit
	rb.count++
	rb.shards[h.Index] = buf
	if isData {
		if end := h.Offset + uint64(h.BlockLen); end > f.rxHigh {
			grow := end - f.rxHigh
			f.rxHigh = end
			f.s.rxAccount(grow)
		}
	}
	if rb.count < int(rb.hdr.K) {
		f.mu.Unlock()
		return nil
	}
	if err := f.complete(rb); err != nil {
		f.mu.Unlock()
		return err
	}
	return f.deliverLocked()
}

// complete rebuilds a block's data shards once k shards are in, keeping
// only the data shards. Called with f.mu held.
func (f *Flow) complete(rb *rxBlock) error {
	k, m := int(rb.hdr.K), int(rb.hdr.M)
	dataMask := uint32(1)<<k - 1
	if rb.have&dataMask != dataMask {
		var arr [wire.MaxShards][]byte
		shards := arr[:k+m]
		sl := int(rb.hdr.ShardLen)
		for i := range shards {
			if rb.shards[i] != nil {
				shards[i] = rb.shards[i]
			} else if i < k {
				b := getShard(sl)
				f.s.rxHeld.Add(int64(cap(b)))
				shards[i] = b[:0]
			}
		}
		if err := reconstructData(shards, k, m); err != nil {
			for i := range k {
				if rb.shards[i] == nil && shards[i] != nil {
					f.s.rxHeld.Add(-int64(cap(shards[i])))
					putShard(shards[i][:cap(shards[i])])
				}
			}
			return fmt.Errorf("flow %d block %d: %w", f.id, rb.hdr.Block, err)
		}
		for i := range k {
			rb.shards[i] = shards[i]
		}
		f.s.stats.BlocksDecoded.Add(1)
	}
	for i := k; i < k+m; i++ {
		if sh := rb.shards[i]; sh != nil {
			f.s.rxHeld.Add(-int64(cap(sh)))
			putShard(sh[:cap(sh)])
			rb.shards[i] = nil
		}
	}
	rb.done = true
	return nil
}

// deliverLocked moves complete blocks, in order, to the reader and acks
// them. Called with f.mu held; returns with it released.
func (f *Flow) deliverLocked() error {
	delivered := false
	var accept, fin bool
	var reply = -1
	for {
		rb := f.rxPending[f.rxNext]
		if rb == nil || !rb.done {
			break
		}
		delete(f.rxPending, f.rxNext)
		f.rxNext++
		delivered = true
		f.s.stats.BlocksReceived.Add(1)
		h := &rb.hdr
		if h.Flags&(wire.FlagOpen|wire.FlagReply) == 0 {
			// Offsets are the peer's claim; the bytes delivered are the
			// truth. A gap or overlap would corrupt the stream.
			if h.Offset != f.rxDelivered {
				err := wire.Malformed("flow %d block %d at offset %d, %d bytes delivered", f.id, h.Block, h.Offset, f.rxDelivered)
				f.mu.Unlock()
				f.dropRx(rb)
				f.Reset() // the stream cannot be trusted any more
				return err
			}
			if h.Flags&wire.FlagS2 != 0 {
				n, err := f.decompress(rb)
				if err != nil {
					f.mu.Unlock()
					f.Reset()
					return err
				}
				f.rxDelivered += uint64(n)
			} else {
				f.rxDelivered += uint64(h.BlockLen)
			}
		}
		left := int(h.BlockLen)
		if h.Flags&wire.FlagS2 != 0 {
			left = 0 // decompress took the shards
		}
		for i := range int(h.K) {
			sh := rb.shards[i]
			if sh == nil {
				continue // decompress took it
			}
			f.s.rxHeld.Add(-int64(cap(sh)))
			take := min(left, len(sh))
			left -= take
			switch {
			case h.Flags&wire.FlagOpen != 0:
				if take > 0 {
					f.dest = append(f.dest, sh[:take]...)
				}
				putShard(sh[:cap(sh)])
			case h.Flags&wire.FlagReply != 0:
				if take > 0 && reply < 0 {
					reply = int(sh[0])
				}
				putShard(sh[:cap(sh)])
			case take > 0:
				f.rxSegs = append(f.rxSegs, sh[:take])
			default:
				putShard(sh[:cap(sh)])
			}
		}
		if h.Flags&wire.FlagOpen != 0 {
			// The OPEN block is the flow's class, then its destination.
			if len(f.dest) < 1 || f.dest[0] >= scheduler.MaxClasses {
				f.mu.Unlock()
				f.Reset()
				return wire.Malformed("flow %d: open with no class or one out of range", f.id)
			}
			f.class.Store(uint32(f.dest[0]))
			f.dest = f.dest[1:]
			accept = true
		}
		if h.Flags&wire.FlagFin != 0 {
			f.rxFin = true
			f.rxFinal = h.Offset + uint64(h.BlockLen)
			fin = true
			break
		}
	}
	if fin {
		f.recountLocked() // the window past the final offset is free
	}
	next := f.rxNext
	f.mu.Unlock()
	if !delivered {
		return nil
	}
	f.s.sendControl(&wire.Msg{Type: wire.MsgAck, Flow: f.id, Value: next})
	signal(f.readable)
	if reply >= 0 && f.reply != nil {
		select {
		case f.reply <- byte(reply):
		default:
		}
	}
	if accept {
		select {
		case f.s.accept <- f:
		default:
			f.Refuse(1) // general failure: the acceptor is not keeping up
		}
	}
	if fin {
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
