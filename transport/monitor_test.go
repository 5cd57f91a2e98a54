package transport

import (
	"context"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/transport/pathmon"
)

// watchPath opens a client session with one path through an emulated
// link and returns the client's view of that path.
func watchPath(t *testing.T, link emu.Link) (*Client, *emu.Relay, *testServer) {
	ts := newTestServer(t, Config{}, nil)
	pds, relays := relayPaths(t, ts, link)
	c := dialClient(t, Config{}, pds)
	return c, relays[0], ts
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func TestMonitorSeesRTTStep(t *testing.T) {
	c, relay, _ := watchPath(t, emu.Link{Delay: 10 * time.Millisecond})
	p := c.Paths()[0]
	if !eventually(3*time.Second, func() bool { r := p.Stats().RTT; return r > 15*time.Millisecond && r < 40*time.Millisecond }) {
		t.Fatalf("RTT %v, want about 20 ms", p.Stats().RTT)
	}
	relay.SetLinks(emu.Link{Delay: 40 * time.Millisecond}, emu.Link{Delay: 40 * time.Millisecond})
	// The step must show within a second.
	if !eventually(time.Second, func() bool { return p.Stats().RTT > 60*time.Millisecond }) {
		t.Fatalf("RTT %v a second after a step to 80 ms", p.Stats().RTT)
	}
}

func TestMonitorOutage(t *testing.T) {
	c, relay, _ := watchPath(t, emu.Link{Delay: 10 * time.Millisecond})
	p := c.Paths()[0]
	if !eventually(2*time.Second, func() bool { return p.Stats().State == pathmon.StateUp }) {
		t.Fatal("path never up")
	}
	relay.SetBroken(true)
	broke := time.Now()
	var degraded time.Duration
	if !eventually(2*time.Second, func() bool {
		st := p.Stats().State
		if st != pathmon.StateUp && degraded == 0 {
			degraded = time.Since(broke)
		}
		return st == pathmon.StateDown
	}) {
		t.Fatalf("path %v two seconds into an outage", p.Stats().State)
	}
	down := time.Since(broke)
	t.Logf("20 ms RTT path: suspect after %v, down after %v (limit max(200 ms, 3 SRTT + 100 ms))",
		degraded.Round(time.Millisecond), down.Round(time.Millisecond))
	// 3 RTT + 200 ms is 260 ms; a busy machine's timers get some slack.
	if down > time.Second {
		t.Fatalf("down only after %v", down)
	}
	relay.SetBroken(false)
	back := time.Now()
	// The only path: no hold-down (UpAfter) stands between the session
	// and its one way out; a few answered probes bring it back.
	if !eventually(3*time.Second, func() bool { return p.Stats().State == pathmon.StateUp }) {
		t.Fatalf("path %v after the outage", p.Stats().State)
	}
	if d := time.Since(back); d > 900*time.Millisecond {
		t.Fatalf("the only path came back %v after its outage, as if held down for UpAfter", d)
	}
}

// With another path up, a path back from an outage waits out the
// hold-down, so a flapping link does not whipsaw the traffic.
func TestHoldDownWhileAnotherPathLives(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	link := emu.Link{Delay: 10 * time.Millisecond}
	pds, relays := relayPaths(t, ts, link, link)
	c := dialClient(t, Config{}, pds)
	p := c.Paths()[0]
	if !eventually(2*time.Second, func() bool { return p.Up() && c.Paths()[1].Up() }) {
		t.Fatal("paths never up")
	}
	relays[0].SetBroken(true)
	if !eventually(2*time.Second, func() bool { return p.Stats().State == pathmon.StateDown }) {
		t.Fatalf("path %v two seconds into an outage", p.Stats().State)
	}
	relays[0].SetBroken(false)
	time.Sleep(300 * time.Millisecond)
	if s := p.Stats().State; s != pathmon.StateDown {
		t.Fatalf("path %v 300 ms after the outage ended; want down until the hold-down passes", s)
	}
	if !eventually(3*time.Second, func() bool { return p.Stats().State == pathmon.StateUp }) {
		t.Fatalf("path %v after the hold-down", p.Stats().State)
	}
}

// loadPath keeps a flow writing upstream (and drains its echo) until the
// test ends.
func loadPath(t *testing.T, c *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Reset)
	go func() { // load the path upstream
		buf := make([]byte, 64<<10)
		for ctx.Err() == nil {
			if _, err := f.Write(buf); err != nil {
				return
			}
		}
	}()
	go func() { // drain the echo
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
		}
	}()
}

func TestMonitorLoss(t *testing.T) {
	c, _, _ := watchPath(t, emu.Link{RateBps: 20e6, Delay: 10 * time.Millisecond, Loss: 0.05})
	loadPath(t, c)
	p := c.Paths()[0]
	var st PathStats
	ok := eventually(5*time.Second, func() bool {
		st = p.Stats()
		return st.Loss > 0.04 && st.Loss < 0.06 && st.DeliveryBps > 0
	})
	if !ok {
		t.Fatalf("loss estimate %.3f, want 0.05 +- 0.01", st.Loss)
	}
	// One Reno connection cannot fill a link with 5% loss; the delivery
	// estimate must not exceed the link (20 Mbit/s + 15%).
	if st.DeliveryBps <= 0 || st.DeliveryBps > 23e6 {
		t.Fatalf("delivery estimate %.1f Mbit/s on a 20 Mbit/s link", st.DeliveryBps/1e6)
	}
	t.Logf("loss %.3f, delivery %.1f Mbit/s, rtt %v p99 %v jitter %v", st.Loss, st.DeliveryBps/1e6, st.RTT, st.RTTP99, st.Jitter)
}

func TestMonitorRate(t *testing.T) {
	c, _, _ := watchPath(t, emu.Link{RateBps: 20e6, Delay: 10 * time.Millisecond})
	loadPath(t, c)
	p := c.Paths()[0]
	var st PathStats
	// Under load, the delivery estimate settles within 15% of the link.
	ok := eventually(8*time.Second, func() bool {
		st = p.Stats()
		return st.DeliveryBps > 17e6 && st.DeliveryBps < 23e6
	})
	if !ok {
		t.Fatalf("delivery estimate %.1f Mbit/s on a 20 Mbit/s link", st.DeliveryBps/1e6)
	}
}
