package scheduler

import (
	"fmt"
	"sort"
	"strings"
)

// Policy decides how a block is coded and which path carries each shard.
// Code and Place depend only on their inputs and, for a Planning policy,
// on the plans it was handed: the same inputs and plans give the same
// answer.
type Policy interface {
	// Name is the policy's registry name.
	Name() string
	// Code returns the data and parity shards for a block of n bytes of
	// a flow of traffic class class, given the paths as they are now.
	Code(n, class int, paths []PathState) (k, m int)
	// Place returns the index of the path for shard `shard` (0..k+m-1) of
	// a block, seq being a running count of shards placed in the session,
	// or -1 when no path can take it now. urgent shards (re-sends) ignore
	// queue limits.
	Place(paths []PathState, size, shard, class int, seq uint64, urgent bool) int
}

// A Policy may implement any of the optional interfaces below; the
// session asks for them once, when it starts, and never names a policy.

// Prioritizer is a policy some of whose classes are latency-bound: their
// shards go out next, with the re-sends, without waiting for room or for
// their flow's turn.
type Prioritizer interface {
	Priority(class int) bool
}

// Compressor is a policy that decides, per class, whether flows compress
// their blocks.
type Compressor interface {
	Compress(class int) bool
}

// Planning is a policy that follows plans: the session runs a PlanLoop
// and hands each class's plan to it. It reads PathState.Stalled, which
// the session fills only for a Planning policy.
type Planning interface {
	Policy
	Prioritizer
	SetPlan(class int, p *Plan)
	SetPriority(class int, on bool)
	EndTransition(class int)
}

var _ Planning = (*BestValue)(nil)
var _ Compressor = (*BestValue)(nil)

// Names lists the registered policies; single takes a path name.
func Names() []string {
	names := []string{"bestvalue", "cheapest", "duplicate", "minrtt", "roundrobin", "single:<path>", "weighted"}
	sort.Strings(names)
	return names
}

// New returns the policy called name. maxK and m are the coding of a full
// block for the policies that code (weighted, minrtt, roundrobin, single).
func New(name string, maxK, m, minShard int) (Policy, error) {
	c := coder{maxK: maxK, m: m, minShard: minShard}
	switch {
	case name == "" || name == "weighted":
		return weighted{c}, nil
	case name == "minrtt":
		return minRTT{c}, nil
	case name == "roundrobin":
		return roundRobin{c}, nil
	case name == "bestvalue":
		return &BestValue{coder: c}, nil
	case name == "cheapest":
		return cheapest{c}, nil
	case name == "duplicate":
		return duplicate{}, nil
	case strings.HasPrefix(name, "single:") && len(name) > len("single:"):
		return single{c, strings.TrimPrefix(name, "single:")}, nil
	}
	return nil, fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(Names(), ", "))
}

type coder struct{ maxK, m, minShard int }

func (c coder) Code(n, _ int, _ []PathState) (int, int) { return Coding(n, c.maxK, c.m, c.minShard) }

// room reports whether p can take a shard of size bytes now.
func room(p *PathState, size int, urgent bool) bool {
	return p.Up && p.Rate > 0 && (urgent || p.Queued == 0 || p.Queued+int64(size) <= p.QueueLimit)
}

// weighted sends each shard where it is expected to arrive first; paths
// thus share in proportion to their rates (EarliestArrival).
type weighted struct{ coder }

func (weighted) Name() string { return "weighted" }
func (weighted) Place(paths []PathState, size, _, _ int, _ uint64, urgent bool) int {
	return EarliestArrival(paths, size, urgent)
}

// minRTT fills the lowest-RTT path with room first, as Linux MPTCP's
// default scheduler does.
type minRTT struct{ coder }

func (minRTT) Name() string { return "minrtt" }
func (minRTT) Place(paths []PathState, size, _, _ int, _ uint64, urgent bool) int {
	best := -1
	for i := range paths {
		if room(&paths[i], size, urgent) && (best < 0 || paths[i].SRTT < paths[best].SRTT) {
			best = i
		}
	}
	return best
}

// roundRobin takes the paths in turn, skipping those without room.
type roundRobin struct{ coder }

func (roundRobin) Name() string { return "roundrobin" }
func (roundRobin) Place(paths []PathState, size, _, _ int, seq uint64, urgent bool) int {
	n := 0
	for i := range paths {
		if room(&paths[i], size, urgent) {
			n++
		}
	}
	if n == 0 {
		return -1
	}
	want := int(seq % uint64(n))
	for i := range paths {
		if room(&paths[i], size, urgent) {
			if want == 0 {
				return i
			}
			want--
		}
	}
	return -1
}

// duplicate sends every block whole on every live path: one data shard and
// a copy per other path, shard i on the i-th live path. It survives the
// loss of all paths but one, at p times the cost.
type duplicate struct{}

func (duplicate) Name() string { return "duplicate" }
func (duplicate) Code(n, _ int, paths []PathState) (int, int) {
	up := 0
	for i := range paths {
		if paths[i].Up {
			up++
		}
	}
	if n == 0 {
		return 1, 0
	}
	return 1, max(up, 1) - 1
}
func (duplicate) Place(paths []PathState, size, shard, _ int, _ uint64, urgent bool) int {
	seen := 0
	for i := range paths {
		if !paths[i].Up {
			continue
		}
		if seen == shard {
			if room(&paths[i], size, urgent) || paths[i].Queued < 4*paths[i].QueueLimit {
				return i
			}
			return -1 // wait for this path: the copy belongs to it
		}
		seen++
	}
	// Fewer live paths than shards (one went down since the block was
	// coded): any path with room.
	return EarliestArrival(paths, size, urgent)
}

// single uses one named path only, the single-path baseline.
type single struct {
	coder
	path string
}

func (s single) Name() string { return "single:" + s.path }
func (s single) Place(paths []PathState, size, _, _ int, _ uint64, urgent bool) int {
	for i := range paths {
		if paths[i].Name == s.path && room(&paths[i], size, urgent) {
			return i
		}
	}
	return -1
}
