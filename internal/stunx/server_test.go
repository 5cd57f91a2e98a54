package stunx

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// startServer runs s on a fakeConn until the test ends.
func startServer(t *testing.T, s *Server) *fakeConn {
	t.Helper()
	fc := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, fc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v after cancel, want nil", err)
		}
	})
	return fc
}

func TestServeAnswers(t *testing.T) {
	s := &Server{}
	fc := startServer(t, s)
	for i, from := range []string{"192.0.2.10:4000", "[2001:db8::7]:5000", "[::ffff:198.51.100.1]:6000"} {
		id := newID(t, byte(10*i))
		req := bindingRequest(id)
		fc.send(req, udpAddr(from))
		p := <-fc.out
		if p.addr.String() != udpAddr(from).String() {
			t.Fatalf("answer went to %v, want %s", p.addr, from)
		}
		m, err := decodeMsg(p.data)
		if err != nil || m.Type != stun.BindingSuccess || m.TransactionID != id || !hasFingerprint(m) {
			t.Fatalf("answer %x: %v %v", p.data, m, err)
		}
		mapped, ok := mappedOf(m)
		if want := addrPortOf(udpAddr(from)); !ok || mapped != want {
			t.Fatalf("mapped = %v, want %v", mapped, want)
		}
		// pion's own decoder reads the same address.
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(m); err != nil || xa.String() != mapped.String() {
			t.Fatalf("pion reads XOR-MAPPED-ADDRESS %v, %v; want %v", xa, err, mapped)
		}
		var sw stun.Software
		if err := sw.GetFrom(m); err != nil || sw.String() != Software {
			t.Fatalf("SOFTWARE = %q, %v", sw, err)
		}
		if len(p.data) > len(req)+MaxResponseGrowth {
			t.Fatalf("response %d bytes for a %d-byte request", len(p.data), len(req))
		}
	}
	// A bare request (no FINGERPRINT) gets an answer without one.
	id := newID(t, 99)
	bare := build(stun.NewTransactionIDSetter(id), stun.BindingRequest)
	fc.send(bare, udpAddr("[2001:db8::8]:1"))
	p := <-fc.out
	m, err := decodeMsg(p.data)
	if err != nil || hasFingerprint(m) || len(p.data) != len(bare)+MaxResponseGrowth {
		t.Fatalf("bare answer %x, err %v", p.data, err)
	}
	eventually(t, "counters", func() bool { return s.Stats.Answered.Load() == 4 })
	if s.Stats.Requests.Load() != 4 || s.Stats.Dropped.Load() != 0 {
		t.Fatalf("stats: requests %d dropped %d", s.Stats.Requests.Load(), s.Stats.Dropped.Load())
	}
}

// malformedInputs returns packets the server must drop, and how many of
// them are malformed (as opposed to well-formed but not answerable).
func malformedInputs(t testing.TB) (map[string][]byte, int) {
	id := newID(t, 40)
	setID := stun.NewTransactionIDSetter(id)
	req := bindingRequest(id)
	badLen := bytes.Clone(req)
	binary.BigEndian.PutUint16(badLen[2:], 400)
	badFP := bytes.Clone(req)
	badFP[len(badFP)-1] ^= 1
	huge := append(build(setID, stun.BindingRequest), make([]byte, 65000)...)
	binary.BigEndian.PutUint16(huge[2:], 65000)
	hugeAttr := stun.MustBuild(setID, stun.BindingRequest)
	hugeAttr.Add(stun.AttrSoftware, make([]byte, 2000)) // beyond SOFTWARE's limit: pion's setter refuses it
	garbage := []byte("\x00\x01 this is not STUN, just bytes that look a bit like it")
	malformed := map[string][]byte{
		"garbage":          garbage,
		"text":             []byte("GET / HTTP/1.1\r\n\r\n"),
		"truncated header": req[:11],
		"bad length":       badLen,
		"bad fingerprint":  badFP,
		"huge":             huge,
		"huge attribute":   hugeAttr.Raw,
		"single byte":      {0},
	}
	n := len(malformed)
	malformed["binding response"] = successResponse(id, netip.MustParseAddrPort("192.0.2.1:1"))
	malformed["binding indication"] = build(setID, bindingIndication, stun.Fingerprint)
	malformed["ICE check (PRIORITY, USERNAME)"] = rfc5769Request
	return malformed, n
}

