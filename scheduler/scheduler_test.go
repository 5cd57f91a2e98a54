package scheduler

import (
	"testing"
	"time"
)

func TestCoding(t *testing.T) {
	cases := []struct{ n, maxK, m, k, parity int }{
		{0, 8, 2, 1, 0},
		{1, 8, 2, 1, 1},
		{1024, 8, 2, 1, 1},
		{1025, 8, 2, 2, 1},
		{5000, 8, 2, 5, 2},
		{64 << 10, 8, 2, 8, 2},
		{64 << 10, 8, 0, 8, 0},
		{1 << 20, 16, 4, 16, 4},
	}
	for _, c := range cases {
		k, p := Coding(c.n, c.maxK, c.m, 1024)
		if k != c.k || p != c.parity {
			t.Errorf("Coding(%d, %d, %d) = %d+%d, want %d+%d", c.n, c.maxK, c.m, k, p, c.k, c.parity)
		}
	}
}

func TestEarliestArrival(t *testing.T) {
	ms := time.Millisecond
	fast := PathState{Up: true, SRTT: 20 * ms, Rate: 5e6, QueueLimit: 1 << 20}
	slow := PathState{Up: true, SRTT: 120 * ms, Rate: 1.25e6, QueueLimit: 1 << 20}
	cases := []struct {
		name   string
		paths  []PathState
		urgent bool
		want   int
	}{
		{"empty queues: lower delay wins", []PathState{slow, fast}, false, 1},
		{"down paths are skipped", []PathState{slow, {SRTT: ms, Rate: 1e9}}, false, 0},
		{"none up", []PathState{{}, {}}, false, -1},
		{"a long queue on the fast path sends to the slow one",
			[]PathState{func() PathState { p := fast; p.Queued = 600 << 10; return p }(), slow}, false, 1},
		{"a full queue is skipped",
			[]PathState{func() PathState { p := fast; p.Queued = 1 << 20; return p }(), slow}, false, 1},
		{"urgent ignores the limit",
			[]PathState{func() PathState { p := fast; p.Queued = 1 << 20; p.Rate = 1e9; return p }(), slow}, true, 0},
		{"all full", []PathState{func() PathState { p := fast; p.Queued = 1 << 20; return p }()}, false, -1},
	}
	for _, c := range cases {
		if got := EarliestArrival(c.paths, 8192, c.urgent); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
}

// TestEarliestArrivalShares checks that, fed back its own decisions,
// dispersion splits shards in proportion to the paths' rates.
func TestEarliestArrivalShares(t *testing.T) {
	paths := []PathState{
		{Up: true, SRTT: 20 * time.Millisecond, Rate: 5e6, QueueLimit: 1 << 30},
		{Up: true, SRTT: 50 * time.Millisecond, Rate: 2.5e6, QueueLimit: 1 << 30},
	}
	const size = 8192
	count := make([]int, 2)
	for range 10000 {
		i := EarliestArrival(paths, size, false)
		count[i]++
		paths[i].Queued += size
	}
	ratio := float64(count[0]) / float64(count[1])
	if ratio < 1.9 || ratio > 2.1 {
		t.Fatalf("split %v: ratio %.2f, want about 2 (the rate ratio)", count, ratio)
	}
}

func BenchmarkEarliestArrival(b *testing.B) {
	paths := make([]PathState, 4)
	for i := range paths {
		paths[i] = PathState{Up: true, SRTT: time.Duration(i+1) * 10 * time.Millisecond, Rate: float64(i+1) * 1e6, QueueLimit: 1 << 20}
	}
	b.ReportAllocs()
	for b.Loop() {
		EarliestArrival(paths, 8192, false)
	}
}
