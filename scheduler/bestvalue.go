package scheduler

import (
	"math"
	"slices"
	"sync/atomic"
)

// BestValue is the bestvalue policy: it follows the plan its session's
// planner made (Solve, Planner), block by block. Shard i of a block goes
// to the path of the plan's i-th slot; the slots interleave the paths in
// proportion to their shares, so a short block's few shards still land on
// distinct paths. A shard whose path is full moves to the path with room
// where it arrives first among those no dearer than the plan's dearest
// path (its cost ceiling); it never goes to a path that is down. Until a
// plan exists it behaves as weighted. A plan that must survive the loss
// of a path does not move shards off a path that is up but full (that
// would put more of a block on another path than the plan allows): the
// block waits for room, unless the path is stalled (its queue has not
// moved: a connection that died and is not yet found out).
//
// SetPlan may be called at any time from another goroutine.
type BestValue struct {
	coder
	cur [MaxClasses]atomic.Pointer[slots]
	// prio marks classes whose shards may queue past a path's limit on
	// their planned path: latency-bound classes beside bulk ones.
	prio [MaxClasses]atomic.Bool
}

// Compress reports whether the plan of class says compression pays
// (Plan.Compress): flows of the class may then compress their blocks.
func (b *BestValue) Compress(class int) bool {
	sl := b.plan(class)
	return sl != nil && sl.compress
}

// Priority reports whether class is latency-bound (SetPriority).
func (b *BestValue) Priority(class int) bool {
	return class > 0 && class < MaxClasses && b.prio[class].Load()
}

// SetPriority marks class as latency-bound: its shards do not wait for
// room behind other classes' shards on the path their plan names (they
// are few; the queue limit is for bulk).
func (b *BestValue) SetPriority(class int, on bool) {
	if class >= 0 && class < MaxClasses {
		b.prio[class].Store(on)
	}
}

// MaxClasses bounds a tier's traffic classes (the default one included).
const MaxClasses = 16

// plan returns class's plan, or the default class's while it has none.
func (b *BestValue) plan(class int) *slots {
	if class > 0 && class < MaxClasses {
		if sl := b.cur[class].Load(); sl != nil {
			return sl
		}
	}
	return b.cur[0].Load()
}

var _ Policy = (*BestValue)(nil)

// slots is a plan in the form Place reads.
type slots struct {
	k, m     int
	survives int
	shard    int
	order    []string // path name per slot, interleaved
	tops     []int    // tops[L]: slots of the first L the most used paths hold
	ceiling  float64  // the dearest price a shard may move to
	overflow float64  // the same while the plan is new (make before break)
	compress bool
}

// Name returns "bestvalue".
func (*BestValue) Name() string { return "bestvalue" }

// SetPlan makes p the plan of traffic class class from the next block
// on; nil (or a plan with K == 0) returns the class to the default
// class's plan, and the default class to weighted.
func (b *BestValue) SetPlan(class int, p *Plan) {
	if class < 0 || class >= MaxClasses {
		return
	}
	if p == nil || p.K == 0 {
		b.cur[class].Store(nil)
		return
	}
	sl := &slots{k: p.K, m: p.M, survives: p.Survives, shard: p.ShardSize, ceiling: math.Inf(-1), compress: p.Compress}
	left := append([]int(nil), p.Shards...)
	var idx []int
	for range p.K + p.M {
		// Largest remaining share first (ties: first path), so every
		// prefix is close to proportional.
		best := -1
		for i, x := range left {
			if x > 0 && (best < 0 || x*p.Shards[best] > left[best]*p.Shards[i]) {
				best = i
			}
		}
		left[best]--
		sl.order = append(sl.order, p.Names[best])
		idx = append(idx, best)
	}
	sl.tops = topShares(idx, len(p.Shards), p.Survives)
	for i, x := range p.Shards {
		if x > 0 && p.prices != nil {
			sl.ceiling = max(sl.ceiling, p.prices[i])
		}
	}
	if p.prices == nil {
		sl.ceiling = math.Inf(1)
	}
	// Make before break: while the new plan's paths warm up (a path that
	// was idle starts with a small congestion window: a 600 ms satellite
	// needs seconds to carry its share), shards its full paths cannot
	// take may still overflow up to the old plan's ceiling.
	sl.overflow = sl.ceiling
	if old := b.cur[class].Load(); old != nil {
		sl.overflow = max(sl.ceiling, old.ceiling)
	}
	b.cur[class].Store(sl)
}

