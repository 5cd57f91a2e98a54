package transport

import (
	"braid/internal/notify"
	"context"
	"sync"
	"sync/atomic"
)

// Memory bounds. Every byte a session holds for its peer is bounded by this
// side's own numbers, never by what the peer claims:
//
//   - sent and not yet acknowledged: per flow at most Config.FlowWindow
//     (whatever credit the peer grants), per session at most
//     Config.SessionWindow of block buffers;
//   - received and not yet read: per flow what this side granted (a window
//     that starts at Config.InitialFlowWindow and grows, while the reader
//     keeps up, to Config.FlowWindow), per session the grants' sum, held
//     under Config.SessionWindow by fair shares (Flow.grantLocked); as
//     every new flow gets its initial window, past SessionWindow unread a
//     flow holding a block's worth takes no new block (Flow.onShard);
//   - received out of order (parity, blocks waiting on an earlier one):
//     within the windows, and the rxHeld budget in Flow.onShard.
//
// A Budget shared by many sessions (the concentrator's) bounds the sum:
// past its limit a session sends only while it holds less than
// budgetFloor, and grants its flows no more than their initial window, so
// no session is shut out by the others and the total stays near the limit.

// Budget bounds the bytes that all the sessions sharing it hold: block
// buffers sent and not yet acknowledged, and the flows' receive windows
// (what the peers may still send, and what was received and not read).
// The zero value is not usable; NewBudget makes one. It is safe for
// concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64

	wake notify.Broadcast // fired when bytes are released
}

// budgetFloor is what a session may always hold for sending, whatever the
// shared budget says, so that every session keeps moving.
const budgetFloor = 1 << 20

// NewBudget returns a budget of limit bytes (at least 1 MiB).
func NewBudget(limit int64) *Budget {
	return &Budget{limit: max(limit, 1<<20)}
}

// Limit returns the budget's limit in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Used returns the bytes held now.
func (b *Budget) Used() int64 { return b.used.Load() }

// over reports whether the budget is spent.
func (b *Budget) over() bool { return b != nil && b.used.Load() >= b.limit }

// tryTake takes n bytes if they fit, or unconditionally if force.
func (b *Budget) tryTake(n int64, force bool) bool {
	if b == nil {
		return true
	}
	for {
		u := b.used.Load()
		if !force && u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// add counts n bytes (negative: released) without waiting.
func (b *Budget) add(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.used.Add(n)
	if n < 0 {
		b.wake.Fire()
	}
}

// released returns a channel closed the next time bytes are released.
func (b *Budget) released() <-chan struct{} {
	if b == nil {
		return nil
	}
	return b.wake.Wait()
}

// Held is what a session holds for its peer now, in bytes.
type Held struct {
	// Send is block buffers sent and not yet acknowledged.
	Send int64
	// Window is what the flows' receive windows let the peer still send,
	// plus what was received and not yet read.
	Window int64
	// Reassembly is received shards waiting for their block to complete
	// or for an earlier block.
	Reassembly int64
}

// Held returns what the session holds for its peer now.
func (s *Session) Held() Held {
	s.tx.mu.Lock()
	send := s.tx.held
	s.tx.mu.Unlock()
	return Held{Send: send, Window: int64(s.rxGranted.Load()), Reassembly: s.rxHeld.Load()}
}

// sendSpace is a session's block buffer bytes sent and not yet
// acknowledged, under its own lock (a block takes it twice: when it is
// cut and when it is acknowledged).
type sendSpace struct {
	mu    sync.Mutex
	held  int64
	space notify.Broadcast // fires when some are released
}

// takeSendSpace reserves n bytes of block buffer for a block about to be
// sent, waiting while the session holds SessionWindow unacknowledged
// bytes or the shared budget is spent (a session under budgetFloor always
// gets its bytes). releaseSend gives them back once the block is
// acknowledged or dropped.
func (s *Session) takeSendSpace(ctx context.Context, n int64, dead <-chan struct{}) error {
	tx := &s.tx
	for {
		select {
		case <-s.done:
			return s.Err()
		default:
		}
		tx.mu.Lock()
		var budgetWait <-chan struct{}
		if tx.held+n <= int64(s.cfg.SessionWindow) || tx.held == 0 {
			force := tx.held+n <= budgetFloor
			if s.cfg.Budget.tryTake(n, force) {
				tx.held += n
				tx.mu.Unlock()
				return nil
			}
			// Take the wake-up channel, then look again, so a release
			// between the two is not missed.
			budgetWait = s.cfg.Budget.released()
			if s.cfg.Budget.tryTake(n, force) {
				tx.held += n
				tx.mu.Unlock()
				return nil
			}
		}
		ch := tx.space.Wait() // under tx.mu: releaseSend fires under it too
		tx.mu.Unlock()
		select {
		case <-ch:
		case <-budgetWait:
		case <-dead:
			return ErrFlowReset
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// releaseSend returns n bytes taken by takeSendSpace.
func (s *Session) releaseSend(n int64) {
	if n == 0 {
		return
	}
	s.tx.mu.Lock()
	s.tx.held -= n
	s.tx.space.Fire()
	s.tx.mu.Unlock()
	s.cfg.Budget.add(-n)
}
