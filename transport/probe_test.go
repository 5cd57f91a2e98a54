package transport

import (
	"context"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/transport/pathmon"
)

// pricedPaths opens a client session over two emulated paths, a free one
// (a) and one at $3/GB (b), and returns the client and the relays.
func pricedPaths(t *testing.T, cfg Config) (*Client, []*emu.Relay, *testServer) {
	t.Helper()
	ts := newTestServer(t, Config{}, nil)
	link := emu.Link{Delay: 5 * time.Millisecond}
	pds, relays := relayPaths(t, ts, link, link)
	pds[1].Info.PriceGB = 3
	return dialClient(t, cfg, pds), relays, ts
}

func probeBytes(p *Path) uint64 { return p.ProbeBytesSent.Load() + p.ProbeBytesReceived.Load() }

// An idle path is probed, and its probing is counted; a priced one is
// probed far less, on both ends, once it has been idle for a second.
func TestIdleProbingCounted(t *testing.T) {
	c, _, ts := pricedPaths(t, Config{})
	free, priced := c.Paths()[0], c.Paths()[1]
	if !eventually(5*time.Second, func() bool { return priced.Stats().SlowProbing > 0 }) {
		t.Fatal("the idle priced path is not probed slowly")
	}
	var server *Session
	if !eventually(2*time.Second, func() bool {
		ss := ts.list()
		if len(ss) == 1 {
			server = ss[0]
		}
		return server != nil && len(server.Paths()) == 2
	}) {
		t.Fatal("no concentrator session with two paths")
	}
	if !eventually(3*time.Second, func() bool {
		for _, p := range server.Paths() {
			if p.Name() == "b" && p.Stats().SlowProbing > 0 {
				return true
			}
		}
		return false
	}) {
		t.Fatal("the concentrator's end of the idle priced path is not probed slowly")
	}
	if free.Stats().SlowProbing != 0 {
		t.Fatal("the free path is probed slowly")
	}
	f0, p0 := probeBytes(free), probeBytes(priced)
	time.Sleep(3 * time.Second)
	df, dp := probeBytes(free)-f0, probeBytes(priced)-p0
	t.Logf("probing over 3 s idle: free path %d B (%.0f B/s), priced path %d B (%.0f B/s)", df, float64(df)/3, dp, float64(dp)/3)
	// At 50 ms a connection's probing is about 5 kB/s both ways; at 1 s
	// a twentieth of that.
	if df < 3*1000 {
		t.Fatalf("free path's probing counted as %d B in 3 s", df)
	}
	if dp == 0 || dp*5 > df {
		t.Fatalf("priced path's probing %d B against the free path's %d B: want some, and under a fifth", dp, df)
	}
	if st := priced.Stats(); st.ProbeBytesSent == 0 || st.ProbeBytesReceived == 0 || st.BytesSent != 0 {
		t.Fatalf("stats: probe bytes %d/%d, shard bytes %d", st.ProbeBytesSent, st.ProbeBytesReceived, st.BytesSent)
	}
}

// A priced path probed slowly that dies is still found down within the
// bound docs/STATUS.md states (3 s after its last answer on a path under
// 500 ms of RTT).
func TestIdlePricedPathDeathFound(t *testing.T) {
	c, relays, _ := pricedPaths(t, Config{})
	priced := c.Paths()[1]
	if !eventually(5*time.Second, func() bool { return priced.Stats().SlowProbing > 0 }) {
		t.Fatal("the idle priced path is not probed slowly")
	}
	relays[1].SetBroken(true)
	broke := time.Now()
	if !eventually(8*time.Second, func() bool { return priced.Stats().State == pathmon.StateDown }) {
		t.Fatalf("path %v 8 s into an outage", priced.Stats().State)
	}
	took := time.Since(broke)
	t.Logf("slowly probed path down %v after it broke", took.Round(time.Millisecond))
	// 3 s, and a busy machine's timers get some slack.
	if took > 4*time.Second {
		t.Fatalf("down only %v after it broke, want within 3 s", took)
	}
	if st := priced.Stats(); st.Why == "" {
		t.Fatal("a down path does not say why")
	}
}

// Traffic on a slowly probed path makes its probing fast at once, and
// the silence slow probing left does not take the path down.
func TestSlowProbingWakes(t *testing.T) {
	c, _, _ := pricedPaths(t, Config{Policy: "single:b"})
	priced := c.Paths()[1]
	if !eventually(5*time.Second, func() bool { return priced.Stats().SlowProbing > 0 }) {
		t.Fatal("the idle priced path is not probed slowly")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	bad := make(chan string, 1)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if st := priced.Stats(); st.State != pathmon.StateUp {
				select {
				case bad <- st.State.String() + ": " + st.Why:
				default:
				}
			}
		}
	}()
	transfer(t, f, 4<<20, 7)
	if n := priced.Stats().SlowProbing; n != 0 {
		t.Errorf("%d connection(s) still probed slowly right after a transfer", n)
	}
	close(done)
	select {
	case s := <-bad:
		t.Fatalf("path went %s while traffic woke its probing", s)
	default:
	}
	// A shard re-sent because its connection or path failed says the
	// path was taken for dead. Overdue re-sends are not counted: a block
	// that waits past the RTO on a loaded machine (the race detector, CI)
	// is sent again on a live path.
	st := c.Stats()
	if n, late := st.ShardsResent.Load(), st.ShardsOverdue.Load(); n > late {
		t.Fatalf("%d shards re-sent, %d of them overdue", n, late)
	} else if late > 0 {
		t.Logf("%d overdue shards re-sent", late)
	}
}
