package transport

import (
	"context"
	"time"

	"braid/scheduler"
)

// Dispatch: which path carries each shard. The built-in policy sends each
// shard where it is expected to arrive first: the bytes already queued on
// a path divided by the path's rate, plus half its RTT. Faster paths thus
// take more shards in proportion to what they deliver, and a path whose
// queue is full is skipped, so the others are never held back by it
// (work-conserving). The scheduler package will later supply a plan (k, m
// and shards per path); this function is where that plan will be followed.

// pickPath returns the live path with the earliest expected arrival for a
// shard of size bytes, or nil when every live path's queue is full (urgent
// shards ignore the queue limit) or no path is up.
func (s *Session) pickPath(size int, urgent bool) *Path {
	paths := s.pathList()
	var arr [maxPaths]scheduler.PathState
	states := arr[:len(paths)]
	for i, p := range paths {
		states[i] = scheduler.PathState{Up: p.Up(), SRTT: p.SRTT(), Rate: p.Rate(),
			Queued: p.queued.Load(), QueueLimit: p.queueLimit()}
	}
	if i := scheduler.EarliestArrival(states, size, urgent); i >= 0 {
		return paths[i]
	}
	return nil
}

// dispatch queues shard i of b on a path, waiting while every path is full
// or down (the session's grace period bounds the latter).
func (s *Session) dispatch(ctx context.Context, b *txBlock, i int, dead <-chan struct{}) error {
	size := int(b.hdr.ShardLen)
	var timer *time.Timer
	for {
		if p := s.pickPath(size, false); p != nil {
			b.conn[i].Store(nil)
			b.path[i].Store(p)
			p.queued.Add(int64(size))
			select {
			case p.queue <- shardJob{b: b, idx: uint8(i)}:
				return nil
			default:
				p.queued.Add(-int64(size)) // channel full: count it as full
			}
		}
		changed := s.changedCh()
		if timer == nil {
			timer = time.NewTimer(20 * time.Millisecond)
			defer timer.Stop()
		} else {
			timer.Reset(20 * time.Millisecond)
		}
		select {
		case <-s.space:
		case <-changed:
		case <-timer.C:
		case <-dead:
			return ErrFlowReset
		case <-s.done:
			return s.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// resend queues shard i of b again on path p, ahead of new shards. It
// never blocks.
func (s *Session) resend(b *txBlock, i int, p *Path) {
	if b.acked.Load() {
		return
	}
	if b.refs.Add(1) <= 1 {
		// Already released (acked meanwhile): undo and skip.
		b.refs.Add(-1)
		return
	}
	size := int64(b.hdr.ShardLen)
	b.conn[i].Store(nil)
	b.path[i].Store(p)
	p.queued.Add(size)
	p.pushUrgent(shardJob{b: b, idx: uint8(i)})
	s.stats.ShardsResent.Add(1)
}

// redispatch moves a job whose connection failed to another path. The
// job's reference passes to the new queue or is released.
func (s *Session) redispatch(j shardJob) {
	if p := s.pickPath(int(j.b.hdr.ShardLen), true); p != nil && !j.b.acked.Load() {
		s.resend(j.b, int(j.idx), p)
	}
	j.b.release()
}
