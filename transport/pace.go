package transport

import (
	"sync"
	"time"
)

// paceShare is the share of a path's nominal rate (rate= in its SPEC) its
// shards may use; the rest is for QUIC's packet headers and ACKs. It is
// above the 90% the planner fills (capacityHeadroom), so a path the plan
// fills drains its queue in braid without filling the link's (paced at
// 90%, failover3 moved 49.3 Mbit/s under weighted against 52.0 at 95%, and
// its longest stall under bestvalue was 45 ms against 42).
const paceShare = 0.95

// paceBurst is how far a pacer lets a path run ahead of its rate after an
// idle spell: a few full shards, so that pacing costs no throughput to
// timer granularity, and little enough to leave a bottleneck queue empty.
const paceBurst = 4 * time.Millisecond

// pacer spaces a path's shards to a fixed rate. A path told its nominal
// rate is never sent faster than that: a sender that saturates a link
// fills the bottleneck's queue, and a full drop-tail queue both delays
// every shard behind it and drops packets, and a block whose shard is
// dropped waits a whole round trip of that path for the re-send (the
// stalls of a saturating flow). quic-go paces within its congestion
// window, which grows until the queue overflows; this keeps the queue
// empty instead, at the cost of the share of the link it leaves unused.
// Without a nominal rate there is nothing to pace to and the pacer is off.
type pacer struct {
	rate float64 // bytes/s; 0: off

	mu   sync.Mutex
	next time.Duration // when the bytes sent so far are paid for
	// parity is the packet-coding parity the path's connections add per
	// data byte (M/K of their current code): those bytes cross the link
	// too, so a shard is charged 1+parity times its size. Without it a
	// coded path is sent faster than its rate, its queue fills, and the
	// coder then turns parity off (it cannot tell the queue's drops from
	// the link's), so random loss reaches quic-go again.
	parity float64
}

func newPacer(rateMbps float64) *pacer {
	return &pacer{rate: rateMbps * 1e6 / 8 * paceShare}
}

// wait returns how long a sender must wait, at now, before it may send;
// 0 when it may send at once.
func (p *pacer) wait(now time.Duration) time.Duration {
	if p.rate <= 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.next-paceBurst-now, 0)
}

// spend charges n bytes sent at now.
func (p *pacer) spend(now time.Duration, n int) {
	if p.rate <= 0 {
		return
	}
	p.mu.Lock()
	p.next = max(p.next, now) + time.Duration(float64(n)*(1+p.parity)/p.rate*float64(time.Second))
	p.mu.Unlock()
}

// setParity sets the parity charged per data byte (clamped to [0, 1]).
func (p *pacer) setParity(f float64) {
	p.mu.Lock()
	p.parity = min(max(f, 0), 1)
	p.mu.Unlock()
}

// shardRate is the rate shards may go at: the pace less the parity.
func (p *pacer) shardRate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate / (1 + p.parity)
}