// EndTransition ends class's make-before-break period (SetPlan): from
// now on its shards overflow only within the plan's own ceiling.
func (b *BestValue) EndTransition(class int) {
	if class < 0 || class >= MaxClasses {
		return
	}
	if sl := b.cur[class].Load(); sl != nil && sl.overflow != sl.ceiling {
		next := *sl
		next.overflow = next.ceiling
		b.cur[class].CompareAndSwap(sl, &next)
	}
}

// Code returns the plan's coding for a full block and, for a short one,
// as many data shards as its bytes fill at the plan's shard size, with
// parity in proportion and enough that the paths of its slots can be lost
// as the plan allows.
func (b *BestValue) Code(n, class int, paths []PathState) (int, int) {
	sl := b.plan(class)
	if sl == nil {
		return b.coder.Code(n, class, paths)
	}
	if n == 0 {
		return 1, 0
	}
	k := min(max(1, (n+sl.shard-1)/sl.shard), sl.k)
	if k == sl.k {
		return sl.k, sl.m
	}
	m := (sl.m*k + sl.k - 1) / sl.k
	for m < len(sl.order)-k && sl.tops[k+m] > m {
		m++
	}
	return k, m
}

// topShares returns, for each prefix length L of order, the number of
// its slots the f most used paths hold: what a short block of L shards
// loses with those paths.
func topShares(order []int, paths, f int) []int {
	tops := make([]int, len(order)+1)
	counts := make([]int, paths)
	sorted := make([]int, paths)
	for l, i := range order {
		counts[i]++
		copy(sorted, counts)
		slices.SortFunc(sorted, func(a, b int) int { return b - a })
		sum := 0
		for _, c := range sorted[:min(f, paths)] {
			sum += c
		}
		tops[l+1] = sum
	}
	return tops
}

// Place sends shard i where the plan's slot i says, or moves it.
func (b *BestValue) Place(paths []PathState, size, shard, class int, _ uint64, urgent bool) int {
	sl := b.plan(class)
	if sl == nil {
		return EarliestArrival(paths, size, urgent)
	}
	name := sl.order[shard%len(sl.order)]
	prio := b.Priority(class)
	for i := range paths {
		if paths[i].Name == name {
			if room(&paths[i], size, urgent || prio) {
				return i
			}
			// A plan that survives a path's loss only does so while each
			// path carries its share of every block: wait for room on a
			// live path rather than pile this block's shards elsewhere.
			if sl.survives > 0 && paths[i].Up && !paths[i].Stalled {
				return -1
			}
			break
		}
	}
	// Its path is full or down: the path where it arrives first among
	// those the ceiling allows; a re-send (urgent) goes anywhere.
	ceiling := sl.overflow
	if urgent {
		ceiling = math.Inf(1)
	}
	return earliestWithin(paths, size, urgent, ceiling)
}

// cheapest fills the cheapest path with room first (the lowest RTT among
// equal prices): least cost, whatever the latency.
type cheapest struct{ coder }

func (cheapest) Name() string { return "cheapest" }
func (cheapest) Place(paths []PathState, size, _, _ int, _ uint64, urgent bool) int {
	best := -1
	for i := range paths {
		p := &paths[i]
		if !room(p, size, urgent) {
			continue
		}
		if best < 0 || p.Price < paths[best].Price || p.Price == paths[best].Price && p.SRTT < paths[best].SRTT {
			best = i
		}
	}
	return best
}
