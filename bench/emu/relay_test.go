package emu

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// echoServer echoes every datagram back to its sender and remembers the
// distinct peers it has seen.
type echoServer struct {
	conn *net.UDPConn
	wg   sync.WaitGroup

	mu    sync.Mutex
	peers map[string]bool
}

func newEchoServer(t testing.TB) *echoServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{conn: conn, peers: map[string]bool{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			e.mu.Lock()
			e.peers[from.String()] = true
			e.mu.Unlock()
			_, _ = conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) addr() *net.UDPAddr { return e.conn.LocalAddr().(*net.UDPAddr) }

func (e *echoServer) numPeers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.peers)
}

func (e *echoServer) close() {
	e.conn.Close()
	e.wg.Wait()
}

func startRelay(t testing.TB, target *net.UDPAddr, up, down Link) *Relay {
	t.Helper()
	r, err := NewRelay("127.0.0.1:0", target, up, down, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t testing.TB, r *Relay) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ping sends one sequence-numbered datagram and waits for its echo. It
// returns the round-trip time, or ok=false when nothing came back within
// timeout. Stale echoes of earlier pings are skipped.
func ping(t testing.TB, c *net.UDPConn, seq uint64, timeout time.Duration) (rtt time.Duration, ok bool) {
	t.Helper()
	var msg [64]byte
	binary.BigEndian.PutUint64(msg[:], seq)
	start := time.Now()
	if _, err := c.Write(msg[:]); err != nil {
		t.Fatal(err)
	}
	deadline := start.Add(timeout)
	buf := make([]byte, 2048)
	for {
		_ = c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, false
			}
			continue // e.g. ECONNREFUSED from an earlier run; keep waiting
		}
		if n == len(msg) && binary.BigEndian.Uint64(buf) == seq {
			return time.Since(start), true
		}
	}
}

func TestRelayPassesPackets(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{}, Link{})
	c := dial(t, r)
	const n = 100
	for i := range uint64(n) {
		if _, ok := ping(t, c, i, 2*time.Second); !ok {
			t.Fatalf("ping %d lost on a perfect link", i)
		}
	}
	st := r.Stats()
	for name, d := range map[string]DirStats{"up": st.Up, "down": st.Down} {
		if d.PacketsIn != n || d.Delivered != n || d.BytesIn != 64*n || d.DeliveredBytes != 64*n {
			t.Errorf("%s stats %+v, want %d packets of 64 bytes in and delivered", name, d, n)
		}
	}
	if got := r.Clients(); got != 1 {
		t.Errorf("Clients() = %d, want 1", got)
	}
	e.close()
	r.Close()
}

func TestRelayDelay(t *testing.T) {
	defer goleak.VerifyNone(t)
	const delay = 20 * time.Millisecond
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{Delay: delay}, Link{Delay: delay})
	c := dial(t, r)
	var rtts []time.Duration
	for i := range uint64(15) {
		rtt, ok := ping(t, c, i, 2*time.Second)
		if !ok {
			t.Fatalf("ping %d lost", i)
		}
		// The relay stamps a packet after the client sent it, so no echo
		// can ever come back faster than the two delays.
		if rtt < 2*delay {
			t.Fatalf("rtt %v below 2×Delay %v", rtt, 2*delay)
		}
		rtts = append(rtts, rtt)
	}
	slices.Sort(rtts)
	if med := rtts[len(rtts)/2]; med >= 2*delay+50*time.Millisecond {
		t.Errorf("median rtt %v, want < %v", med, 2*delay+50*time.Millisecond)
	}
	e.close()
	r.Close()
}

func TestRelayBroken(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{}, Link{})
	c := dial(t, r)
	seq := uint64(0)
	next := func() uint64 { seq++; return seq }
	if _, ok := ping(t, c, next(), 2*time.Second); !ok {
		t.Fatal("ping lost before breaking")
	}

	r.SetBroken(true)
	if !r.Broken() {
		t.Fatal("Broken() = false after SetBroken(true)")
	}
	for range 5 {
		if _, ok := ping(t, c, next(), 100*time.Millisecond); ok {
			t.Fatal("ping passed a broken relay")
		}
	}
	if got := r.Stats().Up.DroppedBroken; got != 5 {
		t.Errorf("Up.DroppedBroken = %d, want 5", got)
	}

	r.SetBroken(false)
	if _, ok := ping(t, c, next(), 2*time.Second); !ok {
		t.Fatal("ping lost after repairing")
	}
	e.close()
	r.Close()
}

