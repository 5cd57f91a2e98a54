package transport

import (
	"braid/bench/emu"
	"braid/transport/wire"
	"bufio"
	"context"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// generate is a concentrator flow handler that writes zeros until the flow
// fails.
func generate(f *Flow) {
	if err := f.Accept(); err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// hostileClient joins ts claiming the largest windows the wire can say,
// opens flows, reads every shard and grants ever more credit, but never
// acknowledges a block.
func hostileClient(t *testing.T, ts *testServer, flows int) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := dialerTo("hostile", ts.addr(), ts.pin).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	ctrl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write(wire.AppendMsg(nil, &wire.Msg{Type: wire.MsgJoin, Version: wire.Version, Token: "tok", Path: wire.PathInfo{Name: "h"},
		FlowWindow: 1<<32 - 1, SessionWindow: 1 << 62}))
	var ok wire.Msg
	ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := readMsg(ctrl, &ok); err != nil || ok.Type != wire.MsgJoinOK {
		t.Fatalf("join: %v %v", ok.Type, err)
	}
	ctrl.SetReadDeadline(time.Time{})
	go func() { // answer pings so the concentrator keeps the path up
		r := bufio.NewReader(ctrl)
		var m wire.Msg
		for {
			if err := readMsg(r, &m); err != nil {
				return
			}
			if m.Type == wire.MsgPing {
				ctrl.Write(wire.AppendMsg(nil, &wire.Msg{Type: wire.MsgPong, Seq: m.Seq, Time: m.Time}))
			}
		}
	}()
	go func() { // read and drop every shard
		for {
			st, err := qc.AcceptUniStream(context.Background())
			if err != nil {
				return
			}
			go io.Copy(io.Discard, st)
		}
	}()
	dest := []byte{0, 1, 127, 0, 0, 1, 0, 80} // class 0, then the address
	for i := range flows {
		sendShard(t, qc, wire.ShardHeader{Flags: wire.FlagOpen, K: 1, ShardLen: uint32(len(dest)), Flow: uint32(i + 1),
			BlockLen: uint32(len(dest))}, dest)
	}
	go func() { // grant credit without end
		for i := 0; qc.Context().Err() == nil; i++ {
			for f := range flows {
				ctrl.Write(wire.AppendMsg(nil, &wire.Msg{Type: wire.MsgCredit, Flow: uint32(f + 1), Value: 1 << 62}))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return qc
}

// A client that claims huge windows and never acknowledges makes the
// concentrator hold at most its own session window, and a shared budget
// bounds several such sessions together while a well-behaved client still
// gets its transfer through.
func TestHostileWindowsBounded(t *testing.T) {
	budget := NewBudget(24 << 20)
	cfg := Config{FlowWindow: 2 << 20, SessionWindow: 8 << 20, Budget: budget}
	ts := newTestServer(t, cfg, func(f *Flow) {
		if string(f.Dest()) == string([]byte{1, 127, 0, 0, 1, 0, 81}) {
			echo(f)
			return
		}
		generate(f)
	})
	good := dialClient(t, Config{}, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	echo4MiB := func(seed uint64) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f, err := good.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 81})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		transfer(t, f, 4<<20, seed)
		return time.Since(start)
	}
	alone := echo4MiB(5)
	for range 4 {
		hostileClient(t, ts, 8)
	}
	var peak Held
	var peakBudget int64
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range ts.list() {
			h := s.Held()
			peak.Send = max(peak.Send, h.Send)
			peak.Window = max(peak.Window, h.Window)
		}
		peakBudget = max(peakBudget, budget.Used())
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("peak per session: %d bytes sent unacknowledged; budget peak %d of %d", peak.Send, peakBudget, budget.Limit())
	// A session's block buffers: its window plus one block in progress
	// per flow (rounded up to the pool's size class).
	if bound := int64(cfg.SessionWindow) + 8*(128<<10); peak.Send > bound {
		t.Fatalf("a hostile session made the concentrator hold %d bytes, more than %d", peak.Send, bound)
	}
	if peak.Send < 1<<20 {
		t.Fatalf("the hostile sessions held only %d bytes: the test did not load them", peak.Send)
	}
	// Each session may exceed the shared budget only by its floor and
	// the initial windows of its flows.
	if bound := budget.Limit() + 4*(budgetFloor+8*256<<10); peakBudget > bound {
		t.Fatalf("shared budget peaked at %d, more than %d", peakBudget, bound)
	}
	beside := echo4MiB(3)
	t.Logf("a well-behaved client's 4 MiB echo: %v alone, %v beside them", alone.Round(time.Millisecond), beside.Round(time.Millisecond))
}

// Downloads that nobody reads keep their own windows: a new flow beside
// them gets its bytes at once. Some of the stalled flows first read fast
// (their windows grew), then stopped, as a relay does into a full socket.
func TestStalledFlowsDoNotBlockANewOne(t *testing.T) {
	cfg := Config{}
	ts := newTestServer(t, cfg, generate)
	c := dialClient(t, cfg, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dest := []byte{1, 127, 0, 0, 1, 0, 80}
	var wg sync.WaitGroup
	for i := range 8 {
		f, err := c.OpenFlow(ctx, dest)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Reset()
		if i%2 == 0 {
			wg.Add(1)
			go func() { // read 16 MiB fast, then never again
				defer wg.Done()
				io.CopyN(io.Discard, f, 16<<20)
			}()
		}
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // the stalled flows fill their windows
	held := c.Held()
	t.Logf("stalled flows hold %d bytes of windows", held.Window)
	f, err := c.OpenFlow(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	f.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	n, err := io.CopyN(io.Discard, f, 32<<20)
	if err != nil {
		t.Fatalf("a new flow beside stalled ones read %d bytes, then %v", n, err)
	}
	t.Logf("new flow: 32 MiB in %v", time.Since(start).Round(time.Millisecond))
	if g := c.Held().Window; g > int64(c.cfg.SessionWindow)+9*int64(c.cfg.InitialFlowWindow) {
		t.Fatalf("windows granted %d, more than the session window and the initial ones", g)
	}
}

// Uploads into destinations that never read leave room for another upload.
func TestStalledUploadsDoNotBlockANewOne(t *testing.T) {
	stall := []byte{1, 127, 0, 0, 1, 0, 82}
	release := make(chan struct{})
	ts := newTestServer(t, Config{}, func(f *Flow) {
		if string(f.Dest()) == string(stall) {
			f.Accept()
			<-release // never read until the test ends
			f.Reset()
			return
		}
		echo(f)
	})
	defer close(release)
	c := dialClient(t, Config{}, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 7 {
		f, err := c.OpenFlow(ctx, stall)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Reset()
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := f.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	f.SetReadDeadline(time.Now().Add(20 * time.Second))
	transfer(t, f, 16<<20, 4)
}

// With the concentrator's defaults (32 MiB session window, a 192 MiB
// budget), eight hostile sessions of eight flows each (what one token may
// open) cost a bounded heap, released when they end.
func TestHostileSessionsMemory(t *testing.T) {
	budget := NewBudget(192 << 20)
	ts := newTestServer(t, Config{Budget: budget}, generate)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC() // buffer pools keep what they held for one more cycle
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	var conns []*quic.Conn
	for range 8 {
		conns = append(conns, hostileClient(t, ts, 8))
	}
	var peak uint64
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		peak = max(peak, heap())
	}
	t.Logf("heap in use: %d MiB before, %d MiB at most under 8 hostile sessions; budget %d MiB used of %d",
		before>>20, peak>>20, budget.Used()>>20, budget.Limit()>>20)
	if peak > 512<<20 {
		t.Fatalf("heap reached %d MiB", peak>>20)
	}
	if peak < before+64<<20 {
		t.Fatalf("heap grew only %d MiB: the hostile sessions did not load the concentrator", (peak-before)>>20)
	}
	for _, qc := range conns {
		qc.CloseWithError(0, "")
	}
	// The sessions end at their grace period; close them now.
	for _, s := range ts.list() {
		s.Close()
	}
	if u := budget.Used(); u != 0 {
		t.Fatalf("budget holds %d bytes after every session ended", u)
	}
	after := heap()
	t.Logf("heap in use after the sessions ended: %d MiB", after>>20)
	if after > before+32<<20 {
		t.Fatalf("heap %d MiB after the sessions ended, %d MiB before", after>>20, before>>20)
	}
}

// A client that opens many flows into a destination that never reads and
// fills each one's initial window makes the concentrator hold about its
// session window, not a window per flow.
func TestManyStalledUploadsBounded(t *testing.T) {
	const flows = 64
	cfg := Config{SessionWindow: 4 << 20}
	release := make(chan struct{})
	defer close(release)
	ts := newTestServer(t, cfg, func(f *Flow) {
		f.Accept()
		<-release // never reads
		f.Reset()
	})
	c := dialClient(t, cfg, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range flows {
		f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Reset()
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := f.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	var peak int64
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, s := range ts.list() {
			peak = max(peak, s.Buffered())
		}
	}
	perFlow := int64(256 << 10) // the initial window each flow may fill
	t.Logf("%d stalled uploads: the concentrator held %d bytes unread at most (session window %d; %d without the bound)",
		flows, peak, cfg.SessionWindow, flows*perFlow)
	if bound := int64(cfg.SessionWindow) + flows*2*int64(64<<10); peak > bound {
		t.Fatalf("held %d bytes unread, more than %d", peak, bound)
	}
	if peak < int64(cfg.SessionWindow) {
		t.Fatalf("held only %d bytes: the uploads did not load the concentrator", peak)
	}
}

// TestOpeningGrant: a flow the client opens is granted its fair share of
// the session window (up to FlowWindow) as soon as the concentrator has
// answered, not the initial window: over a long path a download would
// otherwise wait for the window to double a round trip at a time. The
// concentrator still grants what the client opens only the initial
// window.
func TestOpeningGrant(t *testing.T) {
	ts := newTestServer(t, Config{}, generate)
	pds, _ := relayPaths(t, ts, emu.Link{RateBps: 100e6, Delay: 50 * time.Millisecond})
	c := dialClient(t, Config{}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Reset()
	var cfg Config
	cfg.Fill()
	f.mu.Lock()
	granted := f.rxLimit
	f.mu.Unlock()
	if granted != uint64(cfg.FlowWindow) {
		t.Fatalf("client granted %d at open, want the flow window %d", granted, cfg.FlowWindow)
	}
	// The concentrator learns it: its sending limit passes the initial
	// window before the client has read a byte.
	if !eventually(5*time.Second, func() bool {
		for _, s := range ts.list() {
			for _, sf := range s.flows.all() {
				sf.mu.Lock()
				lim := sf.txLimit
				sf.mu.Unlock()
				if lim == uint64(cfg.FlowWindow) {
					return true
				}
			}
		}
		return false
	}) {
		t.Fatal("the concentrator's flow never got the opening grant")
	}
	// And the concentrator grants the client's side only the initial
	// window.
	s := ts.list()[0]
	for _, sf := range s.flows.all() {
		sf.mu.Lock()
		lim := sf.rxLimit
		sf.mu.Unlock()
		if lim > uint64(cfg.InitialFlowWindow) {
			t.Fatalf("concentrator granted %d to a flow the client opened, want at most %d", lim, cfg.InitialFlowWindow)
		}
	}
}
