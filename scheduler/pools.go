package scheduler

import "time"

// LossPools sizes the pools of a client whose policy makes no plans
// (every one but bestvalue), from what each path shows, so a user need
// not know conns=: LossPool connections where the path loses packets
// while quic-go's smoothed RTT stays near its minimum (random loss: Reno
// halves one window of several, DESIGN.md), else one (a delay that
// climbs is a queue, which more connections would only fill). The loss
// is the link's, before packet coding repairs it, either way: the most of
// what quic-go declared lost, what the peer measured of ours and what we
// measured of the peer's over the last step. Parity yields on a full path,
// so the pool must carry the link's loss by itself: sized by the loss
// left after repair, the pool shrank while parity repaired and the path
// no longer filled. The RTT is quic-go's, from its acknowledgements
// (braid's probes ride a stream, and a lost probe's retransmission would
// read as delay). A pool grows after GrowTicks steps in a row of asking
// for more and shrinks after ShrinkTicks of asking for less (poolSizer).
// Step it once a PlanEvery.
type LossPools struct {
	sizers map[string]*poolSizer
	seen   map[string][2]uint64 // the peer's packets expected and received, last step
}

// PoolPath is one path's observation for LossPools.
type PoolPath struct {
	Name string
	// Loss is the most of quic-go's declared loss and the peer's
	// measurement of our packets.
	Loss float64
	// Expected and Received count the peer's packets, running totals
	// (before repair).
	Expected, Received uint64
	SRTT, MinRTT       time.Duration
	// Coded says packet coding runs on the path.
	Coded bool
	// Have is the pool's size now.
	Have int
}

// PoolChange is a pool to resize, and why.
type PoolChange struct {
	Name  string
	Conns int
	// Loss is the loss the step saw; Queue says the delay showed a
	// standing queue.
	Loss         float64
	Queue        bool
	SRTT, MinRTT time.Duration
}

// A path losing more than LossForPool of its packets at a flat delay gets
// LossPool connections.
const (
	LossForPool = 0.002
	LossPool    = 8
)

// GrowTicks and ShrinkTicks are how many steps in a row a path must ask
// for more, or fewer, connections before its pool grows or shrinks;
// QueueTicks how many in a row a queue must show to drop it to one, and
// QueueHold how long it then stays there.
const (
	GrowTicks   = 3
	ShrinkTicks = 10
	QueueTicks  = 3
	QueueHold   = 30
)

// Step takes the paths whose pools it sizes (a path missing is forgotten)
// and returns the pools to change.
func (lp *LossPools) Step(paths []PoolPath) []PoolChange {
	if lp.sizers == nil {
		lp.sizers, lp.seen = map[string]*poolSizer{}, map[string][2]uint64{}
	}
	for name := range lp.sizers {
		found := false
		for i := range paths {
			found = found || paths[i].Name == name
		}
		if !found {
			delete(lp.sizers, name)
			delete(lp.seen, name)
		}
	}
	var out []PoolChange
	for _, p := range paths {
		loss := p.Loss
		last := lp.seen[p.Name]
		lp.seen[p.Name] = [2]uint64{p.Expected, p.Received}
		if de, dr := p.Expected-last[0], p.Received-last[1]; p.Expected >= last[0] && p.Received >= last[1] &&
			de >= 100 && dr <= de {
			loss = max(loss, float64(de-dr)/float64(de))
		}
		z := lp.sizers[p.Name]
		if z == nil {
			z = &poolSizer{}
			lp.sizers[p.Name] = z
		}
		queue := p.MinRTT > 0 && p.SRTT > 3*p.MinRTT
		ticks := GrowTicks
		if !p.Coded {
			// Without coding the loss is only quic-go's, of what this
			// side sends: a download's start-up overflow does not reach
			// it, and it shows random loss only now and then
			// (acknowledgements and probes), so one step decides.
			ticks = 1
		}
		if next := z.step(PoolForLoss(loss, p.SRTT, p.MinRTT), p.Have, queue, ticks); next != p.Have {
			out = append(out, PoolChange{Name: p.Name, Conns: next, Loss: loss,
				Queue: queue && next < p.Have, SRTT: p.SRTT, MinRTT: p.MinRTT})
		}
	}
	return out
}

// PoolForLoss is the pool a path asks for under a policy that makes no
// plans: LossPool connections when it loses more than LossForPool of its
// packets while quic-go's smoothed RTT stays within 1.5x its minimum
// (+5 ms), else one.
func PoolForLoss(loss float64, srtt, minRTT time.Duration) int {
	if minRTT > 0 && loss > LossForPool && srtt <= minRTT+minRTT/2+5*time.Millisecond {
		return LossPool
	}
	return 1
}

// poolSizer damps one path's pool: it grows once growAfter steps in a
// row (GrowTicks for a path that codes) asked for more (a start-up's
// queue overflowing once, at a delay that has not climbed yet, is not
// random loss), and shrinks once ShrinkTicks steps in a row asked for
// less. A delay above three times its least for QueueTicks steps in a row
// is a standing queue of two round trips, not a start-up's: the pool
// drops to one and does not grow for QueueHold steps. A variable link
// (the LTE traces) shows loss at a delay still flat before its queue
// builds, and a pool grown there fills the queue; dropped at a lower
// threshold or sooner, the pools of paths that are full and lossy (which
// hold a queue of about a round trip) fell to one for good
// (docs/BENCH.md).
type poolSizer struct{ more, less, queued, hold int }

// step takes one step's want, whether the delay shows a queue and the
// steps in a row that must ask for more, and returns the pool to keep.
func (z *poolSizer) step(want, have int, queue bool, growAfter int) int {
	if !queue {
		z.queued = 0
	} else if z.queued++; z.queued >= QueueTicks {
		z.more, z.less, z.queued, z.hold = 0, 0, 0, QueueHold
		return 1
	}
	if z.hold > 0 {
		z.hold--
		want = 1
	}
	switch {
	case want > have:
		z.less = 0
		if z.more++; z.more >= growAfter {
			z.more = 0
			return want
		}
	case want < have:
		z.more = 0
		if z.less++; z.less >= ShrinkTicks {
			z.less = 0
			return want
		}
	default:
		z.more, z.less = 0, 0
	}
	return have
}
