package stunx

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"go.uber.org/goleak"
)

type probeResult struct {
	mapped netip.AddrPort
	rtt    time.Duration
	err    error
}

func probeAsync(ctx context.Context, p *Prober) chan probeResult {
	ch := make(chan probeResult, 1)
	go func() {
		m, rtt, err := p.Probe(ctx)
		ch <- probeResult{m, rtt, err}
	}()
	return ch
}

// nextRequest returns the next request written to fc.
func nextRequest(t *testing.T, fc *fakeConn) (*stun.Message, packet) {
	t.Helper()
	select {
	case p := <-fc.out:
		m, err := decodeMsg(p.data)
		if err != nil || m.Type != stun.BindingRequest || !hasFingerprint(m) || len(p.data) != 28 {
			t.Fatalf("prober sent %x: %v", p.data, err)
		}
		return m, p
	case <-time.After(5 * time.Second):
		t.Fatal("no request sent")
	}
	panic("unreachable")
}

func demuxEmpty() bool {
	demux.mu.Lock()
	defer demux.mu.Unlock()
	return len(demux.conns) == 0
}

func TestProbeIgnoresStrays(t *testing.T) {
	defer goleak.VerifyNone(t)
	fc := newFakeConn()
	server := udpAddr("192.0.2.1:3478")
	p := NewProber(fc, server)
	p.RTO = time.Minute // no retransmission in this test
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := probeAsync(ctx, p)
	req, sent := nextRequest(t, fc)
	if sent.addr != server {
		t.Fatalf("request sent to %v", sent.addr)
	}
	want := netip.MustParseAddrPort("203.0.113.5:40000")
	decoy := netip.MustParseAddrPort("203.0.113.66:666")
	id := req.TransactionID
	wrongID := id
	wrongID[0] ^= 1
	noAddr := build(stun.NewTransactionIDSetter(id), stun.BindingSuccess, stun.NewSoftware("x"), stun.Fingerprint)
	fc.send(successResponse(wrongID, decoy), server)               // wrong transaction id
	fc.send(successResponse(id, decoy), udpAddr("192.0.2.1:3479")) // wrong port
	fc.send(noAddr, server)                                        // no mapped address
	fc.send([]byte("garbage"), server)                             // not STUN
	fc.send(bindingRequest(id), server)                            // a request, not a response
	// Another address of a multi-homed server, same port: accepted.
	fc.send(successResponse(id, want), udpAddr("192.0.2.2:3478"))
	r := <-res
	if r.err != nil || r.mapped != want || r.rtt <= 0 {
		t.Fatalf("Probe = %v, %v, %v; want %v", r.mapped, r.rtt, r.err, want)
	}
	if got := p.Stats.Ignored.Load(); got != 5 {
		t.Errorf("Ignored = %d, want 5", got)
	}
	if p.Stats.Sent.Load() != 1 || p.Stats.Received.Load() != 1 || p.Stats.LastRTT.Load() != int64(r.rtt) {
		t.Errorf("stats: sent %d received %d lastRTT %d", p.Stats.Sent.Load(), p.Stats.Received.Load(), p.Stats.LastRTT.Load())
	}
	if !demuxEmpty() {
		t.Error("reader left registered")
	}
}

func TestProbeRetransmits(t *testing.T) {
	defer goleak.VerifyNone(t)
	fc := newFakeConn()
	server := udpAddr("192.0.2.1:3478")
	p := NewProber(fc, server)
	p.RTO = 40 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	res := probeAsync(ctx, p)
	first, _ := nextRequest(t, fc)
	var at []time.Duration
	for range 3 {
		m, _ := nextRequest(t, fc)
		at = append(at, time.Since(start))
		if m.TransactionID != first.TransactionID {
			t.Fatal("retransmission with another transaction id")
		}
	}
	// Sent at 0, 40, 120, 280 ms: each gap doubles.
	if at[0] < 40*time.Millisecond || at[1] < 120*time.Millisecond || at[2] < 280*time.Millisecond {
		t.Fatalf("retransmissions at %v", at)
	}
	want := netip.MustParseAddrPort("203.0.113.5:1")
	fc.send(successResponse(first.TransactionID, want), server)
	fc.send(successResponse(first.TransactionID, want), server) // a duplicate is harmless
	r := <-res
	if r.err != nil || r.mapped != want {
		t.Fatalf("Probe = %v, %v", r.mapped, r.err)
	}
	if r.rtt < 280*time.Millisecond {
		t.Fatalf("rtt %v not measured from the first transmission", r.rtt)
	}
}

func TestProbeTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	fc := newFakeConn()
	p := NewProber(fc, udpAddr("192.0.2.1:3478"))
	p.RTO, p.MaxRTO = 20*time.Millisecond, 40*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err := p.Probe(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	// 0, 20, 60, then every 40 ms: about 8 in 300 ms.
	if n := p.Stats.Sent.Load(); n < 5 || n > 10 {
		t.Fatalf("%d requests sent", n)
	}
	if !demuxEmpty() {
		t.Error("reader left registered")
	}
}

func TestProbeErrorResponse(t *testing.T) {
	defer goleak.VerifyNone(t)
	fc := newFakeConn()
	server := udpAddr("[2001:db8::1]:3478")
	p := NewProber(fc, server)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := probeAsync(ctx, p)
	req, _ := nextRequest(t, fc)
	fc.send(build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError,
		stun.ErrorCodeAttribute{Code: stun.CodeUnknownAttribute, Reason: []byte("Unknown Attribute")}), server)
	r := <-res
	var re *ResponseError
	if !errors.As(r.err, &re) || re.Code != 420 || re.Reason != "Unknown Attribute" {
		t.Fatalf("err = %v", r.err)
	}
}

