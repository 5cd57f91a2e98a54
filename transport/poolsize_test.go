package transport

import (
	"testing"
	"time"

	"braid/bench/emu"
	"braid/scheduler"
)

// Under a policy that makes no plans, a path that loses packets at random
// grows its pool to scheduler.LossPool connections by itself.
func TestPoolGrowsWithLoss(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	lossy := emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond, Loss: 0.02}
	clean := emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond}
	pds, _ := relayPaths(t, ts, lossy, clean)
	c := dialClient(t, Config{}, pds)
	loadPath(t, c)
	lossyPath, cleanPath := c.Paths()[0], c.Paths()[1]
	if !eventually(8*time.Second, func() bool { return lossyPath.poolSlots() == scheduler.LossPool }) {
		st := lossyPath.Stats()
		t.Fatalf("lossy path pool: %d connections; stats %+v; want %d", lossyPath.poolSlots(), st, scheduler.LossPool)
	}
	t.Logf("clean path: %d connection(s), loss %.4f", cleanPath.poolSlots(), cleanPath.Stats().Loss)
	if !eventually(5*time.Second, func() bool { return lossyPath.Stats().Conns == scheduler.LossPool }) {
		t.Fatal("the lossy path's connections never all joined")
	}
}
