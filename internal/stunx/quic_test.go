package stunx

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/pki"
)

const testALPN = "braid-stunx-test"

func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newTransport returns a quic.Transport on a fresh loopback socket, closed
// when the test ends.
func newTransport(t *testing.T) (*quic.Transport, *net.UDPConn) {
	t.Helper()
	c := listenUDP(t)
	tr := &quic.Transport{Conn: c}
	t.Cleanup(func() { tr.Close() })
	return tr, c
}

// serveOn runs a Server on tr until the test ends.
func serveOn(t *testing.T, tr *quic.Transport) *Server {
	t.Helper()
	s := &Server{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, tr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// STUN and QUIC share both sockets: the probe sees the client socket's
// address, and a QUIC connection between the same transports works at the
// same time.
func TestQUICAndSTUNShareSockets(t *testing.T) {
	cert, pinStr, err := pki.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pin, err := pki.ParsePin(pinStr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	str, sconn := newTransport(t)
	ln, err := str.Listen(pki.ServerTLS(cert, testALPN), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := serveOn(t, str)
	var echoes sync.WaitGroup
	defer echoes.Wait()
	echoes.Go(func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		defer conn.CloseWithError(0, "")
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		io.Copy(s, s)
		s.Close()
		<-conn.Context().Done() // until the client closes
	})

	ctr, cconn := newTransport(t)
	want := cconn.LocalAddr().(*net.UDPAddr).AddrPort()
	prober := NewProber(ctr, sconn.LocalAddr())
	mapped, rtt, err := prober.Probe(ctx)
	if err != nil || mapped != want || rtt <= 0 {
		t.Fatalf("Probe = %v, %v, %v; want %v", mapped, rtt, err, want)
	}
	t.Logf("mapped %v rtt %v", mapped, rtt)

	conn, err := ctr.Dial(ctx, sconn.LocalAddr(), pki.ClientTLS(pin, testALPN), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	stream, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Probe continuously while the stream echoes.
	pctx, stopProbing := context.WithCancel(ctx)
	var probes sync.WaitGroup
	var nProbes int
	probes.Go(func() {
		for pctx.Err() == nil {
			m, _, err := prober.Probe(pctx)
			if pctx.Err() != nil {
				return
			}
			if err != nil || m != want {
				t.Errorf("probe during QUIC: %v %v", m, err)
				return
			}
			nProbes++
		}
	})
	data := make([]byte, 1<<20)
	rand.Read(data)
	go func() {
		stream.Write(data)
		stream.Close()
	}()
	got, err := io.ReadAll(stream)
	stopProbing()
	probes.Wait()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo: %d of %d bytes, %v", len(got), len(data), err)
	}
	if nProbes == 0 {
		t.Fatal("no probe completed during the transfer")
	}
	t.Logf("%d probes during a %d-byte echo", nProbes, len(data))
	if srv.Stats.Answered.Load() < uint64(nProbes)+1 || srv.Stats.Malformed.Load() != 0 {
		t.Fatalf("server: answered %d malformed %d", srv.Stats.Answered.Load(), srv.Stats.Malformed.Load())
	}
	conn.CloseWithError(0, "")
}

// Malformed packets over a real socket get no answer; the valid request
// sent after them does.
func TestQUICServerDropsMalformed(t *testing.T) {
	str, sconn := newTransport(t)
	cert, _, err := pki.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := str.Listen(pki.ServerTLS(cert, testALPN), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := serveOn(t, str)
	client := listenUDP(t)

	buf := make([]byte, 2048)
	// roundTrip sends a valid request until it is answered and fails the
	// test on any other answer.
	roundTrip := func(id txID) {
		t.Helper()
		for answered := false; !answered; {
			client.WriteTo(bindingRequest(id), sconn.LocalAddr())
			client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			for {
				n, _, err := client.ReadFrom(buf)
				if err != nil {
					break
				}
				m, err := decodeMsg(buf[:n])
				if err != nil || m.TransactionID != id {
					t.Fatalf("unexpected answer %x", buf[:n])
				}
				answered = true
			}
		}
	}
	roundTrip(newID(t, 70)) // the server is reading now

	inputs, _ := malformedInputs(t)
	nonQUIC := 0
	for _, b := range inputs {
		if _, err := client.WriteTo(b, sconn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if b[0]&0xC0 == 0 {
			nonQUIC++
		}
	}
	client.WriteTo([]byte("\x40 looks like a QUIC short header"), sconn.LocalAddr())
	before := srv.Stats.Answered.Load()
	roundTrip(newID(t, 80))
	eventually(t, "answer counted", func() bool { return srv.Stats.Answered.Load() > before })
	if s := &srv.Stats; s.Requests.Load() != s.Answered.Load()+s.Dropped.Load() || s.Dropped.Load() < uint64(nonQUIC-1) {
		// quic-go may not pass on a truncated huge datagram, hence -1.
		t.Fatalf("requests %d answered %d dropped %d (sent %d non-QUIC bad packets)",
			s.Requests.Load(), s.Answered.Load(), s.Dropped.Load(), nonQUIC)
	}
	t.Logf("requests %d answered %d dropped %d malformed %d", srv.Stats.Requests.Load(),
		srv.Stats.Answered.Load(), srv.Stats.Dropped.Load(), srv.Stats.Malformed.Load())
}

// udpRelay forwards datagrams from its front socket to target through an
// upstream socket that can be replaced, like a NAT rebinding, and sends
// the replies back to the last client.
type udpRelay struct {
	t      *testing.T
	front  *net.UDPConn
	target *net.UDPAddr
	wg     sync.WaitGroup

	mu     sync.Mutex
	up     *net.UDPConn
	client *net.UDPAddr
}

func newUDPRelay(t *testing.T, target net.Addr) *udpRelay {
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{t: t, front: front, target: target.(*net.UDPAddr)}
	r.rebind()
	r.wg.Go(r.forward)
	return r
}

// rebind switches to a new upstream socket and returns its address.
func (r *udpRelay) rebind() netip.AddrPort {
	up, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	old := r.up
	r.up = up
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	r.wg.Go(func() { r.backward(up) })
	return up.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (r *udpRelay) forward() {
	buf := make([]byte, 2048)
	for {
		n, from, err := r.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		up := r.up
		r.mu.Unlock()
		up.WriteToUDP(buf[:n], r.target)
	}
}

func (r *udpRelay) backward(up *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, _, err := up.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		client := r.client
		r.mu.Unlock()
		if client != nil {
			r.front.WriteToUDP(buf[:n], client)
		}
	}
}

func (r *udpRelay) close() {
	r.front.Close()
	r.mu.Lock()
	r.up.Close()
	r.mu.Unlock()
	r.wg.Wait()
}

func TestRunNoticesRebinding(t *testing.T) {
	str, sconn := newTransport(t)
	serveOn(t, str)
	relay := newUDPRelay(t, sconn.LocalAddr())
	defer relay.close()
	first := relay.up.LocalAddr().(*net.UDPAddr).AddrPort()

	ctr, _ := newTransport(t)
	prober := NewProber(ctr, relay.front.LocalAddr())
	prober.Timeout = 2 * time.Second
	type change struct{ old, new netip.AddrPort }
	changes := make(chan change, 100)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		prober.Run(ctx, 30*time.Millisecond,
			func(old, new netip.AddrPort) { changes <- change{old, new} },
			func(err error) { t.Logf("probe failed: %v", err) })
	}()
	defer func() {
		cancel()
		<-runDone
	}()
	next := func() change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no change reported")
		}
		panic("unreachable")
	}
	if c := next(); c.old.IsValid() || c.new != first {
		t.Fatalf("first report %v -> %v, want invalid -> %v", c.old, c.new, first)
	}
	second := relay.rebind()
	if c := next(); c.old != first || c.new != second {
		t.Fatalf("after rebinding %v -> %v, want %v -> %v", c.old, c.new, first, second)
	}
	third := relay.rebind()
	if c := next(); c.old != second || c.new != third {
		t.Fatalf("after rebinding again %v -> %v, want %v -> %v", c.old, c.new, second, third)
	}
}