// A packet already inside the relay when the path breaks must not come out
// after the path is repaired.
func TestRelayBrokenFlushesQueue(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{Delay: 200 * time.Millisecond}, Link{})
	c := dial(t, r)
	if _, err := c.Write(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "packet to reach the relay", func() bool { return r.Stats().Up.PacketsIn == 1 })
	r.SetBroken(true)
	r.SetBroken(false)
	_ = c.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	if _, err := c.Read(make([]byte, 128)); err == nil {
		t.Fatal("queued packet survived SetBroken(true)")
	}
	st := r.Stats()
	if st.Up.DroppedBroken != 1 || st.Up.Delivered != 0 {
		t.Errorf("up stats %+v, want the queued packet dropped while broken", st.Up)
	}
	e.close()
	r.Close()
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRelaySetLinks(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{Loss: 1}, Link{})
	c := dial(t, r)
	if _, ok := ping(t, c, 1, 100*time.Millisecond); ok {
		t.Fatal("ping passed a link with Loss 1")
	}
	if got := r.Stats().Up.DroppedLoss; got != 1 {
		t.Errorf("Up.DroppedLoss = %d, want 1", got)
	}
	r.SetLinks(Link{}, Link{MTU: 10})
	if _, ok := ping(t, c, 2, 100*time.Millisecond); ok {
		t.Fatal("64-byte echo passed a down link with MTU 10")
	}
	if got := r.Stats().Down.DroppedMTU; got != 1 {
		t.Errorf("Down.DroppedMTU = %d, want 1", got)
	}
	r.SetLinks(Link{}, Link{})
	if up, down := r.Links(); up.Loss != 0 || down.MTU != 0 {
		t.Errorf("Links() = %+v, %+v after reset", up, down)
	}
	if _, ok := ping(t, c, 3, 2*time.Second); !ok {
		t.Fatal("ping lost after SetLinks restored a perfect link")
	}
	e.close()
	r.Close()
}

// Each client socket gets its own upstream socket, so the server sees
// distinct peers, and replies go back to the right client.
func TestRelayClientsAreSeparate(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{}, Link{})
	c1, c2 := dial(t, r), dial(t, r)
	for i := range uint64(10) {
		if _, ok := ping(t, c1, 100+i, 2*time.Second); !ok {
			t.Fatal("client 1 ping lost")
		}
		if _, ok := ping(t, c2, 200+i, 2*time.Second); !ok {
			t.Fatal("client 2 ping lost")
		}
	}
	if got := e.numPeers(); got != 2 {
		t.Errorf("server saw %d peers, want 2", got)
	}
	if got := r.Clients(); got != 2 {
		t.Errorf("Clients() = %d, want 2", got)
	}
	e.close()
	r.Close()
}

