package transport

import (
	"testing"
	"time"

	"braid/bench/emu"
)

// Under a policy that makes no plans, a path that loses packets at random
// grows its pool to four connections by itself.
func TestPoolGrowsWithLoss(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	lossy := emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond, Loss: 0.02}
	clean := emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond}
	pds, _ := relayPaths(t, ts, lossy, clean)
	c := dialClient(t, Config{}, pds)
	loadPath(t, c)
	lossyPath, cleanPath := c.Paths()[0], c.Paths()[1]
	if !eventually(8*time.Second, func() bool { return lossyPath.poolSlots() == 4 }) {
		st := lossyPath.Stats()
		t.Fatalf("lossy path pool: %d connections; stats %+v; want 4", lossyPath.poolSlots(), st)
	}
	t.Logf("clean path: %d connection(s), loss %.4f", cleanPath.poolSlots(), cleanPath.Stats().Loss)
	if !eventually(5*time.Second, func() bool { return lossyPath.Stats().Conns == 4 }) {
		t.Fatal("the lossy path's four connections never joined")
	}
}

func TestPoolForLoss(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		loss         float64
		srtt, minRTT time.Duration
		want         int
	}{
		{0, 20 * ms, 20 * ms, 1},                  // clean
		{0.001, 20 * ms, 20 * ms, 1},              // under the threshold
		{0.01, 22 * ms, 20 * ms, 4},               // random loss, flat delay
		{0.01, 40 * ms, 20 * ms, 1},               // loss with a queue: congestion
		{0.01, 1 * ms, 200 * time.Microsecond, 4}, // loopback-short RTTs get 5 ms slack
		{0.01, 20 * ms, 0, 1},                     // no RTT measured yet
	} {
		if got := poolForLoss(c.loss, c.srtt, c.minRTT); got != c.want {
			t.Errorf("loss %.3f srtt %v min %v: %d, want %d", c.loss, c.srtt, c.minRTT, got, c.want)
		}
	}
}
