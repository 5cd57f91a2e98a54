package transport

import (
	"context"
	"testing"
	"time"

	"braid/bench/emu"
)

// liveConns counts a path's connections.
func liveConns(p *Path) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// onlyPath is the concentrator's side of the client's only path.
func (ts *testServer) onlyPath(t *testing.T) *Path {
	t.Helper()
	var p *Path
	if !eventually(5*time.Second, func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for _, s := range ts.sessions {
			if ps := s.Paths(); len(ps) == 1 {
				p = ps[0]
			}
		}
		return p != nil
	}) {
		t.Fatal("no session with one path at the concentrator")
	}
	return p
}

// TestPoolResize: a pool the plan sizes grows by dialing and shrinks by
// retiring connections (RETIRE, a drain, then close) while a transfer
// runs over it both ways, and not a byte is lost or changed.
func TestPoolResize(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	pds, _ := relayPaths(t, ts, emu.Link{RateBps: 200e6, Delay: 5 * time.Millisecond})
	c := dialClient(t, Config{}, pds) // Conns 0: sized by setPool
	p := c.Paths()[0]
	sp := ts.onlyPath(t)
	if n := p.poolSlots(); n != 1 {
		t.Fatalf("pool of %d before any plan, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		transfer(t, f, 48<<20, 7)
	}()
	both := func(n int) bool { return liveConns(p) == n && liveConns(sp) == n }
	p.setPool(4)
	if !eventually(5*time.Second, func() bool { return both(4) }) {
		t.Fatalf("pool of 4: %d connections at the client, %d at the concentrator", liveConns(p), liveConns(sp))
	}
	p.setPool(1)
	if !eventually(5*time.Second, func() bool { return both(1) }) {
		t.Fatalf("pool of 1: %d connections at the client, %d at the concentrator", liveConns(p), liveConns(sp))
	}
	if n := p.poolSlots(); n != 1 {
		t.Fatalf("pool size %d after shrinking to 1", n)
	}
	<-done
	f.Close()
	if !p.Up() {
		t.Fatal("path down after the pool shrank")
	}
	// Once everything is acknowledged, no connection counts a shard as
	// held (txBlock.setConn and finish moved each count exactly once).
	held := func(p *Path) (n int32) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pc := range p.conns {
			n += pc.holding.Load()
		}
		return n
	}
	if !eventually(5*time.Second, func() bool { return held(p) == 0 && held(sp) == 0 }) {
		t.Fatalf("shards held after the transfer was acknowledged: %d at the client, %d at the concentrator", held(p), held(sp))
	}
	// Retiring drains: neither end had to send a shard again because its
	// retired connection closed first. (A loaded machine may delay an ack
	// past the RTO, or a probe's answer long enough to make a connection
	// suspect; those re-sends are not cuts.)
	if cl, sl := c.stats.ShardsCut.Load(), sp.s.stats.ShardsCut.Load(); cl+sl != 0 {
		t.Fatalf("shards sent again after their connection retired: %d by the client, %d by the concentrator (all re-sends: %d, %d)",
			cl, sl, c.stats.ShardsResent.Load(), sp.s.stats.ShardsResent.Load())
	}
}

// TestPoolFromPlan: under bestvalue, a path with a large bandwidth-delay
// product (30 Mbit/s, 300 ms) gets the four connections its plan asks for
// without conns= in its SPEC; one with conns= keeps its number.
func TestPoolFromPlan(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	link := emu.Link{RateBps: 30e6, Delay: 150 * time.Millisecond}
	pds, _ := relayPaths(t, ts, link, link)
	pds[0].Info.RateMbps, pds[1].Info.RateMbps = 30, 30
	pds[1].Conns = 2
	c := dialClient(t, Config{Policy: "bestvalue"}, pds)
	a, b := c.Paths()[0], c.Paths()[1]
	if !eventually(10*time.Second, func() bool { return liveConns(a) == 4 }) {
		pi, _ := c.Plan()
		t.Fatalf("path a: %d connections (pool %d), want 4; plan %s", liveConns(a), a.poolSlots(), pi.Plan.String())
	}
	if n := b.poolSlots(); n != 2 || liveConns(b) > 2 {
		t.Fatalf("path b with conns=2: pool %d, %d connections", n, liveConns(b))
	}
}

// TestShardLive: a shard dispatch has not placed yet is on its way (a
// connection that ends meanwhile must not have it sent twice), unless
// dispatch gave up on it; a placed one lives as long as its path.
func TestShardLive(t *testing.T) {
	var b txBlock
	if !b.live(0) {
		t.Fatal("a shard being dispatched counts as lost")
	}
	p := &Path{}
	b.path[1].Store(p)
	if b.live(1) {
		t.Fatal("a shard queued on a path that is down counts as live")
	}
	p.up.Store(true)
	if !b.live(1) {
		t.Fatal("a shard queued on a live path counts as lost")
	}
	b.dropped.Store(true)
	if b.live(0) {
		t.Fatal("a shard dispatch gave up on counts as live")
	}
}
