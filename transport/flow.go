package transport

import (
	"braid/transport/wire"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Flow is one proxied connection: an ordered, reliable byte stream each
// way. One goroutine may read and one may write at a time; Reset and Close
// may be called from any goroutine. Its send side (tx fields) lives in
// flow_send.go, its receive side (rx fields) in flow_recv.go, and this
// file holds what both share: the flow's end (reset, close, failure).
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

	mu sync.Mutex // guards the fields below it
	// Sending side (flow_send.go).
	txNext     uint64 // next block number
	txOffset   uint64 // next data offset
	txLimit    uint64 // flow credit the peer granted
	txBlocks   []*txBlock
	txFin      bool // FIN block queued
	txFinAcked bool
	// Receiving side (flow_recv.go).
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
		b.finish()
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