func TestServeDropsMalformed(t *testing.T) {
	s := &Server{}
	fc := startServer(t, s)
	inputs, nMalformed := malformedInputs(t)
	from := udpAddr("192.0.2.20:3478")
	for _, b := range inputs {
		fc.send(b, from)
	}
	// A valid request from port 0 cannot be answered either.
	id := newID(t, 50)
	fc.send(bindingRequest(id), udpAddr("192.0.2.20:0"))
	fc.send(bindingRequest(id), nil)
	// The last, valid request is answered: everything before was handled.
	id = newID(t, 60)
	fc.send(bindingRequest(id), from)
	p := <-fc.out
	if m, err := decodeMsg(p.data); err != nil || m.TransactionID != id {
		t.Fatalf("first answer is not to the valid request: %x", p.data)
	}
	eventually(t, "answer counted", func() bool { return s.Stats.Answered.Load() == 1 })
	select {
	case p := <-fc.out:
		t.Fatalf("unexpected answer %x", p.data)
	default:
	}
	total := uint64(len(inputs) + 3)
	if got := s.Stats.Requests.Load(); got != total {
		t.Errorf("Requests = %d, want %d", got, total)
	}
	if got := s.Stats.Dropped.Load(); got != total-1 {
		t.Errorf("Dropped = %d, want %d", got, total-1)
	}
	if got := s.Stats.Malformed.Load(); got != uint64(nMalformed) {
		t.Errorf("Malformed = %d, want %d", got, nMalformed)
	}
}

func TestServeRateLimit(t *testing.T) {
	s := &Server{}
	fc := startServer(t, s)
	const n = 1000
	start := time.Now()
	for i := range n {
		var id txID
		binary.BigEndian.PutUint32(id[:], uint32(i))
		fc.send(bindingRequest(id), udpAddr(fmt.Sprintf("192.0.2.30:%d", 1000+i))) // ports vary
	}
	eventually(t, "all handled", func() bool {
		return s.Stats.Answered.Load()+s.Stats.Dropped.Load() == n
	})
	elapsed := time.Since(start)
	answered := s.Stats.Answered.Load()
	limit := uint64(DefaultBurst + DefaultRate*elapsed.Seconds() + 1)
	t.Logf("%d of %d answered in %v (limit %d)", answered, n, elapsed, limit)
	if answered == 0 || answered > limit {
		t.Fatalf("answered %d, want 1..%d", answered, limit)
	}
	if got := s.Stats.RateLimited.Load(); got != n-answered {
		t.Fatalf("RateLimited = %d, want %d", got, n-answered)
	}
	// Another source is not affected.
	id := newID(t, 1)
	for len(fc.out) > 0 {
		<-fc.out
	}
	fc.send(bindingRequest(id), udpAddr("192.0.2.31:1"))
	if p := <-fc.out; p.addr.String() != "192.0.2.31:1" {
		t.Fatalf("answer to %v", p.addr)
	}
}