func TestRelayClientLimitAndExpiry(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r, err := newRelay("127.0.0.1:0", e.addr(), Link{}, Link{}, 1,
		relayConfig{idleTimeout: 100 * time.Millisecond, maxClients: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c1, c2 := dial(t, r), dial(t, r)
	if _, ok := ping(t, c1, 1, 2*time.Second); !ok {
		t.Fatal("first client ping lost")
	}
	if _, ok := ping(t, c2, 2, 100*time.Millisecond); ok {
		t.Fatal("second client passed a full client table")
	}
	if got := r.Stats().Up.DroppedOther; got != 1 {
		t.Errorf("Up.DroppedOther = %d, want 1", got)
	}
	waitFor(t, "idle mapping to expire", func() bool { return r.Clients() == 0 })
	if _, ok := ping(t, c2, 3, 2*time.Second); !ok {
		t.Fatal("second client ping lost after the first expired")
	}
	e.close()
	r.Close()
}

// Reordered packets go through the relay's heap; none may be lost and some
// must overtake others.
func TestRelayReorder(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{Delay: 10 * time.Millisecond, Reorder: 0.3}, Link{})
	c := dial(t, r)
	const n = 200
	for i := range uint64(n) {
		var msg [64]byte
		binary.BigEndian.PutUint64(msg[:], i)
		if _, err := c.Write(msg[:]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	seen := make(map[uint64]bool)
	inversions := 0
	var prev uint64
	buf := make([]byte, 128)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < n {
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("received %d of %d: %v", len(seen), n, err)
		}
		seq := binary.BigEndian.Uint64(buf[:m])
		if len(seen) > 0 && seq < prev {
			inversions++
		}
		seen[seq] = true
		prev = seq
	}
	if inversions == 0 {
		t.Error("Reorder 0.3 but packets arrived in order")
	}
	e.close()
	r.Close()
}

// With a rate limit, a burst takes its serialization time to pass.
func TestRelayRate(t *testing.T) {
	defer goleak.VerifyNone(t)
	const rate = 4e6
	const n, size = 200, 1000
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{RateBps: rate, QueueBytes: 1 << 20}, Link{})
	c := dial(t, r)
	start := time.Now()
	for range n {
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("received %d of %d: %v", i, n, err)
		}
	}
	elapsed := time.Since(start)
	want := time.Duration(n * size * 8 / rate * float64(time.Second)) // 400 ms
	if elapsed < want-15*time.Millisecond || elapsed > want+300*time.Millisecond {
		t.Errorf("burst took %v, want about %v", elapsed, want)
	}
	e.close()
	r.Close()
}

func TestRelayCloseIdempotent(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	r, err := NewRelay("127.0.0.1:0", e.addr(), Link{Delay: time.Second}, Link{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, r)
	// Leave packets queued inside so Close has something to discard.
	for range 10 {
		if _, err := c.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "packets to reach the relay", func() bool { return r.Stats().Up.PacketsIn == 10 })
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := r.Stats().Up.DroppedOther; got != 10 {
		t.Errorf("Up.DroppedOther = %d after Close, want the 10 queued packets", got)
	}
	e.close()
}

func TestNewRelayErrors(t *testing.T) {
	if _, err := NewRelay("127.0.0.1:0", nil, Link{}, Link{}, 1); err == nil {
		t.Error("nil target accepted")
	}
	if _, err := NewRelay("not an address", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, Link{}, Link{}, 1); err == nil {
		t.Error("bad listen address accepted")
	}
}

// The relay counts outages from its creation (or SetStart), in both
// directions, and reports the drops.
func TestRelayOutage(t *testing.T) {
	defer goleak.VerifyNone(t)
	e := newEchoServer(t)
	out := []Outage{{From: 0, To: 300 * time.Millisecond}}
	r := startRelay(t, e.addr(), Link{Outages: out}, Link{})
	c := dial(t, r)
	if _, ok := ping(t, c, 1, 100*time.Millisecond); ok {
		t.Fatal("ping passed during an outage")
	}
	if got := r.Stats().Up.DroppedOutage; got != 1 {
		t.Errorf("Up.DroppedOutage = %d, want 1", got)
	}
	// Restart the timeline: the outage is over.
	r.SetStart(time.Now().Add(-time.Second))
	if _, ok := ping(t, c, 2, 2*time.Second); !ok {
		t.Fatal("ping lost after the outage")
	}
	// New outages through SetLinks count from the same start.
	r.SetLinks(Link{}, Link{Outages: []Outage{{From: 0, To: time.Hour}}})
	if _, ok := ping(t, c, 3, 100*time.Millisecond); ok {
		t.Fatal("echo passed a down link in an outage")
	}
	if got := r.Stats().Down.DroppedOutage; got != 1 {
		t.Errorf("Down.DroppedOutage = %d, want 1", got)
	}
	e.close()
	r.Close()
}

// A Trace link through the relay paces a burst at its opportunities: one
// 1500-byte packet a ms.
func TestRelayTrace(t *testing.T) {
	defer goleak.VerifyNone(t)
	const n = 200
	tr := mustTrace(t, 1) // period 1 ms, one opportunity in each
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{Trace: tr, QueueBytes: 1 << 20}, Link{})
	c := dial(t, r)
	start := time.Now()
	for range n {
		if _, err := c.Write(make([]byte, TraceMTU)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("received %d of %d: %v", i, n, err)
		}
	}
	elapsed := time.Since(start)
	if want := n * time.Millisecond; elapsed < want-15*time.Millisecond || elapsed > want+300*time.Millisecond {
		t.Errorf("burst took %v, want about %v", elapsed, want)
	}
	if up, _ := r.Links(); up.Trace != tr {
		t.Error("Links() lost the trace")
	}
	e.close()
	r.Close()
}

