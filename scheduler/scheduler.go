// Package scheduler holds braid's path policy as pure functions: path
// state in, a decision out. It reads no clock, starts no goroutine and does
// no I/O, so every decision can be table-tested and replayed.
//
// It holds the named policies (policy.go) and the best-value planner
// (plan.go: the coding and dispersion that earn most while an SLA holds;
// planner.go: when a new plan replaces the current one).
package scheduler

import (
	"math"
	"time"
)

// PathState is what the scheduler knows about one path at one instant.
type PathState struct {
	// Name is the path's name, as its client configured it.
	Name string
	Up   bool
	// SRTT is the smoothed round-trip time.
	SRTT time.Duration
	// Rate is the estimated sending rate in bytes per second.
	Rate float64
	// Queued is the bytes waiting to be sent on the path.
	Queued int64
	// QueueLimit is the most bytes that may wait on the path.
	QueueLimit int64
	// Stalled is true when the path's queue holds bytes that have not
	// moved for a while: its connection has stopped sending.
	Stalled bool

	// What the planner also reads.

	// Price is what the provider pays per GB carried, in USD; Own is true
	// on the provider's own network (preferred at equal profit).
	Price float64
	Own   bool
	// Loss is the packet loss fraction.
	Loss float64
	// LinkLoss is the link's loss before the packet repair beneath QUIC
	// (0 where packets are not coded). Loss is what that repair leaves,
	// which is what a stream sees; a datagram group plans from the
	// larger of the two, because that repair gives sparse packets little
	// parity (transport/pktfec, closeGroupLocked).
	LinkLoss float64
	// MinRTT and RTTP99 are the least and the 99th percentile round trip.
	MinRTT, RTTP99 time.Duration
	// Capacity is the bytes per second the path can carry for the
	// session: the most it was seen to deliver, or its configured rate
	// while it has not been measured under load.
	Capacity float64
}

// Coding returns the data and parity shard counts for a block of n bytes:
// one data shard per minShard bytes, at most maxK, so small writes make
// small blocks; parity in proportion, ceil(m*k/maxK), at least one when
// m > 0. An empty block (a bare end-of-flow) has no parity: there is
// nothing to code.
func Coding(n, maxK, m, minShard int) (k, parity int) {
	k = min(max(1, (n+minShard-1)/minShard), maxK)
	if m > 0 && n > 0 {
		parity = max(1, (m*k+maxK-1)/maxK)
	}
	return k, parity
}

// EarliestArrival returns the index of the live path on which a shard of
// size bytes is expected to arrive first: its queue drained at the path's
// rate, plus half its RTT. A path whose queue is at its limit is skipped
// unless urgent, so a slow or stalled path never holds the others back.
// It returns -1 when no path can take the shard now.
func EarliestArrival(paths []PathState, size int, urgent bool) int {
	return earliestWithin(paths, size, urgent, math.Inf(1))
}

// earliestWithin is EarliestArrival among the paths no dearer than
// ceiling (USD per GB).
func earliestWithin(paths []PathState, size int, urgent bool, ceiling float64) int {
	best := -1
	bestT := math.Inf(1)
	for i := range paths {
		p := &paths[i]
		if !p.Up || p.Rate <= 0 || p.Price > ceiling {
			continue
		}
		if !urgent && p.Queued > 0 && p.Queued+int64(size) > p.QueueLimit {
			continue
		}
		t := float64(p.Queued+int64(size))/p.Rate + p.SRTT.Seconds()/2
		if t < bestT {
			best, bestT = i, t
		}
	}
	return best
}
