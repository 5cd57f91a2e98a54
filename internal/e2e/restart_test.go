package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"braid/bench/emu"
	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/server"
	"braid/transport"
	"braid/transport/wire"
)

// The client outlives its concentrator: it waits for one that is not up
// yet, rejoins one that restarts, and gives up only when refused.

// identity is a concentrator's certificate and the pin clients need: a
// restarted concentrator keeps its key.
type identity struct {
	cert tls.Certificate
	pin  [32]byte
}

func newIdentity(t *testing.T) identity {
	t.Helper()
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := pki.ParsePin(pinStr)
	if err != nil {
		t.Fatal(err)
	}
	return identity{cert, pin}
}

// startServerAt starts a concentrator on addr with id's certificate.
func startServerAt(t *testing.T, addr string, id identity, tcfg transport.Config) *server.Server {
	t.Helper()
	srv, err := server.Start(server.Config{Listen: addr, Cert: id.cert, Tokens: []string{"secret-token"},
		AllowPrivate: true, AllowOwn: true, Transport: tcfg, Logger: logger(t)}) // destinations are on loopback
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// freeUDP returns a loopback UDP address nothing listens on (it was free
// a moment ago).
func freeUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// startClientAt starts a client with one loopback path to server.
func startClientAt(t *testing.T, server string, pin [32]byte, token string, tcfg transport.Config) *client.Client {
	t.Helper()
	cli, err := client.Start(context.Background(), client.Config{Server: server, Pin: pin, Token: token,
		SOCKS: "127.0.0.1:0", Transport: tcfg, Logger: logger(t),
		Paths: []client.PathConfig{{Name: "p0", Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// socksConnect dials through the proxy at proxy to dest; unlike
// world.dialSOCKS it may run outside the test's goroutine.
func socksConnect(proxy net.Addr, dest socks5.Addr, within time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", proxy.String(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(within))
	if _, err := socks5.Connect(conn, nil, dest); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// connectWithin retries SOCKS requests, as an application would, until
// one succeeds or d has passed.
func connectWithin(t *testing.T, cli *client.Client, dest socks5.Addr, d time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		conn, err := socksConnect(cli.SOCKSAddr(), dest, 25*time.Second)
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SOCKS request succeeded within %v; last: %v; client status %+v", d, err, cli.Status())
		}
		t.Logf("SOCKS request failed, retrying: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}

// checkReset reads conn to its end: a flow of a lost session must end in
// an error (a reset), not in a clean EOF that looks like a complete reply.
func checkReset(t *testing.T, conn net.Conn, within time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	switch {
	case err == nil:
		t.Fatal("a flow of the lost session ended with a clean EOF; want a reset")
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("a flow of the lost session was still open after %v", within)
	}
}

// TestLateStart starts the client while nothing listens at its
// concentrator's address: Start returns at once, a SOCKS request waits,
// and it succeeds once the concentrator starts.
func TestLateStart(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	id := newIdentity(t)
	addr := freeUDP(t)
	dest := newDestination(t, nil)

	begin := time.Now()
	cli := startClientAt(t, addr, id.pin, "secret-token", transport.Config{})
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("Start took %v with no concentrator: it waited for it", d)
	}
	type result struct {
		conn net.Conn
		err  error
		at   time.Time
	}
	res := make(chan result, 1)
	go func() {
		conn, err := socksConnect(cli.SOCKSAddr(), dest.addr(), 25*time.Second)
		res <- result{conn, err, time.Now()}
	}()
	time.Sleep(time.Second)
	select {
	case r := <-res:
		t.Fatalf("the SOCKS request was answered with no concentrator: %v", r.err)
	default:
	}
	if st := cli.Status(); st.Session != "connecting" || len(st.Paths) != 0 {
		t.Fatalf("status with no concentrator: %+v", st)
	}

	up := time.Now()
	srv := startServerAt(t, addr, id, transport.Config{})
	var r result
	select {
	case r = <-res:
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting SOCKS request was never answered")
	}
	if r.err != nil {
		t.Fatalf("the waiting SOCKS request failed: %v", r.err)
	}
	wait := r.at.Sub(up)
	t.Logf("first flow %v after the concentrator started (the client started %v before it)",
		wait.Round(time.Millisecond), up.Sub(begin).Round(time.Millisecond))
	if wait > 5*time.Second {
		t.Fatalf("the first flow took %v after the concentrator started", wait)
	}
	if err := echoCheck(r.conn, 4<<20, 21); err != nil {
		t.Fatal(err)
	}
	r.conn.Close()
	if st := cli.Status(); st.Session != "up" || st.Sessions != 1 || len(st.Paths) != 1 {
		t.Fatalf("status once joined: %+v", st)
	}
	cli.Close()
	srv.Close()
	dest.ln.Close()
	dest.wait(t)
}

// TestConcentratorRestart restarts the concentrator under a running
// client, on the same port with the same key. "graceful": it closes, and
// tells the client. "vanished": it goes without a word, as under kill -9
// (its goodbyes are lost on a broken link), and the new one knows nothing
// of the old session. Either way the client opens a new session by
// itself, and the flows of the old one end in a reset.
func TestConcentratorRestart(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		id := newIdentity(t)
		dest := newDestination(t, nil)
		srv := startServerAt(t, "127.0.0.1:0", id, transport.Config{})
		addr := srv.Addr().String()
		cli := startClientAt(t, addr, id.pin, "secret-token", transport.Config{})
		old := cli.Session()
		conn := connectWithin(t, cli, dest.addr(), 10*time.Second)
		if err := echoCheck(conn, 2<<20, 23); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		open := connectWithin(t, cli, dest.addr(), 10*time.Second)
		open.Write([]byte("in flight"))

		srv.Close()
		restarted := time.Now()
		srv2 := startServerAt(t, addr, id, transport.Config{})
		conn = connectWithin(t, cli, dest.addr(), 10*time.Second)
		took := time.Since(restarted)
		t.Logf("first flow %v after the concentrator restarted", took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Fatalf("the first flow took %v after the restart", took)
		}
		// The old session ended by the concentrator's word or, when that
		// word is lost (the connection's close can overtake it), by a
		// rejoin the new one answers "unknown session".
		checkReset(t, open, 5*time.Second)
		open.Close()
		t.Logf("the old session ended with: %v", old.Err())
		if err := echoCheck(conn, 2<<20, 24); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if cli.Session() == old || cli.Status().Sessions != 2 || len(srv2.Sessions()) != 1 {
			t.Fatalf("after the restart: status %+v, %d sessions at the new concentrator", cli.Status(), len(srv2.Sessions()))
		}
		select {
		case <-cli.Done():
			t.Fatalf("the client ended: %v", cli.Err())
		default:
		}
		cli.Close()
		srv2.Close()
		dest.ln.Close()
		dest.wait(t)
	})

	t.Run("vanished", func(t *testing.T) {
		id := newIdentity(t)
		dest := newDestination(t, nil)
		srv := startServerAt(t, "127.0.0.1:0", id, transport.Config{})
		link := emu.Link{RateBps: 100e6, Delay: 2 * time.Millisecond}
		r, err := emu.NewRelay("127.0.0.1:0", srv.Addr(), link, link, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		cli := startClientAt(t, r.Addr().String(), id.pin, "secret-token", transport.Config{})
		old := cli.Session()
		conn := connectWithin(t, cli, dest.addr(), 10*time.Second)
		if err := echoCheck(conn, 2<<20, 25); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		open := connectWithin(t, cli, dest.addr(), 10*time.Second)
		open.Write([]byte("in flight"))

		r.SetBroken(true) // the close below never reaches the client
		srv.Close()
		gone := time.Now()
		srv2 := startServerAt(t, srv.Addr().String(), id, transport.Config{})
		r.SetBroken(false) // the old connections now reach a concentrator that does not know them
		conn = connectWithin(t, cli, dest.addr(), 40*time.Second)
		took := time.Since(gone)
		t.Logf("first flow %v after the concentrator vanished and came back", took.Round(time.Millisecond))
		// The old connections end at the new concentrator's first
		// stateless reset if it has the old one's reset key, else by
		// quic-go's idle timeout (15 s); either is well within the
		// transport's 30 s grace, and anything near "never" fails.
		if took > 35*time.Second {
			t.Fatalf("the first flow took %v after the concentrator came back", took)
		}
		if err := echoCheck(conn, 2<<20, 26); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		checkReset(t, open, 5*time.Second)
		open.Close()
		if cli.Session() == old || len(srv2.Sessions()) != 1 {
			t.Fatalf("after the restart: status %+v, %d sessions at the new concentrator", cli.Status(), len(srv2.Sessions()))
		}
		t.Logf("the old session ended with: %v", old.Err())
	})
}

// TestGraceExpiryOpensNewSession: every path dies for longer than the
// grace period; the session ends (its flows are reset), but the client
// does not, and when the path comes back a new session carries new flows.
func TestGraceExpiryOpensNewSession(t *testing.T) {
	w := newWorld(t, options{links: threeLinks()[:1], transport: transport.Config{Grace: 500 * time.Millisecond}})
	conn, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	old := w.cli.Session()
	w.relays[0].SetBroken(true)
	select {
	case <-old.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the session outlived its grace period with no path")
	}
	if !errors.Is(old.Err(), transport.ErrNoPath) {
		t.Fatalf("session ended with %v, want %v", old.Err(), transport.ErrNoPath)
	}
	checkReset(t, conn, 10*time.Second)
	time.Sleep(time.Second) // the client keeps trying over the dead path
	if st := w.cli.Status(); st.Session != "connecting" || st.SessionError == "" {
		t.Fatalf("status with no path: %+v", st)
	}
	select {
	case <-w.cli.Done():
		t.Fatalf("the client ended: %v", w.cli.Err())
	default:
	}
	w.relays[0].SetBroken(false)
	back := time.Now()
	conn2 := connectWithin(t, w.cli, w.dest.addr(), 15*time.Second)
	defer conn2.Close()
	t.Logf("first flow %v after the path came back", time.Since(back).Round(time.Millisecond))
	if err := echoCheck(conn2, 1<<20, 27); err != nil {
		t.Fatal(err)
	}
	if w.cli.Session() == old {
		t.Fatal("the flow rode the expired session")
	}
}

// TestRefusalEndsClient: a refused token or pin is not the network: the
// client ends (Done closes, Err says why) and opens no session.
func TestRefusalEndsClient(t *testing.T) {
	id := newIdentity(t)
	srv := startServerAt(t, "127.0.0.1:0", id, transport.Config{})
	badPin := id.pin
	badPin[0] ^= 1
	for _, tc := range []struct {
		name, token string
		pin         [32]byte
		want        func(error) bool
	}{
		{"token", "wrong", id.pin, func(err error) bool {
			var je *transport.JoinError
			return errors.As(err, &je) && je.Code == wire.JoinErrAuth
		}},
		{"pin", "secret-token", badPin, func(err error) bool { return errors.Is(err, pki.ErrPinMismatch) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := startClientAt(t, srv.Addr().String(), tc.pin, tc.token, transport.Config{})
			select {
			case <-cli.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("the client still runs after a refusal; status %+v", cli.Status())
			}
			if err := cli.Err(); !tc.want(err) {
				t.Fatalf("Err() = %v", err)
			}
			if st := cli.Status(); st.Session != "stopped" || !strings.Contains(st.SessionError, "join") {
				t.Fatalf("status after a refusal: %+v", st)
			}
			if n := len(srv.Sessions()); n != 0 {
				t.Fatalf("%d sessions at the concentrator after a refusal", n)
			}
			if _, err := socksConnect(cli.SOCKSAddr(), socks5.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 9}, 5*time.Second); err == nil {
				t.Fatal("a SOCKS request succeeded on a client that ended")
			}
			cli.Close()
			if cli.Err() == nil {
				t.Fatal("Close forgot why the client ended")
			}
		})
	}
}