// A Schedule row changes the relay's delay at its time.
func TestRelaySchedule(t *testing.T) {
	defer goleak.VerifyNone(t)
	sched := mustSchedule(t, "time_s,delay_ms\n0,300\n1000,0\n")
	e := newEchoServer(t)
	r := startRelay(t, e.addr(), Link{Schedule: sched}, Link{})
	c := dial(t, r)
	if rtt, ok := ping(t, c, 1, 2*time.Second); !ok || rtt < 300*time.Millisecond {
		t.Fatalf("ping ok=%v rtt %v, want the scheduled 300 ms delay", ok, rtt)
	}
	r.SetStart(time.Now().Add(-1000 * time.Second))
	if rtt, ok := ping(t, c, 2, 2*time.Second); !ok || rtt >= 300*time.Millisecond {
		t.Fatalf("ping ok=%v rtt %v after the row at 1000 s, want no delay", ok, rtt)
	}
	e.close()
	r.Close()
}

// BenchmarkRelayThroughput pushes 1200-byte datagrams one way through a
// relay to a counting sink, keeping a bounded window in flight so that the
// kernel socket buffers do not overflow, and reports the packet rate one
// emulated path sustains (pkts/s) for an unlimited link; for rate-limited
// links of 1 Gbit/s (at most 104k pkts/s of 1200 bytes) and 10 Gbit/s (more
// than the relay can do, so the machine's limit with the rate limiter in
// the path); and for a trace of 100 opportunities a ms (1.2 Gbit/s; 1200-byte
// packets share opportunities, so at most 125k pkts/s).
func BenchmarkRelayThroughput(b *testing.B) {
	lines := strings.Repeat("1\n", 100)
	tr, err := ParseMahimahi(strings.NewReader(lines), "100 per ms")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		link Link
	}{
		{"unlimited", Link{}},
		{"1Gbps", Link{RateBps: 1e9}},
		{"10Gbps", Link{RateBps: 10e9}},
		{"trace1.2Gbps", Link{Trace: tr}},
	} {
		b.Run(bc.name, func(b *testing.B) { relayThroughput(b, bc.link) })
	}
}

func relayThroughput(b *testing.B, link Link) {
	const size, window = 1200, 256
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = sink.SetReadBuffer(sockBuf)
	credits := make(chan struct{}, window)
	var received atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, err := sink.Read(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			received.Add(1)
			select {
			case <-credits:
			default: // late arrival of a packet already written off as lost
			}
		}
	}()
	r, err := NewRelay("127.0.0.1:0", sink.LocalAddr().(*net.UDPAddr), link, Link{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, r.Addr())
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetWriteBuffer(sockBuf)
	msg := make([]byte, size)
	stall := time.NewTimer(time.Hour)

	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		select {
		case credits <- struct{}{}:
		default:
			stall.Reset(100 * time.Millisecond)
			select {
			case credits <- struct{}{}:
				stall.Stop()
			case <-stall.C:
				// Window stuck: what is in flight was lost. Start over.
				for len(credits) > 0 {
					<-credits
				}
				credits <- struct{}{}
			}
		}
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	// Wait for the tail of the window to drain.
	deadline := time.Now().Add(time.Second)
	for received.Load() < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	got := received.Load()
	b.ReportMetric(float64(got)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(1-float64(got)/float64(b.N), "loss")
	c.Close()
	r.Close()
	sink.Close()
	wg.Wait()
}
