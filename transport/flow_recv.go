package transport

// A flow's receive side: shards gathered into blocks (rxBlock), blocks
// rebuilt and delivered in order, the reader, and the credit granted
// back.

import (
	"braid/internal/notify"
	"braid/scheduler"
	"braid/transport/wire"
	"fmt"
	"io"
	"net"
	"time"
)

// rxBlock gathers the shards of one block.
type rxBlock struct {
	hdr    wire.ShardHeader
	have   uint32
	count  int
	shards [wire.MaxShards][]byte
	done   bool
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
		grant = f.raiseLocked(f.grantLocked(time.Now()))
	}
	f.recountLocked()
	f.mu.Unlock()
	f.sendCredit(grant)
	f.s.consumed(uint64(n))
}

// raiseLocked grants w from the bytes read so far when that is more than
// granted already, and returns the new limit to announce (0: none).
func (f *Flow) raiseLocked(w uint64) uint64 {
	if f.rxConsumed+w <= f.rxLimit {
		return 0
	}
	f.rxLimit = f.rxConsumed + w
	return f.rxLimit
}

// sendCredit announces a flow's new limit (0: nothing to announce).
func (f *Flow) sendCredit(limit uint64) {
	if limit != 0 {
		f.s.sendControl(&wire.Msg{Type: wire.MsgCredit, Flow: f.id, Value: limit})
	}
}

// grantOpening, at the client, grants a flow it opened its fair share of
// the session window at once (grantLocked's rule, up to FlowWindow)
// rather than the initial window the concentrator assumes: a download
// over a long path (a 600 ms satellite's bandwidth-delay product is
// megabytes) would otherwise wait for the window to double a round trip
// at a time, and the planner would plan its first seconds for what the
// window let through (docs/BENCH.md, cost-sla). The concentrator keeps
// the initial window for what clients open: it does not trust them with
// more before they read.
func (f *Flow) grantOpening() {
	f.mu.Lock()
	var grant uint64
	if f.err == nil && !f.rxFin {
		// The share grantLocked allows a window of FlowWindow becomes
		// the flow's window: it auto-tunes on from there, and credit
		// goes out once a quarter of it is free, as for any window.
		f.rxWindow = uint64(f.s.cfg.FlowWindow)
		w := f.grantLocked(time.Now())
		f.rxWindow = w
		grant = f.raiseLocked(w)
		f.recountLocked()
	}
	f.mu.Unlock()
	f.sendCredit(grant)
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
	notify.Signal(f.readable)
	return nil
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
				f.s.acct.onDelivered(f.class.Load(), uint64(n))
			} else {
				f.rxDelivered += uint64(h.BlockLen)
				f.s.acct.onDelivered(f.class.Load(), uint64(h.BlockLen))
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
			f.class.Store(f.s.tierClass(f.dest[0]))
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
	notify.Signal(f.readable)
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
