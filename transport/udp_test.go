package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/internal/tier"
	"braid/scheduler"
	"braid/transport/wire"
)

// onlySession is the concentrator's one session.
func (ts *testServer) onlySession(t *testing.T) *Session {
	t.Helper()
	var s *Session
	if !eventually(5*time.Second, func() bool {
		l := ts.list()
		if len(l) == 1 {
			s = l[0]
		}
		return s != nil
	}) {
		t.Fatal("no session at the concentrator")
	}
	return s
}

// echoAssocs answers every datagram of every association of s to where
// it was sent, from there.
func echoAssocs(ctx context.Context, s *Session) {
	for {
		a, err := s.AcceptAssociation(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				addr, p, err := a.Recv(ctx)
				if err != nil {
					return
				}
				a.Send(addr, p)
			}
		}()
	}
}

var udpDest = []byte{1, 192, 0, 2, 7, 0, 53} // 192.0.2.7:53

// udpServer is a concentrator that codes packets (version 4 carries UDP
// only where packets are coded: see connVersion), with an emulated link in
// front of it for each path.
func udpServer(t *testing.T, cfg Config, maxVersion uint8, links ...emu.Link) (*testServer, []PathDialer) {
	t.Helper()
	ts, _ := newCodedTestServer(t, cfg, maxVersion)
	pds, _ := codedRelayPaths(t, ts, links...)
	return ts, pds
}