func TestLimiter(t *testing.T) {
	s := &Server{Rate: 10, Burst: 5}
	t0 := time.Unix(1000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	allowed := func(addr netip.Addr, at time.Time, n int) int {
		k := 0
		for range n {
			if s.lim.allow(s, addr, at) {
				k++
			}
		}
		return k
	}
	if got := allowed(a, t0, 100); got != 5 {
		t.Fatalf("burst: %d allowed, want 5", got)
	}
	if got := allowed(a, t0.Add(100*time.Millisecond), 100); got != 1 {
		t.Fatalf("after 100ms: %d allowed, want 1", got)
	}
	if got := allowed(a, t0.Add(time.Hour), 100); got != 5 {
		t.Fatalf("after an hour: %d allowed, want 5 (burst cap)", got)
	}
	if got := allowed(a, t0, 1); got != 0 { // clock going backwards gives nothing
		t.Fatalf("back in time: %d allowed", got)
	}
	// One IPv6 /64 is one source; the next /64 is another.
	v6 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	k := allowed(v6("2001:db8:0:1::1"), t0, 3) + allowed(v6("2001:db8:0:1::2"), t0, 3) +
		allowed(v6("2001:db8:0:1:ffff::9%eth0"), t0, 3)
	if k != 5 {
		t.Fatalf("one /64: %d allowed, want 5", k)
	}
	if got := allowed(v6("2001:db8:0:2::1"), t0, 1); got != 1 {
		t.Fatal("next /64 limited")
	}
	// IPv4-mapped addresses count as the IPv4 address.
	if got := allowed(v6("::ffff:192.0.2.1"), t0.Add(time.Hour), 100); got != 0 {
		t.Fatalf("mapped form of an exhausted source: %d allowed", got)
	}
}

func TestLimiterTableBound(t *testing.T) {
	s := &Server{}
	t0 := time.Unix(1000, 0)
	for i := range maxTracked {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if !s.lim.allow(s, a, t0) {
			t.Fatalf("source %d refused", i)
		}
	}
	fresh := netip.MustParseAddr("192.0.2.99")
	if s.lim.allow(s, fresh, t0.Add(10*time.Millisecond)) {
		t.Fatal("new source accepted with a full table")
	}
	// Once the old sources' buckets have refilled they are forgotten.
	if !s.lim.allow(s, fresh, t0.Add(2*time.Second)) {
		t.Fatal("new source refused after the table drained")
	}
	if n := len(s.lim.buckets); n != 1 {
		t.Fatalf("%d sources tracked after sweep", n)
	}
}

func TestServeReturnsReadError(t *testing.T) {
	fc := newFakeConn()
	close(fc.closed)
	if err := Serve(context.Background(), fc, nil); err == nil {
		t.Fatal("Serve on a dead conn returned nil")
	}
}

// FuzzServeHandle feeds arbitrary packets to the server's per-packet
// handler: it must never panic, never modify its input, and answer only
// well-formed Binding requests, with a correct and small response.
func FuzzServeHandle(f *testing.F) {
	id := newID(f, 0)
	f.Add(bindingRequest(id))
	f.Add(build(stun.NewTransactionIDSetter(id), stun.BindingRequest))
	f.Add(rfc5769Request)
	f.Add(rfc5769ResponseV6)
	topBits := bindingRequest(id)
	topBits[0] |= 0xC0 // pion alone would read this as a Binding request
	f.Add(topBits)
	inputs, _ := malformedInputs(f)
	for _, b := range inputs {
		if len(b) < 4096 {
			f.Add(b)
		}
	}
	froms := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:3478"),
		netip.MustParseAddrPort("[2001:db8::1]:65535"),
		netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"),
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := new(codec) // reused by the calls below, as Serve reuses its own
		for _, from := range froms {
			s := &Server{}
			in := bytes.Clone(b)
			resp := s.handle(in, from, time.Unix(0, 0), c)
			if !bytes.Equal(in, b) {
				t.Fatal("handle modified its input")
			}
			if s.Stats.Requests.Load() != 1 {
				t.Fatal("packet not counted")
			}
			if resp == nil {
				if s.Stats.Dropped.Load() != 1 {
					t.Fatal("drop not counted")
				}
				continue
			}
			if s.Stats.Dropped.Load() != 0 {
				t.Fatal("answered packet counted as dropped")
			}
			// Independently of the decoder: the raw type is exactly
			// Binding request and the length field covers the packet.
			if len(b) < headerSize || binary.BigEndian.Uint16(b) != 0x0001 ||
				headerSize+int(binary.BigEndian.Uint16(b[2:])) != len(b) {
				t.Fatalf("answered %x", b)
			}
			req, err := decodeMsg(b)
			if err != nil || req.Type != stun.BindingRequest {
				t.Fatalf("answered a packet that is no Binding request: %v", err)
			}
			if len(resp) > len(b)+MaxResponseGrowth {
				t.Fatalf("%d-byte response to a %d-byte request", len(resp), len(b))
			}
			m, err := decodeMsg(resp)
			if err != nil || m.Type != stun.BindingSuccess || m.TransactionID != req.TransactionID ||
				hasFingerprint(m) != hasFingerprint(req) {
				t.Fatalf("bad response %x: %v", resp, err)
			}
			if mapped, ok := mappedOf(m); !ok || mapped != addrPortOf(net.UDPAddrFromAddrPort(from)) {
				t.Fatalf("mapped %v, want %v", mapped, from)
			}
		}
	})
}
