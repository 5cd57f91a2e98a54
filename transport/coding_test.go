package transport

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/bench/emu"
	"braid/internal/pki"
	"braid/transport/pktfec"
	"braid/transport/wire"
)

// Packet coding between sessions: both ends' sockets are pktfec.Conns,
// and a connection codes when it joined with codingVersion.

// newCodedTestServer is newTestServer on a pktfec-wrapped socket, with
// the coder in every connection's context as the concentrator does;
// maxVersion > 0 makes it refuse joins above that version (an older
// concentrator).
func newCodedTestServer(t *testing.T, cfg Config, maxVersion uint8) (*testServer, *pktfec.Conn) {
	t.Helper()
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := pki.ParsePin(pinStr)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fc := pktfec.New(udp, pktfec.Config{})
	tr := &quic.Transport{Conn: fc, ConnContext: func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
		return pktfec.NewContext(ctx, fc), nil
	}}
	ln, err := tr.Listen(pki.ServerTLS(cert, wire.ALPN), QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{ln: ln, cfg: cfg, token: "tok", handle: echo, sessions: map[[16]byte]*Session{}, pin: pin, maxVersion: maxVersion}
	ts.wg.Add(1)
	go ts.serve()
	t.Cleanup(func() {
		ts.close()
		tr.Close()
		fc.Close()
	})
	return ts, fc
}

// codedDialerTo is dialerTo on a pktfec-wrapped socket; the coders it
// made are sent on conns.
func codedDialerTo(name string, addr *net.UDPAddr, pin [32]byte, conns chan<- *pktfec.Conn) PathDialer {
	return PathDialer{
		Info: wire.PathInfo{Name: name},
		Dial: func(ctx context.Context) (*quic.Conn, error) {
			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return nil, err
			}
			fc := pktfec.New(udp, pktfec.Config{})
			tr := &quic.Transport{Conn: fc}
			qc, err := tr.Dial(pktfec.NewContext(ctx, fc), addr, pki.ClientTLS(pin, wire.ALPN), QUICConfig())
			if err != nil {
				tr.Close()
				fc.Close()
				return nil, err
			}
			select {
			case conns <- fc:
			default:
			}
			go func() {
				<-qc.Context().Done()
				tr.Close()
				fc.Close()
			}()
			return qc, nil
		},
	}
}

// oneConn returns the session's only connection.
func oneConn(t *testing.T, s *Session) *pconn {
	t.Helper()
	var cs []*pconn
	for _, p := range s.pathList() {
		p.mu.Lock()
		cs = append(cs, p.conns...)
		p.mu.Unlock()
	}
	if len(cs) != 1 {
		t.Fatalf("%d connections, want 1", len(cs))
	}
	return cs[0]
}

// TestPacketCodingLossy moves 4 MB each way over a path losing 3% of
// packets both ways, hash-checked, and checks that both ends coded: each
// sent parity, and each rebuilt packets the link lost.
func TestPacketCodingLossy(t *testing.T) {
	ts, sfc := newCodedTestServer(t, Config{}, 0)
	link := emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond, Loss: 0.03}
	r, err := emu.NewRelay("127.0.0.1:0", ts.addr(), link, link, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conns := make(chan *pktfec.Conn, 1)
	pd := codedDialerTo("a", r.Addr(), ts.pin, conns)
	pd.Conns = 1 // one connection, so its coder is the one sent
	c := dialClient(t, Config{}, []PathDialer{pd})
	cfc := <-conns
	f, err := c.OpenFlow(context.Background(), []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, f, 4<<20, 1)

	pc := oneConn(t, c.Session)
	if pc.coder != cfc {
		t.Fatal("client connection does not code")
	}
	cst, ok := cfc.PeerStats(pc.qc.RemoteAddr())
	if !ok {
		t.Fatal("client coder has no peer")
	}
	ss := ts.list()
	if len(ss) != 1 {
		t.Fatalf("%d server sessions", len(ss))
	}
	spc := oneConn(t, ss[0])
	if spc.coder != sfc {
		t.Fatal("server connection does not code")
	}
	sst, ok := sfc.PeerStats(spc.qc.RemoteAddr())
	if !ok {
		t.Fatal("server coder has no peer")
	}
	t.Logf("client: sent %d data %d parity, rebuilt %d of %d; server: sent %d data %d parity, rebuilt %d of %d",
		cst.DataSent, cst.ParitySent, cst.Repaired, cst.Expected, sst.DataSent, sst.ParitySent, sst.Repaired, sst.Expected)
	// A bulk transfer fills the path: while a queue stands the coder
	// yields (no parity: congestion's drops and the link's look alike),
	// so each end sends a little parity and rebuilds a few packets, at
	// times none on one end (CI: 24 parity packets, none rebuilt there).
	// Both send parity, and between them they rebuild.
	for _, st := range []pktfec.PeerStats{cst, sst} {
		if st.ParitySent == 0 || st.DataSent < 1000 {
			t.Errorf("coding did not work: %+v", st)
		}
	}
	if cst.Repaired+sst.Repaired == 0 {
		t.Errorf("nothing rebuilt: client %+v, server %+v", cst, sst)
	}
	if m, u := sfc.Stats().Malformed+cfc.Stats().Malformed, sfc.Stats().Unknown+cfc.Stats().Unknown; m != 0 {
		t.Errorf("malformed %d (unknown %d)", m, u)
	}
}

// TestPacketCodingVersions: a connection codes only when both ends can.
// A plain client and a coding concentrator, a coding client and a plain
// concentrator, and a coding client and a concentrator that refuses
// version 3 (it retries with MinVersion) all move data uncoded.
func TestPacketCodingVersions(t *testing.T) {
	check := func(t *testing.T, ts *testServer, pd PathDialer) {
		c := dialClient(t, Config{}, []PathDialer{pd})
		f, err := c.OpenFlow(context.Background(), []byte{1, 127, 0, 0, 1, 0, 80})
		if err != nil {
			t.Fatal(err)
		}
		transfer(t, f, 256<<10, 2)
		if pc := oneConn(t, c.Session); pc.coder != nil {
			t.Error("client codes")
		}
		for _, s := range ts.list() {
			if pc := oneConn(t, s); pc.coder != nil {
				t.Error("server codes")
			}
		}
	}
	t.Run("plain client", func(t *testing.T) {
		ts, _ := newCodedTestServer(t, Config{}, 0)
		check(t, ts, dialerTo("a", ts.addr(), ts.pin))
	})
	t.Run("plain server", func(t *testing.T) {
		ts := newTestServer(t, Config{}, nil)
		check(t, ts, codedDialerTo("a", ts.addr(), ts.pin, make(chan *pktfec.Conn, 1)))
	})
	t.Run("old server", func(t *testing.T) {
		ts, _ := newCodedTestServer(t, Config{}, wire.MinVersion)
		pd := codedDialerTo("a", ts.addr(), ts.pin, make(chan *pktfec.Conn, 1))
		check(t, ts, pd)
		if ts.refusedVersion.Load() == 0 {
			t.Error("the old server refused no join: the client did not ask for version 3")
		}
	})
}
