package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/pki"
	"braid/internal/policyfile"
	"braid/transport"
	"braid/transport/wire"
)

// fakeInitial returns what looks like a QUIC v1 Initial from a new client:
// a long header, a random destination connection ID of 8 to 20 bytes, a
// random source connection ID, and a random payload padded to 1200
// bytes. quic-go cannot decrypt it, but only after it has taken it for a
// new connection.
func fakeInitial(b []byte) []byte {
	var r [3]byte
	rand.Read(r[:])
	dcid, scid := 8+int(r[1])%13, int(r[2])%21
	b = append(b[:0], 0xc0|r[0]&3, 0, 0, 0, 1, byte(dcid))
	b = append(b, make([]byte, dcid)...)
	b = append(b, byte(scid))
	b = append(b, make([]byte, scid)...)
	b = append(b, 0) // no token
	rest := 1200 - len(b) - 2
	b = append(b, 0x40|byte(rest>>8), byte(rest)) // two-byte varint length
	b = b[:1200]
	rand.Read(b[6 : 6+dcid])
	rand.Read(b[7+dcid : 7+dcid+scid])
	rand.Read(b[len(b)-rest:])
	return b
}

// flood sends n fake Initials to addr at rate per second from loopback
// sockets, each used for 16 packets and replaced, as a flood from fresh
// source ports would.
func flood(t *testing.T, addr *net.UDPAddr, n, rate int) {
	t.Helper()
	var c *net.UDPConn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	buf := make([]byte, 1200)
	start := time.Now()
	for i := range n {
		if i%16 == 0 {
			if c != nil {
				c.Close()
			}
			var err error
			if c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
				t.Error(err)
				return
			}
		}
		if _, err := c.WriteToUDP(fakeInitial(buf), addr); err != nil {
			t.Error(err)
			return
		}
		if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(start); ahead > time.Millisecond {
			time.Sleep(ahead)
		}
	}
}

// heapInuse is the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// eventually waits up to d for ok.
func eventually(d time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func startTestServer(t *testing.T, cfg Config) (*Server, [32]byte) {
	t.Helper()
	pin := [32]byte{}
	if len(cfg.Cert.Certificate) == 0 {
		cert, pinStr, err := pki.SelfSigned(nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Cert = cert
		pin, _ = pki.ParsePin(pinStr)
	} else {
		pin, _ = pki.ParsePin(pki.Pin(cfg.Cert.Leaf))
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, pin
}

// joinSession opens a braid session with token over one path.
func joinSession(ctx context.Context, addr string, pin [32]byte, token string) (*transport.Client, error) {
	pd := transport.PathDialer{Info: wire.PathInfo{Name: "a"}, Dial: func(ctx context.Context) (*quic.Conn, error) {
		return quic.DialAddr(ctx, addr, pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
	}}
	return transport.Dial(ctx, transport.Config{}, token, []transport.PathDialer{pd})
}

// TestHandshakeCount checks the bookkeeping of handshakes in progress: a
// connection counts from ConnContext until Accept or the end of its
// context, whichever comes first, once; past MaxHandshakes ConnContext
// refuses, and from RetryHandshakes on new clients are sent a Retry.
func TestHandshakeCount(t *testing.T) {
	s := &Server{cfg: Config{MaxHandshakes: 3, RetryHandshakes: 2}, log: slog.New(slog.DiscardHandler)}
	info := &quic.ClientInfo{RemoteAddr: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}}
	var parents []context.CancelFunc
	var conns []context.Context
	for range 3 {
		if s.verifySourceAddress(info.RemoteAddr) != (s.handshaking() >= 2) {
			t.Fatalf("Retry asked at %d in progress", s.handshaking())
		}
		parent, cancel := context.WithCancel(context.Background())
		ctx, err := s.connContext(parent, info)
		if err != nil {
			t.Fatalf("handshake %d refused: %v", len(conns), err)
		}
		parents, conns = append(parents, cancel), append(conns, ctx)
	}
	if _, err := s.connContext(context.Background(), info); err == nil || s.handshaking() != 3 {
		t.Fatalf("fourth handshake: err %v, %d in progress; want refused, 3", err, s.handshaking())
	}
	if s.refusedHandshakes.Load() != 1 || s.retries.Load() != 1 {
		t.Errorf("refused %d, retries %d; want 1, 1", s.refusedHandshakes.Load(), s.retries.Load())
	}
	s.accepted(conns[0]) // Accept first, then the connection ends
	s.accepted(conns[0])
	parents[0]()
	parents[1]() // the handshake fails
	if !eventually(2*time.Second, func() bool { return s.handshaking() == 1 }) {
		t.Fatalf("%d in progress after one accepted and one failed, want 1", s.handshaking())
	}
	parents[2]() // the context ends first, then Accept
	if !eventually(2*time.Second, func() bool { return s.handshaking() == 0 }) {
		t.Fatalf("%d in progress, want 0", s.handshaking())
	}
	s.accepted(conns[2])
	s.accepted(context.Background()) // not one of ours: ignored
	time.Sleep(50 * time.Millisecond)
	if n := s.handshaking(); n != 0 {
		t.Fatalf("%d in progress after every handshake ended, want 0", n)
	}
	if s.verifySourceAddress(info.RemoteAddr) {
		t.Error("Retry asked with no handshake in progress")
	}
}

// TestInitialFlood floods a running concentrator with fake Initials from
// fresh loopback ports and checks that they cost it almost nothing: the
// handshakes in progress stay under the cap (Retry keeps them at
// RetryHandshakes), the heap does not grow with the packets, and a real
// client still joins meanwhile.
func TestInitialFlood(t *testing.T) {
	const (
		packets = 6000
		rate    = 2000 // per second: 3 s, HandshakeIdleTimeout's worth
		// Without Retry, every packet of the last 3 s holds a
		// connection's state, 6000 of them far more than this
		// (docs/BENCH.md). With it, 32 handshakes at a time do.
		maxGrowth = 24 << 20
	)
	srv, pin := startTestServer(t, Config{Tokens: []string{"good"}})
	before := heapInuse()

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), int64(srv.handshaking())))
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		flood(t, srv.Addr(), packets, rate)
	}()

	time.Sleep(time.Second) // the flood is in full swing
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := joinSession(ctx, srv.Addr().String(), pin, "good")
	if err != nil {
		t.Fatalf("a real client could not join during the flood: %v", err)
	}
	t.Logf("a real client joined in %v during the flood", time.Since(t0).Round(time.Millisecond))
	<-flooded
	during := heapInuse() // the state of the last 3 s of packets, if any, is still held
	close(stop)
	<-sampled
	c.Close()

	growth := int64(during) - int64(before)
	t.Logf("%d fake Initials: heap in use %d -> %d KiB; at most %d handshakes in progress; %d Retries asked, %d refused",
		packets, before>>10, during>>10, peak.Load(), srv.retries.Load(), srv.refusedHandshakes.Load())
	if p := peak.Load(); p > int64(srv.cfg.MaxHandshakes) {
		t.Errorf("%d handshakes in progress, above the cap of %d", p, srv.cfg.MaxHandshakes)
	}
	if growth > maxGrowth {
		t.Errorf("heap grew by %d MiB under the flood, want under %d MiB", growth>>20, maxGrowth>>20)
	}
	if srv.retries.Load() == 0 {
		t.Error("no Retry was asked for")
	}
	// Each fake handshake leaves the count once its idle timeout ends it.
	if !eventually(5*time.Second, func() bool { return srv.handshaking() == 0 }) {
		t.Errorf("%d handshakes still in progress after the flood", srv.handshaking())
	}
}

