package transport

import (
	"testing"
	"time"

	"braid/bench/emu"
)

// Under a policy that makes no plans, a path that loses packets at random
// grows its pool to four connections by itself, and a clean one keeps one.
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
	if n := cleanPath.poolSlots(); n != 1 {
		t.Fatalf("clean path's pool: %d connections, loss %.4f; want 1", n, cleanPath.Stats().Loss)
	}
	if !eventually(5*time.Second, func() bool { return lossyPath.Stats().Conns == 4 }) {
		t.Fatal("the lossy path's four connections never joined")
	}
}
