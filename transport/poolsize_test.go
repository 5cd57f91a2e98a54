package transport

import (
	"testing"
	"time"

	"braid/bench/emu"
)

// Under a policy that makes no plans, a path that loses packets at random
// grows its pool to lossPool connections by itself.
func TestPoolGrowsWithLoss(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	lossy := emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond, Loss: 0.02}
	clean := emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond}
	pds, _ := relayPaths(t, ts, lossy, clean)
	c := dialClient(t, Config{}, pds)
	loadPath(t, c)
	lossyPath, cleanPath := c.Paths()[0], c.Paths()[1]
	if !eventually(8*time.Second, func() bool { return lossyPath.poolSlots() == lossPool }) {
		st := lossyPath.Stats()
		t.Fatalf("lossy path pool: %d connections; stats %+v; want %d", lossyPath.poolSlots(), st, lossPool)
	}
	t.Logf("clean path: %d connection(s), loss %.4f", cleanPath.poolSlots(), cleanPath.Stats().Loss)
	if !eventually(5*time.Second, func() bool { return lossyPath.Stats().Conns == lossPool }) {
		t.Fatal("the lossy path's connections never all joined")
	}
}

func TestPoolForLoss(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		loss         float64
		srtt, minRTT time.Duration
		want         int
	}{
		{0, 20 * ms, 20 * ms, 1},                         // clean
		{0.001, 20 * ms, 20 * ms, 1},                     // under the threshold
		{0.01, 22 * ms, 20 * ms, lossPool},               // random loss, flat delay
		{0.01, 40 * ms, 20 * ms, 1},                      // loss with a queue: congestion
		{0.01, 1 * ms, 200 * time.Microsecond, lossPool}, // loopback-short RTTs get 5 ms slack
		{0.01, 20 * ms, 0, 1},                            // no RTT measured yet
	} {
		if got := poolForLoss(c.loss, c.srtt, c.minRTT); got != c.want {
			t.Errorf("loss %.3f srtt %v min %v: %d, want %d", c.loss, c.srtt, c.minRTT, got, c.want)
		}
	}
}

// A pool grows only after growTicks ticks in a row ask for more, shrinks
// only after shrinkTicks ask for less, drops to one when a queue shows
// for queueTicks in a row, and then does not grow for queueHold ticks.
func TestPoolSizer(t *testing.T) {
	var z poolSizer
	have := 1
	for i := 1; i < growTicks; i++ {
		if have = z.step(8, have, false, growTicks); have != 1 {
			t.Fatalf("grew after %d ticks, want %d", i, growTicks)
		}
	}
	have = z.step(1, have, false, growTicks) // one tick without loss: the count restarts
	for i := 0; i < growTicks-1; i++ {
		have = z.step(8, have, false, growTicks)
	}
	if have != 1 {
		t.Fatalf("grew on ticks not in a row: %d", have)
	}
	if have = z.step(8, have, false, growTicks); have != 8 {
		t.Fatalf("after %d ticks in a row: %d, want 8", growTicks, have)
	}
	for i := 1; i < shrinkTicks; i++ {
		if have = z.step(1, have, false, growTicks); have != 8 {
			t.Fatalf("shrank after %d ticks, want %d", i, shrinkTicks)
		}
	}
	if have = z.step(1, have, false, growTicks); have != 1 {
		t.Fatalf("after %d ticks asking for one: %d", shrinkTicks, have)
	}
	for range growTicks {
		have = z.step(8, have, false, growTicks)
	}
	if have != 8 {
		t.Fatalf("regrow: %d", have)
	}
	for i := 1; i < queueTicks; i++ {
		if have = z.step(8, have, true, growTicks); have != 8 {
			t.Fatalf("a queue for %d ticks (a start-up's): %d, want 8 kept", i, have)
		}
	}
	have = z.step(8, have, false, growTicks) // it drained: the count restarts
	for i := 1; i < queueTicks; i++ {
		have = z.step(8, have, true, growTicks)
	}
	if have != 8 {
		t.Fatalf("queue ticks not in a row: %d", have)
	}
	if have = z.step(8, have, true, growTicks); have != 1 {
		t.Fatalf("a queue for %d ticks in a row: %d, want 1", queueTicks, have)
	}
	for i := range queueHold {
		if have = z.step(8, have, false, growTicks); have != 1 {
			t.Fatalf("grew %d ticks after a queue, want none before %d", i+1, queueHold)
		}
	}
	for range growTicks {
		have = z.step(8, have, false, growTicks)
	}
	if have != 8 {
		t.Fatalf("after the hold: %d, want 8", have)
	}
	var u poolSizer // a path that does not code: one tick decides
	if got := u.step(8, 1, false, 1); got != 8 {
		t.Fatalf("growAfter 1: %d, want 8", got)
	}
}
