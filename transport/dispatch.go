package transport

import (
	"context"
	"sync"
	"time"

	"braid/scheduler"
	"braid/transport/wire"
)

// Dispatch: which path carries each shard is the session's policy's
// choice (scheduler.Policy). The default, weighted, sends each shard where
// it is expected to arrive first: the bytes already queued on a path
// divided by the path's rate, plus half its RTT. Faster paths thus take
// more shards in proportion to what they deliver, and a path whose queue
// is full is skipped, so the others are never held back by it
// (work-conserving).

// pathStates fills arr with the state of every path, for the policy.
func (s *Session) pathStates(arr *[maxPaths]scheduler.PathState) ([]*Path, []scheduler.PathState) {
	paths := s.pathList()
	states := arr[:len(paths)]
	var now int64
	if s.planning != nil { // only a Planning policy reads Stalled
		now = int64(s.now())
	}
	for i, p := range paths {
		srtt, queued := p.SRTT(), p.queued.Load()
		states[i] = scheduler.PathState{Name: p.info.Name, Up: p.Up(), SRTT: srtt, Rate: p.Rate(),
			Queued: queued, QueueLimit: p.queueLimit(), Price: p.info.PriceGB,
			Stalled: s.planning != nil && queued > 0 && time.Duration(now-p.lastTake.Load()) > stallAfter+srtt/4}
	}
	return paths, states
}

// stallAfter (plus a quarter of the path's RTT) is how long a path's
// queue may hold bytes without a writer taking one before the path counts
// as stalled: its connection has stopped sending (dead, not yet found
// out), and a plan that waits for room on it would stall too.
const stallAfter = 50 * time.Millisecond

// statesPool holds the path-state arrays handed to the policy: passed
// through an interface they would otherwise be allocated for every shard.
var statesPool = sync.Pool{New: func() any { return new([maxPaths]scheduler.PathState) }}

// coding returns k and m for a block of n bytes under the policy, with
// enough data shards that none exceeds MaxShardSize.
func (s *Session) coding(n, class int) (k, m int) {
	arr := statesPool.Get().(*[maxPaths]scheduler.PathState)
	defer statesPool.Put(arr)
	_, states := s.pathStates(arr)
	k, m = s.policy.Code(n, class, states)
	if k < wire.MaxShards {
		k = max(k, min(wire.ShardLenFor(n, wire.MaxShardSize), wire.MaxShards-m))
	}
	return k, m
}

// pickPath returns the path the policy chooses for shard i of a block, or
// nil when none can take it now (urgent shards ignore queue limits).
func (s *Session) pickPath(size, shard, class int, urgent bool) *Path {
	arr := statesPool.Get().(*[maxPaths]scheduler.PathState)
	defer statesPool.Put(arr)
	paths, states := s.pathStates(arr)
	if i := s.policy.Place(states, size, shard, class, s.shardSeq.Add(1), urgent); i >= 0 {
		return paths[i]
	}
	return nil
}

// priority reports whether the policy lets class's shards jump the queue.
func (s *Session) priority(class int) bool { return s.prio != nil && s.prio.Priority(class) }

// dispatch queues shard i of b on a path, waiting while every path is full
// or down (the session's grace period bounds the latter).
func (s *Session) dispatch(ctx context.Context, b *txBlock, i int, dead <-chan struct{}) error {
	size := int(b.hdr.ShardLen)
	var timer *time.Timer
	var waitFrom time.Time
	class := int(b.f.class.Load())
	// A latency-bound class's shards skip the queue of new shards: they
	// go out next, with the re-sends (scheduler.Prioritizer).
	prio := s.priority(class)
	for {
		if p := s.pickPath(size, i, class, false); p != nil {
			if !waitFrom.IsZero() {
				s.waited[class].Add(int64(time.Since(waitFrom)))
			}
			b.setConn(i, nil)
			b.path[i].Store(p)
			p.queued.Add(int64(size))
			if prio {
				p.pushUrgent(shardJob{b: b, idx: uint8(i)})
				return nil
			}
			select {
			case p.queue <- shardJob{b: b, idx: uint8(i)}:
				return nil
			default:
				p.queued.Add(-int64(size)) // channel full: count it as full
			}
		}
		changed := s.changedCh()
		if waitFrom.IsZero() {
			waitFrom = time.Now()
		}
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

// resend queues shard i of b again on path p, ahead of new shards, and
// reports whether it did (not once b is acknowledged or released). It
// never blocks.
func (s *Session) resend(b *txBlock, i int, p *Path) bool {
	if b.acked.Load() {
		return false
	}
	// Take a reference only while one is held: at zero the buffer is gone.
	for {
		r := b.refs.Load()
		if r <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(r, r+1) {
			break
		}
	}
	size := int64(b.hdr.ShardLen)
	b.setConn(i, nil)
	b.path[i].Store(p)
	p.queued.Add(size)
	p.pushUrgent(shardJob{b: b, idx: uint8(i)})
	s.stats.ShardsResent.Add(1)
	return true
}

// redispatch moves a job whose connection failed to another path. The
// job's reference passes to the new queue or is released.
func (s *Session) redispatch(j shardJob) {
	if p := s.pickPath(int(j.b.hdr.ShardLen), int(j.idx), int(j.b.f.class.Load()), true); p != nil && !j.b.acked.Load() {
		s.resend(j.b, int(j.idx), p)
	}
	j.b.release()
}