// TestHandshakeCap fills the handshakes in progress with fake Initials and
// checks that a real client, once past the Retry, is refused statelessly
// at the cap, and gets in when the fakes have timed out.
func TestHandshakeCap(t *testing.T) {
	srv, pin := startTestServer(t, Config{Tokens: []string{"good"}, MaxHandshakes: 4, RetryHandshakes: 4})
	flood(t, srv.Addr(), 4, 1000)
	if !eventually(2*time.Second, func() bool { return srv.handshaking() == 4 }) {
		t.Fatalf("%d handshakes in progress after 4 fake Initials, want 4", srv.handshaking())
	}
	flood(t, srv.Addr(), 100, 1000) // beyond the threshold: Retries, no state
	if n := srv.handshaking(); n != 4 {
		t.Fatalf("%d handshakes in progress, want 4", n)
	}
	dial := func() (*quic.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
	}
	_, err := dial()
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused || !te.Remote {
		t.Fatalf("dial at the cap: %v, want CONNECTION_REFUSED from the concentrator", err)
	}
	if srv.retries.Load() < 100 || srv.refusedHandshakes.Load() == 0 {
		t.Errorf("%d Retries, %d refused; want >= 100, >= 1", srv.retries.Load(), srv.refusedHandshakes.Load())
	}
	if !eventually(5*time.Second, func() bool { return srv.handshaking() == 0 }) {
		t.Fatalf("%d handshakes in progress after the fakes timed out", srv.handshaking())
	}
	qc, err := dial()
	if err != nil {
		t.Fatalf("dial below the cap: %v", err)
	}
	defer qc.CloseWithError(0, "")
	// Accepted, and still open: it no longer counts.
	if !eventually(2*time.Second, func() bool { return srv.handshaking() == 0 }) {
		t.Errorf("%d handshakes in progress with the accepted connection open, want 0", srv.handshaking())
	}
}