// codedRelayPaths is relayPaths with coding dialers.
func codedRelayPaths(t *testing.T, ts *testServer, links ...emu.Link) ([]PathDialer, []*emu.Relay) {
	t.Helper()
	var pds []PathDialer
	var relays []*emu.Relay
	for i, l := range links {
		r, err := emu.NewRelay("127.0.0.1:0", ts.addr(), l, l, int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		relays = append(relays, r)
		pds = append(pds, codedDialerTo(string(rune('a'+i)), r.Addr(), ts.pin, nil))
	}
	return pds, relays
}

// Datagrams go out and come back over two paths, each whole, with the
// address they were sent to: coded (version 5) and alone on the fastest
// path (against a version-4 concentrator).
func TestAssociationEcho(t *testing.T) {
	for _, v := range []uint8{0, wire.UDPVersion} {
		t.Run(fmt.Sprint("version", v), func(t *testing.T) { testAssociationEcho(t, v) })
	}
}

func testAssociationEcho(t *testing.T, version uint8) {
	link := emu.Link{RateBps: 50e6, Delay: 5 * time.Millisecond}
	ts, pds := udpServer(t, Config{}, version, link, link)
	c := dialClient(t, Config{}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go echoAssocs(ctx, ts.onlySession(t))
	a, err := c.OpenAssociation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var before uint64
	for _, p := range c.Paths() {
		before += p.BytesSent.Load()
	}
	var payloadBytes uint64
	got := map[uint32]bool{}
	done := make(chan error, 1)
	go func() {
		for len(got) < n {
			addr, p, err := a.Recv(ctx)
			if err != nil {
				done <- err
				return
			}
			if !bytes.Equal(addr, udpDest) {
				done <- errors.New("answer from the wrong address")
				return
			}
			if len(p) < 4 || !bytes.Equal(p[4:], bytes.Repeat([]byte{p[0] ^ p[3]}, len(p)-4)) {
				done <- errors.New("answer corrupted")
				return
			}
			got[binary.BigEndian.Uint32(p)] = true
		}
		done <- nil
	}()
	for i := range n {
		p := make([]byte, 4+(i*37)%1100)
		binary.BigEndian.PutUint32(p, uint32(i))
		for j := 4; j < len(p); j++ {
			p[j] = p[0] ^ p[3]
		}
		if err := a.Send(udpDest, p); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		payloadBytes += uint64(len(p))
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		// Best effort: a loaded machine may drop a few; most must come.
		if len(got) < n*9/10 {
			t.Fatalf("%d of %d datagrams answered (sent %d, dropped %d)", len(got), n, a.Sent.Load(), a.Dropped.Load())
		}
	}
	if a.Sent.Load() != n {
		t.Fatalf("sent %d of %d", a.Sent.Load(), n)
	}
	// The paths count what they carried: their cost and rate include it.
	var after uint64
	for _, p := range c.Paths() {
		after += p.BytesSent.Load()
	}
	if after-before < payloadBytes {
		t.Fatalf("paths counted %d bytes sent for %d bytes of datagrams", after-before, payloadBytes)
	}
	// Too large for one QUIC datagram: an error, not a silent drop.
	if err := a.Send(udpDest, make([]byte, 4000)); !errors.Is(err, ErrDatagramTooLarge) {
		t.Fatalf("4000-byte datagram: %v", err)
	}
	if err := a.Send([]byte{9, 1}, []byte("x")); err == nil {
		t.Fatal("a malformed address was sent")
	}
	ds := c.DatagramStats()
	if coded := ds.Sent.Load() > 0; coded != (version == 0) {
		t.Fatalf("version %d: %d coded datagrams sent", version, ds.Sent.Load())
	}
}

// The concentrator's limit refuses an association past it; closing one on
// either end ends it on the other.
func TestAssociationLimitAndClose(t *testing.T) {
	ts, pds := udpServer(t, Config{MaxAssociations: 2}, 0, emu.Link{RateBps: 50e6, Delay: 2 * time.Millisecond})
	c := dialClient(t, Config{}, pds)
	ss := ts.onlySession(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a1, err := c.OpenAssociation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := c.OpenAssociation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.OpenAssociation(ctx)
	var re *AssocRefusedError
	if !errors.As(err, &re) || re.Code != udpCloseLimit {
		t.Fatalf("third association: %v, want refused for the limit", err)
	}
	if ss.stats.AssocsRefused.Load() != 1 {
		t.Fatalf("refused %d", ss.stats.AssocsRefused.Load())
	}
	s1, err := ss.AcceptAssociation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ss.AcceptAssociation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s1.id == s2.id {
		t.Fatal("one association accepted twice")
	}
	byID := map[uint32]*Association{s1.id: s1, s2.id: s2}
	a1.Close()
	select {
	case <-byID[a1.id].Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client's close did not reach the concentrator")
	}
	byID[a2.id].Close()
	select {
	case <-a2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the concentrator's close did not reach the client")
	}
	if err := a2.Send(udpDest, []byte("x")); !errors.Is(err, ErrAssociationClosed) {
		t.Fatalf("send on a closed association: %v", err)
	}
	// With both closed there is room again.
	if _, err := c.OpenAssociation(ctx); err != nil {
		t.Fatalf("after closing: %v", err)
	}
}

// A concentrator of version 3 carries no UDP: the client says so at once.
func TestAssociationOldConcentrator(t *testing.T) {
	ts, pds := udpServer(t, Config{}, 3, emu.Link{RateBps: 50e6, Delay: 2 * time.Millisecond})
	c := dialClient(t, Config{}, pds)
	if _, err := c.OpenAssociation(context.Background()); !errors.Is(err, ErrUDPUnsupported) {
		t.Fatalf("open against version 3: %v", err)
	}
	if ts.refusedVersion.Load() == 0 {
		t.Fatal("the version-3 concentrator refused nothing")
	}
}

// Garbage and datagrams of no association are dropped and counted; the
// session goes on.
func TestDatagramGarbage(t *testing.T) {
	ts, pds := udpServer(t, Config{}, 0, emu.Link{RateBps: 50e6, Delay: 2 * time.Millisecond})
	c := dialClient(t, Config{}, pds)
	ss := ts.onlySession(t)
	var qc *pconnHandle
	for _, p := range c.Paths() {
		p.mu.Lock()
		if len(p.conns) > 0 {
			qc = &pconnHandle{p.conns[0]}
		}
		p.mu.Unlock()
	}
	if qc == nil {
		t.Fatal("no connection")
	}
	for _, b := range [][]byte{{}, {0x01}, {0x07, 0, 0, 0, 1, 1, 1, 2, 3, 4, 0, 53}, {0x01, 0, 0, 0, 1, 9}} {
		if err := qc.c.qc.SendDatagram(b); err != nil && len(b) > 0 {
			t.Fatal(err)
		}
	}
	qc.c.qc.SendDatagram(append([]byte{0x01, 0, 0, 0, 99}, udpDest...))
	if !eventually(5*time.Second, func() bool {
		return ss.stats.DatagramsMalformed.Load() >= 3 && ss.stats.DatagramsUnknown.Load() == 1
	}) {
		t.Fatalf("malformed %d, unknown %d", ss.stats.DatagramsMalformed.Load(), ss.stats.DatagramsUnknown.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.OpenAssociation(ctx); err != nil {
		t.Fatalf("after garbage: %v", err)
	}
}

type pconnHandle struct{ c *pconn }

// stream sends n numbered datagrams of size bytes every interval through
// a (the concentrator echoes them) and returns how many distinct ones
// came back. kill, when set, runs once half of them are out.
func stream(t *testing.T, ctx context.Context, a *Association, n, size int, interval time.Duration, kill func()) int {
	t.Helper()
	var mu sync.Mutex
	got := map[uint32]bool{}
	go func() {
		for {
			_, p, err := a.Recv(ctx)
			if err != nil {
				return
			}
			if len(p) != size || !bytes.Equal(p[4:], bytes.Repeat([]byte{p[3]}, size-4)) {
				t.Errorf("datagram corrupted: % x", p[:min(len(p), 16)])
				return
			}
			mu.Lock()
			got[binary.BigEndian.Uint32(p)] = true
			mu.Unlock()
		}
	}()
	next := time.Now()
	for i := range n {
		if i == n/2 && kill != nil {
			kill()
		}
		p := bytes.Repeat([]byte{byte(i)}, size)
		binary.BigEndian.PutUint32(p, uint32(i))
		if err := a.SendClass(udpDest, p, 0); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
	time.Sleep(500 * time.Millisecond) // the last answers and repairs
	mu.Lock()
	defer mu.Unlock()
	return len(got)
}

// echoAssociation dials a client with terms over pds, has ts's session
// echo every datagram, and opens an association; the context ends with
// the test.
func echoAssociation(t *testing.T, ts *testServer, pds []PathDialer, terms Terms) (context.Context, *Client, *Session, *Association) {
	t.Helper()
	c := dialClient(t, Config{Terms: terms}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	srv := ts.onlySession(t)
	go echoAssocs(ctx, srv)
	a, err := c.OpenAssociation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, c, srv, a
}

// With 5% random loss on each of two paths both ways, coded datagrams
// (the SLA asks for 0.1% residual loss) lose far fewer than uncoded ones
// would (about 10% for an echo), and the parity is what saves them.
func TestCodedDatagramsLoss(t *testing.T) {
	link := emu.Link{RateBps: 50e6, Delay: 5 * time.Millisecond, Loss: 0.05}
	terms := Terms{SLA: scheduler.SLA{ResidualLoss: 0.001, Deadline: 300 * time.Millisecond}}
	ts, pds := udpServer(t, Config{Terms: terms}, 0, link, link)
	ctx, c, srv, a := echoAssociation(t, ts, pds, terms)
	const n = 1500
	got := stream(t, ctx, a, n, 200, 2*time.Millisecond, nil)
	cs, ss := c.DatagramStats(), srv.DatagramStats()
	t.Logf("%d of %d answered; client: sent %d parity %d repaired %d late %d; concentrator: repaired %d; plan %s",
		got, n, cs.Sent.Load(), cs.Parity.Load(), cs.Repaired.Load(), cs.Late.Load(), ss.Repaired.Load(), c.DatagramPlans()[0].String())
	if cs.Parity.Load() == 0 || ss.Parity.Load() == 0 {
		t.Fatalf("no parity sent (client %d, concentrator %d)", cs.Parity.Load(), ss.Parity.Load())
	}
	if cs.Repaired.Load()+ss.Repaired.Load() == 0 {
		t.Fatal("nothing repaired")
	}
	// Uncoded, an echo loses 1-(0.95)^2 of 10% here; at most 3% passes.
	if lost := n - got; lost > n*3/100 {
		t.Fatalf("%d of %d lost", lost, n)
	}
}

// A path dies in the middle of a stream planned to survive one path:
// each datagram has a copy on the other path, and none is lost.
func TestCodedDatagramsPathDeath(t *testing.T) {
	link := emu.Link{RateBps: 50e6, Delay: 5 * time.Millisecond}
	terms := Terms{SLA: scheduler.SLA{Survive: 1, Deadline: 300 * time.Millisecond}}
	ts, _ := newCodedTestServer(t, Config{Terms: terms}, 0)
	pds, relays := codedRelayPaths(t, ts, link, link)
	ctx, c, _, a := echoAssociation(t, ts, pds, terms)
	if !eventually(5*time.Second, func() bool { return len(c.Paths()) == 2 && c.Paths()[0].Up() && c.Paths()[1].Up() }) {
		t.Fatal("two paths did not come up")
	}
	const n = 600
	got := stream(t, ctx, a, n, 160, 5*time.Millisecond, func() { relays[0].SetBroken(true) })
	cs := c.DatagramStats()
	t.Logf("%d of %d answered; client: sent %d parity %d duplicate %d queue full %d; plan %s",
		got, n, cs.Sent.Load(), cs.Parity.Load(), cs.Duplicate.Load(), cs.QueueFull.Load(), c.DatagramPlans()[0].String())
	if got != n {
		t.Fatalf("%d of %d datagrams lost with a path left", n-got, n)
	}
	if cs.Duplicate.Load() == 0 {
		t.Fatal("no copy arrived: the datagrams were not copied")
	}
}

// 20 MB of datagrams each way (20000 of 1000 bytes, 8 Mbit/s, echoed)
// over two paths with 1% random loss each way, one of which dies in the
// middle, planned to survive a path: almost all arrive, and the counters
// on both ends add up to what the applications saw.
func TestDatagramStream20MB(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s of datagrams; -short skips it")
	}
	link := emu.Link{RateBps: 50e6, Delay: 5 * time.Millisecond, Loss: 0.01}
	terms := Terms{SLA: scheduler.SLA{Survive: 1, ResidualLoss: 0.001, Deadline: 300 * time.Millisecond}}
	ts, _ := newCodedTestServer(t, Config{Terms: terms}, 0)
	pds, relays := codedRelayPaths(t, ts, link, link)
	ctx, c, srv, a := echoAssociation(t, ts, pds, terms)
	if !eventually(5*time.Second, func() bool { return len(c.Paths()) == 2 && c.Paths()[0].Up() && c.Paths()[1].Up() }) {
		t.Fatal("two paths did not come up")
	}
	const n, size = 20000, 1000
	got := stream(t, ctx, a, n, size, time.Millisecond, func() { relays[0].SetBroken(true) })
	time.Sleep(500 * time.Millisecond)
	cs, ss := c.DatagramStats(), srv.DatagramStats()
	t.Logf("%d of %d answered; client: sent %d parity %d delivered %d repaired %d duplicate %d late %d queue full %d; "+
		"concentrator: delivered %d sent %d repaired %d duplicate %d queue full %d; plan %s",
		got, n, cs.Sent.Load(), cs.Parity.Load(), cs.Delivered.Load(), cs.Repaired.Load(), cs.Duplicate.Load(), cs.Late.Load(),
		cs.QueueFull.Load(), ss.Delivered.Load(), ss.Sent.Load(), ss.Repaired.Load(), ss.Duplicate.Load(), ss.QueueFull.Load(), c.DatagramPlans()[0].String())
	// A datagram whose connection's queue is full is dropped there and
	// counted (QueueFull), not sent.
	if sent := cs.Sent.Load(); sent > n || sent+cs.QueueFull.Load() < n {
		t.Errorf("client sent %d data datagrams and dropped %d at full queues, of %d", sent, cs.QueueFull.Load(), n)
	}
	// Each end hands each datagram up once, as it came or rebuilt; the
	// echo sends back at most what it was handed (its association's
	// queue may drop some, counted there).
	sHanded, cHanded := ss.Delivered.Load()+ss.Repaired.Load(), cs.Delivered.Load()+cs.Repaired.Load()
	if sHanded > n || ss.Sent.Load() > sHanded {
		t.Errorf("concentrator handed up %d of %d and sent back %d", sHanded, n, ss.Sent.Load())
	}
	if cHanded != uint64(got) {
		t.Errorf("client handed up %d datagrams, the application saw %d distinct", cHanded, got)
	}
	// A datagram its connection's queue had no room for is dropped there
	// and counted, as UDP may: on a starved machine (the race detector,
	// CI running packages side by side) queues fill. What no counter
	// explains stays under 0.5%.
	lost, full := n-got, int(cs.QueueFull.Load()+ss.QueueFull.Load())
	if lost-min(lost, full) > n/200 {
		t.Errorf("%d of %d datagrams lost, %d of them dropped at full queues: %d unexplained (more than 0.5%%)", lost, n, full, lost-min(lost, full))
	}
	if got < n*3/4 {
		t.Errorf("%d of %d answered", got, n)
	}
	if cs.Duplicate.Load() == 0 {
		t.Error("no copy arrived: the datagrams were not copied")
	}
}

// A client flooding an association that its concentrator does not read
// costs the concentrator at most its bounds: AssocQueue datagrams queued
// and dgHeldMax bytes kept for repair; the rest is dropped and counted.
func TestAssociationFloodBounded(t *testing.T) {
	link := emu.Link{RateBps: 200e6, Delay: time.Millisecond}
	terms := Terms{SLA: scheduler.SLA{ResidualLoss: 0.0001, Deadline: 300 * time.Millisecond}}
	ts, pds := udpServer(t, Config{Terms: terms}, 0, link, link)
	c := dialClient(t, Config{Terms: terms}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := ts.onlySession(t)
	accepted := make(chan *Association, 1)
	go func() {
		a, err := srv.AcceptAssociation(ctx)
		if err == nil {
			accepted <- a
		}
	}()
	a, err := c.OpenAssociation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sa := <-accepted // never read
	p := make([]byte, 1000)
	for i := range 20000 {
		binary.BigEndian.PutUint32(p, uint32(i))
		if err := a.SendClass(udpDest, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	if !eventually(5*time.Second, func() bool { return sa.Dropped.Load() > 0 }) {
		t.Fatalf("nothing dropped at the concentrator: received %d", sa.Received.Load())
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(sa.in); n > srv.cfg.AssocQueue {
		t.Fatalf("%d datagrams queued, bound %d", n, srv.cfg.AssocQueue)
	}
	srv.dgrx.mu.Lock()
	held := srv.dgrx.held
	srv.dgrx.mu.Unlock()
	if held > dgHeldMax || held < 0 {
		t.Fatalf("%d bytes held for repair, bound %d", held, dgHeldMax)
	}
	t.Logf("concentrator: received %d dropped %d, held %d bytes; client queue full %d", sa.Received.Load(), sa.Dropped.Load(), held, c.DatagramStats().QueueFull.Load())
}

// The tier's real-time terms reach a client of version 5; one of version
// 4 is sent the tier without them, in the form it reads.
func TestTierRealtimeByVersion(t *testing.T) {
	tr := &tier.Tier{Name: "rt", RevenueGB: 3, Classes: []tier.Class{{Name: "default"},
		{Name: "voice", Users: []string{"voip"}, SLA: scheduler.SLA{ResidualLoss: 0.001, Deadline: 150 * time.Millisecond}}}}
	for _, c := range []struct {
		version  uint8
		deadline time.Duration
	}{{0, 150 * time.Millisecond}, {wire.UDPVersion, 0}} {
		t.Run(fmt.Sprint("version", c.version), func(t *testing.T) {
			link := emu.Link{RateBps: 50e6, Delay: time.Millisecond}
			ts, pds := udpServer(t, Config{Tier: tr}, c.version, link)
			cl := dialClient(t, Config{}, pds)
			_ = ts
			if !eventually(5*time.Second, func() bool { return cl.tier.Load() != nil }) {
				t.Fatal("no tier reached the client")
			}
			got := cl.tier.Load().Classes[1].SLA
			if got.Deadline != c.deadline || got.ResidualLoss != 0.001 {
				t.Fatalf("client's voice class: %+v", got)
			}
		})
	}
}
