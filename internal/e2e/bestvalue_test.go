package e2e

import (
	"strings"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/internal/tier"
	"braid/scheduler"
	"braid/transport"
)

// TestBestValue: under bestvalue an upload rides the cheap paths the
// plan chose and keeps off the dear one; the plan shows in the status;
// a new tier re-plans at once.
func TestBestValue(t *testing.T) {
	// The tier pays $2/GB: the dear path loses money on every byte, so
	// bestvalue uses it only when the SLA needs it.
	terms := transport.Terms{Tier: "basic", RevenueGB: 2,
		SLA: scheduler.SLA{MinGoodput: 20e6 / 8}, Profile: scheduler.Profile{CPU: scheduler.CPUHigh}}
	links := []emu.Link{
		{RateBps: 30e6, Delay: 5 * time.Millisecond},  // cheap, own
		{RateBps: 100e6, Delay: 2 * time.Millisecond}, // fast and dear
		{RateBps: 30e6, Delay: 10 * time.Millisecond}, // cheap
	}
	w := newWorld(t, options{links: links, prices: []float64{0.1, 4, 0.5},
		transport: transport.Config{Policy: "bestvalue", Terms: terms}})
	sess := w.cli.Session()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := sess.Plan(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no plan within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pi, _ := sess.Plan()
	if pi.Plan.Uses(1) || !pi.Plan.Uses(0) || !pi.Plan.Feasible {
		t.Fatalf("plan for 20 Mbit/s: %s", pi.Plan.String())
	}
	conn, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echoCheck(conn, 8<<20, 23); err != nil {
		t.Fatal(err)
	}
	var carried []uint64
	for _, p := range sess.Paths() {
		carried = append(carried, p.BytesSent.Load())
	}
	// The dear path may carry the first shards (before the first plan)
	// and re-sends, not a share.
	if carried[1] > carried[0]/10 {
		t.Fatalf("dear path carried %v", carried)
	}
	st := w.cli.Status()
	if st.Plan == nil || st.Plan.Tier != "basic" || st.Plan.Shards["p1"] != 0 || st.Plan.Shards["p0"] == 0 {
		t.Fatalf("status plan: %+v", st.Plan)
	}

	// A tier promised 80 Mbit/s needs the dear path too (the cheap ones
	// plan 27 Mbit/s each), and gets it at once.
	before := pi.Changes
	terms.Tier, terms.SLA.MinGoodput = "gold", 80e6/8
	sess.SetTerms(terms)
	deadline = time.Now().Add(3 * time.Second)
	for {
		pi, _ = sess.Plan()
		if pi.Changes > before && pi.Plan.Uses(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-plan for the new tier: %s", pi.Plan.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := w.cli.Status(); st.Plan.Tier != "gold" || !strings.Contains(st.Plan.Text, "p1:") {
		t.Fatalf("status after tier change: %+v", st.Plan)
	}
}

// TestTierPush: the concentrator's policy gives the session its tier by
// token, pushes it to the client (whose uploads then plan by it), and a
// reloaded policy that moves the token to another tier re-plans both.
func TestTierPush(t *testing.T) {
	pol, err := tier.Parse([]byte(`
[tiers.basic]
revenue_usd_per_gb = 2
min_goodput_mbps = 5
[tiers.gold]
revenue_usd_per_gb = 6
min_goodput_mbps = 60
[tokens]
"secret-token" = "basic"
`), "toml")
	if err != nil {
		t.Fatal(err)
	}
	links := []emu.Link{{RateBps: 30e6, Delay: 5 * time.Millisecond}, {RateBps: 50e6, Delay: 2 * time.Millisecond}}
	w := newWorld(t, options{links: links, prices: []float64{0.1, 4}, policy: pol,
		transport: transport.Config{Policy: "bestvalue"}})
	waitTier := func(name string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			cli := w.cli.Session().Terms().Tier
			srvTier := ""
			if ss := w.srv.Sessions(); len(ss) == 1 {
				srvTier = ss[0].Terms().Tier
			}
			if cli == name && srvTier == name {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("tiers: client %q, concentrator %q; want %q", cli, srvTier, name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitTier("basic")
	if got := w.cli.Session().Terms().SLA.MinGoodput; got != 5e6/8 {
		t.Fatalf("client's SLA goodput %v", got)
	}
	// Reload: the token is gold now; 60 Mbit/s needs both paths.
	pol2, err := tier.Parse([]byte(`
[tiers.gold]
revenue_usd_per_gb = 6
min_goodput_mbps = 60
[tokens]
"secret-token" = "gold"
`), "toml")
	if err != nil {
		t.Fatal(err)
	}
	w.srv.SetPolicy(pol2)
	waitTier("gold")
	deadline := time.Now().Add(3 * time.Second)
	for {
		pi, ok := w.cli.Session().Plan()
		if ok && pi.Plan.Uses(0) && pi.Plan.Uses(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client plan after gold: %s", pi.Plan.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echoCheck(conn, 4<<20, 29); err != nil {
		t.Fatal(err)
	}
}