func TestProbeReadError(t *testing.T) {
	defer goleak.VerifyNone(t)
	fc := newFakeConn()
	p := NewProber(fc, udpAddr("192.0.2.1:3478"))
	p.RTO = time.Minute // the read error, not a failed retransmission, must end the probe
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := probeAsync(ctx, p)
	nextRequest(t, fc)
	close(fc.closed)
	select {
	case r := <-res:
		if !errors.Is(r.err, errFakeClosed) {
			t.Fatalf("err = %v", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Probe did not notice the read error")
	}
	// The next probe fails too (on send), and nothing is left behind.
	if _, _, err := p.Probe(ctx); err == nil {
		t.Fatal("probe on a closed conn succeeded")
	}
	if !demuxEmpty() {
		t.Error("reader left registered")
	}
}

func TestProbeBadServer(t *testing.T) {
	p := NewProber(newFakeConn(), nil)
	if _, _, err := p.Probe(context.Background()); err == nil {
		t.Fatal("probe without a server address succeeded")
	}
}

// Many concurrent probes by two Probers on one PacketConn: one reader, and
// each probe gets its own answer.
func TestProbersShareOneReader(t *testing.T) {
	defer goleak.VerifyNone(t)
	fc := newFakeConn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serverA, serverB := udpAddr("192.0.2.1:3478"), udpAddr("198.51.100.1:3478")
	mappedA, mappedB := netip.MustParseAddrPort("203.0.113.1:1"), netip.MustParseAddrPort("203.0.113.2:2")
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // answers each request from the server it went to, after a while
		defer close(done)
		for {
			select {
			case <-rctx.Done():
				return
			case p := <-fc.out:
				m, err := decodeMsg(p.data)
				if err != nil {
					t.Errorf("bad request %x: %v", p.data, err)
					continue
				}
				id, mapped := m.TransactionID, mappedA
				if p.addr == serverB {
					mapped = mappedB
				}
				time.AfterFunc(time.Millisecond, func() { fc.send(successResponse(id, mapped), p.addr) })
			}
		}
	}()
	pa, pb := NewProber(fc, serverA), NewProber(fc, serverB)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range 40 {
		p, want := pa, mappedA
		if i%2 == 1 {
			p, want = pb, mappedB
		}
		wg.Go(func() {
			for range 5 {
				m, _, err := p.Probe(ctx)
				if err != nil || m != want {
					failures.Add(1)
					t.Errorf("probe: %v %v, want %v", m, err, want)
				}
			}
		})
	}
	wg.Wait()
	stop()
	<-done
	time.Sleep(5 * time.Millisecond) // let pending AfterFuncs finish
	if n := fc.maxReaders.Load(); n != 1 {
		t.Errorf("%d concurrent readers", n)
	}
	if !demuxEmpty() {
		t.Error("reader left registered")
	}
}

func TestRunReportsChangesAndFailures(t *testing.T) {
	defer goleak.VerifyNone(t)
	fc := newFakeConn()
	p := NewProber(fc, udpAddr("192.0.2.1:3478"))
	p.Timeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var mu sync.Mutex
	current := netip.MustParseAddrPort("203.0.113.1:1000")
	silent := false
	rctx, stopResponder := context.WithCancel(ctx)
	defer stopResponder()
	go func() {
		for {
			select {
			case <-rctx.Done():
				return
			case pk := <-fc.out:
				m, err := decodeMsg(pk.data)
				if err != nil {
					t.Errorf("bad request %x: %v", pk.data, err)
					continue
				}
				mu.Lock()
				mapped, quiet := current, silent
				mu.Unlock()
				if !quiet {
					fc.send(successResponse(m.TransactionID, mapped), pk.addr)
				}
			}
		}
	}()
	set := func(a string, quiet bool) {
		mu.Lock()
		current, silent = netip.MustParseAddrPort(a), quiet
		mu.Unlock()
	}

	type change struct{ old, new netip.AddrPort }
	changes := make(chan change, 100)
	fails := make(chan error, 100)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		p.Run(ctx, 20*time.Millisecond,
			func(old, new netip.AddrPort) { changes <- change{old, new} },
			func(err error) { fails <- err })
	}()
	expect := func(old, new string) {
		t.Helper()
		select {
		case c := <-changes:
			if c.new != netip.MustParseAddrPort(new) || (old == "" && c.old.IsValid()) ||
				(old != "" && c.old != netip.MustParseAddrPort(old)) {
				t.Fatalf("change %v -> %v, want %q -> %s", c.old, c.new, old, new)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no change to %s reported", new)
		}
	}
	expect("", "203.0.113.1:1000")
	set("203.0.113.1:1000", true)
	select {
	case err := <-fails:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("failure: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported")
	}
	set("203.0.113.1:1000", false) // back, unchanged: no change reported
	time.Sleep(150 * time.Millisecond)
	set("203.0.113.9:2000", false)
	expect("203.0.113.1:1000", "203.0.113.9:2000")
	cancel()
	select {
	case <-runDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	stopResponder()
	if !demuxEmpty() {
		t.Error("reader left registered")
	}
}
