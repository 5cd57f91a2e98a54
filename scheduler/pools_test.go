package scheduler

import (
	"testing"
	"time"
)

func TestPoolForLoss(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		loss         float64
		srtt, minRTT time.Duration
		want         int
	}{
		{0, 20 * ms, 20 * ms, 1},                         // clean
		{0.001, 20 * ms, 20 * ms, 1},                     // under the threshold
		{0.01, 22 * ms, 20 * ms, LossPool},               // random loss, flat delay
		{0.01, 40 * ms, 20 * ms, 1},                      // loss with a queue: congestion
		{0.01, 1 * ms, 200 * time.Microsecond, LossPool}, // loopback-short RTTs get 5 ms slack
		{0.01, 20 * ms, 0, 1},                            // no RTT measured yet
	} {
		if got := PoolForLoss(c.loss, c.srtt, c.minRTT); got != c.want {
			t.Errorf("loss %.3f srtt %v min %v: %d, want %d", c.loss, c.srtt, c.minRTT, got, c.want)
		}
	}
}

// A pool grows only after GrowTicks ticks in a row ask for more, shrinks
// only after ShrinkTicks ask for less, drops to one when a queue shows
// for QueueTicks in a row, and then does not grow for QueueHold ticks.
func TestPoolSizer(t *testing.T) {
	var z poolSizer
	have := 1
	for i := 1; i < GrowTicks; i++ {
		if have = z.step(8, have, false, GrowTicks); have != 1 {
			t.Fatalf("grew after %d ticks, want %d", i, GrowTicks)
		}
	}
	have = z.step(1, have, false, GrowTicks) // one tick without loss: the count restarts
	for i := 0; i < GrowTicks-1; i++ {
		have = z.step(8, have, false, GrowTicks)
	}
	if have != 1 {
		t.Fatalf("grew on ticks not in a row: %d", have)
	}
	if have = z.step(8, have, false, GrowTicks); have != 8 {
		t.Fatalf("after %d ticks in a row: %d, want 8", GrowTicks, have)
	}
	for i := 1; i < ShrinkTicks; i++ {
		if have = z.step(1, have, false, GrowTicks); have != 8 {
			t.Fatalf("shrank after %d ticks, want %d", i, ShrinkTicks)
		}
	}
	if have = z.step(1, have, false, GrowTicks); have != 1 {
		t.Fatalf("after %d ticks asking for one: %d", ShrinkTicks, have)
	}
	for range GrowTicks {
		have = z.step(8, have, false, GrowTicks)
	}
	if have != 8 {
		t.Fatalf("regrow: %d", have)
	}
	for i := 1; i < QueueTicks; i++ {
		if have = z.step(8, have, true, GrowTicks); have != 8 {
			t.Fatalf("a queue for %d ticks (a start-up's): %d, want 8 kept", i, have)
		}
	}
	have = z.step(8, have, false, GrowTicks) // it drained: the count restarts
	for i := 1; i < QueueTicks; i++ {
		have = z.step(8, have, true, GrowTicks)
	}
	if have != 8 {
		t.Fatalf("queue ticks not in a row: %d", have)
	}
	if have = z.step(8, have, true, GrowTicks); have != 1 {
		t.Fatalf("a queue for %d ticks in a row: %d, want 1", QueueTicks, have)
	}
	for i := range QueueHold {
		if have = z.step(8, have, false, GrowTicks); have != 1 {
			t.Fatalf("grew %d ticks after a queue, want none before %d", i+1, QueueHold)
		}
	}
	for range GrowTicks {
		have = z.step(8, have, false, GrowTicks)
	}
	if have != 8 {
		t.Fatalf("after the hold: %d, want 8", have)
	}
	var u poolSizer // a path that does not code: one tick decides
	if got := u.step(8, 1, false, 1); got != 8 {
		t.Fatalf("growAfter 1: %d, want 8", got)
	}
}