// TestSessionCaps checks the per-token cap, a tier's max_sessions over it,
// and the concentrator-wide cap, each refusal naming its cap.
func TestSessionCaps(t *testing.T) {
	policy, err := policyfile.Parse([]byte("[tiers.gold]\nmax_sessions = 3\n[tokens]\ng = 'gold'\n"), "toml")
	if err != nil {
		t.Fatal(err)
	}
	srv, pin := startTestServer(t, Config{Tokens: []string{"a", "b", "c"}, Policy: policy,
		MaxSessionsPerToken: 2, MaxSessions: 7,
		// A session whose client left ends when its grace has passed
		// with no path (the client's CLOSE does not always arrive).
		Transport: transport.Config{Grace: 300 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var open []*transport.Client
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	join := func(token, refusal string) {
		t.Helper()
		c, err := joinSession(ctx, srv.Addr().String(), pin, token)
		if refusal == "" {
			if err != nil {
				t.Fatalf("token %s, session %d: %v", token, len(open)+1, err)
			}
			open = append(open, c)
			return
		}
		if err == nil {
			c.Close()
			t.Fatalf("token %s: session accepted, want refused by %s", token, refusal)
		}
		var je *transport.JoinError
		if !errors.As(err, &je) || je.Code != wire.JoinErrLimit || !strings.Contains(je.Reason, refusal) {
			t.Fatalf("token %s: %v, want a limit refusal naming %s", token, err, refusal)
		}
	}
	join("a", "")
	join("a", "")
	join("b", "") // another token still gets in
	join("g", "")
	join("g", "")
	join("g", "") // its tier allows 3, over the default 2
	join("g", "tier gold max_sessions")
	join("c", "")
	join("b", "(max-sessions)") // 7 sessions: the concentrator is full

	open[0].Close() // one of a's: a may open another
	open = open[1:]
	if !eventually(5*time.Second, func() bool { return len(srv.Sessions()) == 6 }) {
		t.Fatalf("%d sessions after one closed, want 6", len(srv.Sessions()))
	}
	join("a", "")

	// Each refusal above counted once under its reason, every session
	// opened once, and a bad token under auth.
	if c, err := joinSession(ctx, srv.Addr().String(), pin, "wrong"); err == nil {
		c.Close()
		t.Fatal("a wrong token joined")
	}
	c := srv.Counters()
	want := map[string]uint64{RefusedAuth: 1, RefusedMaxSessions: 1, RefusedTokenSessions: 1, RefusedUnknownSession: 0, RefusedShutdown: 0}
	for r, n := range want {
		if c.JoinsRefused[r] != n {
			t.Errorf("joins refused for %s: %d, want %d (%v)", r, c.JoinsRefused[r], n, c.JoinsRefused)
		}
	}
	if c.SessionsOpened != 8 || c.UnreadableJoins != 0 || c.MaxSessions != 7 {
		t.Errorf("counters %+v, want 8 sessions opened, none unreadable, max 7", c)
	}
}

// TestStatelessReset kills a concentrator without a word to its client
// (as kill -9 would: the socket closes, no CONNECTION_CLOSE goes out),
// starts another on the same port with the same key, and checks that the
// client's connection ends at its next packet, by a stateless reset,
// rather than after the 15 s idle timeout.
func TestStatelessReset(t *testing.T) {
	cert, _, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	first, pin := startTestServer(t, Config{Cert: cert, Tokens: []string{"good"}})
	addr := first.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	// Let HANDSHAKE_DONE arrive: a client whose handshake is not yet
	// confirmed sends Handshake packets, which no reset answers.
	time.Sleep(300 * time.Millisecond)
	first.udp.Close() // nothing the concentrator sends from now on leaves
	first.Close()

	startTestServer(t, Config{Cert: cert, Tokens: []string{"good"}, Listen: addr})
	str, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	str.Write(bytes.Repeat([]byte{1}, 200)) // a packet for the new concentrator to answer
	select {
	case <-qc.Context().Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the client's connection still lives 3 s after the restart")
	}
	var sr *quic.StatelessResetError
	if err := context.Cause(qc.Context()); !errors.As(err, &sr) {
		t.Fatalf("connection ended by %v, want a stateless reset", err)
	}
	t.Logf("reset %v after the client's first packet", time.Since(t0).Round(time.Millisecond))
}

// TestDerivedKeys checks that the keys derived from the private key are
// stable for one key, differ between labels and keys, and are not the
// key's own bytes.
func TestDerivedKeys(t *testing.T) {
	certs := make([]tls.Certificate, 2)
	for i := range certs {
		var err error
		if certs[i], _, err = pki.SelfSigned(nil); err != nil {
			t.Fatal(err)
		}
	}
	key := func(c tls.Certificate, label string) [32]byte {
		k, err := deriveKey(c, label)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, a2 := key(certs[0], resetKeyLabel), key(certs[0], resetKeyLabel)
	b, c := key(certs[0], tokenKeyLabel), key(certs[1], resetKeyLabel)
	if a != a2 || a == b || a == c {
		t.Errorf("reset %x again %x, token %x, other key %x", a, a2, b, c)
	}
	der, err := x509.MarshalPKCS8PrivateKey(certs[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(der, a[:8]) || bytes.Contains(der, b[:8]) {
		t.Error("a derived key is part of the private key")
	}
}
