package e2e

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/internal/policyfile"
	"braid/internal/socks5"
	"braid/scheduler"
	"braid/transport"
	"braid/transport/wire"
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
	// and re-sends (more of them on a loaded machine, where acks come
	// late), not a share: a share would be a third or more.
	if carried[1] > (carried[0]+carried[2])/8 {
		t.Fatalf("dear path carried %v", carried)
	}
	st := w.cli.Status()
	if len(st.Plans) != 1 || st.Plans[0].Tier != "basic" || st.Plans[0].Shards["p1"] != 0 || st.Plans[0].Shards["p0"] == 0 {
		t.Fatalf("status plans: %+v", st.Plans)
	}
	// The status tells the story: scheduler, tier, what went up, and
	// the dear path idle by the plan's choice, once its last re-sends
	// are more than a second old.
	if st.Scheduler != "bestvalue" || st.Tier != "basic" || st.Totals == nil || st.Totals.BytesUp < 8<<20 || st.UptimeS <= 0 {
		t.Fatalf("status summary: %+v", st.Summary)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		st = w.cli.Status()
		if p := st.Paths[1]; p.Name == "p1" && p.Idle && strings.Contains(p.Why, "the plan leaves it idle") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dear path is not shown idle by the plan: %+v", st.Paths[1])
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A tier promised 80 Mbit/s needs the dear path too (the cheap ones
	// plan 27 Mbit/s each), and gets it at once.
	terms.Tier, terms.SLA.MinGoodput = "gold", 80e6/8
	sess.SetTerms(terms)
	deadline = time.Now().Add(3 * time.Second)
	for {
		pi, _ = sess.Plan()
		if pi.Plan.Uses(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-plan for the new tier: %s", pi.Plan.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := w.cli.Status(); len(st.Plans) != 1 || st.Plans[0].Tier != "gold" || !strings.Contains(st.Plans[0].Text, "p1:") {
		t.Fatalf("status after tier change: %+v", st.Plans)
	}
}

// TestTierPush: the concentrator's policy gives the session its tier by
// token, pushes it to the client (whose uploads then plan by it), and a
// reloaded policy that moves the token to another tier re-plans both.
func TestTierPush(t *testing.T) {
	pol, err := policyfile.Parse([]byte(`
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
		transport: transport.Config{Policy: "bestvalue", Device: wire.Device{MTU: 1280, CPU: uint8(scheduler.CPULow)}}})
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
	// The client's device profile reached the concentrator's planner:
	// a low-end CPU gets shards of 8 KiB or more.
	want := scheduler.Profile{MTU: 1280, CPU: scheduler.CPULow}
	if got := w.srv.Sessions()[0].Terms().Profile; got != want {
		t.Fatalf("concentrator's device profile %+v, want %+v", got, want)
	}
	if pi, ok := w.srv.Sessions()[0].Plan(); ok && pi.Plan.K > 0 && pi.Plan.ShardSize < 8<<10 {
		t.Fatalf("low CPU got shards of %d bytes: %s", pi.Plan.ShardSize, pi.Plan.String())
	}
	// Reload: the token is gold now; 60 Mbit/s needs both paths.
	pol2, err := policyfile.Parse([]byte(`
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

// TestClasses: a tier with an interactive class (by SOCKS username) gets
// a plan of its own that keeps off the 600 ms satellite path, while the
// default class rides it; the class reaches the concentrator in the OPEN.
func TestClasses(t *testing.T) {
	pol, err := policyfile.Parse([]byte(`
[tiers.basic]
revenue_usd_per_gb = 2
min_goodput_mbps = 20
[[tiers.basic.classes]]
name = "interactive"
users = ["voip"]
min_goodput_mbps = 1
p99_latency_ms = 150
[tokens]
"secret-token" = "basic"
`), "toml")
	if err != nil {
		t.Fatal(err)
	}
	links := []emu.Link{
		{RateBps: 15e6, Delay: 5 * time.Millisecond},   // fiber, own, cheap
		{RateBps: 50e6, Delay: 20 * time.Millisecond},  // cellular, dear
		{RateBps: 30e6, Delay: 300 * time.Millisecond}, // satellite
	}
	w := newWorld(t, options{links: links, prices: []float64{0.1, 4, 1}, policy: pol,
		transport: transport.Config{Policy: "bestvalue"}})
	sess := w.cli.Session()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps := sess.Plans()
		if len(ps) == 2 && ps[0].Plan.K > 0 && ps[1].Plan.K > 0 && ps[0].Plan.Uses(2) {
			if ps[1].Class != "interactive" || ps[1].Plan.Uses(2) || !ps[1].Plan.Feasible {
				t.Fatalf("interactive plan: %s", ps[1].Plan.String())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plans: %+v", ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := w.dialSOCKSAs(t, w.dest.addr(), &socks5.Credentials{User: "voip", Pass: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echoCheck(conn, 256<<10, 31); err != nil {
		t.Fatal(err)
	}
	// The concentrator planned the flow's replies by its class too.
	ss := w.srv.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	if got := ss[0].Classify(0, "voip"); got != 1 {
		t.Fatalf("concentrator classifies voip as %d", got)
	}
	if n := ss[0].FlowsByClass()[1]; n != 1 {
		t.Fatalf("concentrator has %d interactive flows, want 1", n)
	}
}

// TestCompression: under bestvalue on dear paths, a flow of text is
// compressed (both ways: the client's uploads, the concentrator's echo)
// and arrives intact; a flow of random bytes is sampled and left alone.
func TestCompression(t *testing.T) {
	links := []emu.Link{{RateBps: 50e6, Delay: 2 * time.Millisecond}, {RateBps: 50e6, Delay: 4 * time.Millisecond}}
	terms := transport.Terms{Tier: "t", RevenueGB: 8, SLA: scheduler.SLA{MinGoodput: 5e6 / 8}}
	w := newWorld(t, options{links: links, prices: []float64{3, 4},
		transport: transport.Config{Policy: "bestvalue", Terms: terms}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pi, ok := w.cli.Session().Plan(); ok && pi.Plan.Compress {
			break
		}
		if time.Now().After(deadline) {
			pi, _ := w.cli.Session().Plan()
			t.Fatalf("no plan with compression: %s", pi.Plan.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Text: lines drawn from a small vocabulary, as logs and JSON are.
	var text []byte
	words := []string{"braid", "path", "shard", "block", "fiber", "cellular", "latency", "goodput", "{\"k\":", "\"m\":", "},"}
	rng := uint64(7)
	for len(text) < 8<<20 {
		rng = rng*6364136223846793005 + 1442695040888963407
		text = append(text, words[rng>>60%uint64(len(words))]...)
		text = append(text, ' ')
	}
	conn, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(text)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, text) {
		t.Fatalf("echo of %d bytes came back as %d bytes, different", len(text), len(got))
	}
	cst, sst := w.cli.Session().Stats(), w.srv.Sessions()[0].Stats()
	if cst.BlocksCompressed.Load() == 0 || sst.BlocksCompressed.Load() == 0 {
		t.Fatalf("compressed blocks: client %d, concentrator %d", cst.BlocksCompressed.Load(), sst.BlocksCompressed.Load())
	}
	if saved := cst.BytesSaved.Load(); saved < uint64(len(text))/4 {
		t.Fatalf("client saved only %d of %d bytes", saved, len(text))
	}
	t.Logf("client saved %d of %d bytes in %d blocks", cst.BytesSaved.Load(), len(text), cst.BlocksCompressed.Load())

	// Random bytes do not shrink: one sample, then plain blocks.
	before := cst.BlocksCompressed.Load()
	conn2, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if err := echoCheck(conn2, 4<<20, 37); err != nil {
		t.Fatal(err)
	}
	if n := cst.BlocksCompressed.Load() - before; n != 0 {
		t.Fatalf("%d blocks of random bytes sent compressed", n)
	}
}
