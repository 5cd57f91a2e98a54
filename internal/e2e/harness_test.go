// Package e2e runs client, concentrator, emulated paths and destinations
// in one process and checks what arrives, byte for byte.
package e2e

import (
	"braid/internal/tier"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/server"
	"braid/transport"
)

// world is one client, one concentrator, emulated paths between them and
// a destination service.
type world struct {
	srv    *server.Server
	cli    *client.Client
	relays []*emu.Relay
	dest   *destination
	pin    [32]byte
}

type options struct {
	links     []emu.Link
	transport transport.Config
	conns     int
	token     string // client's token; default the right one
	pin       *[32]byte
	private   bool
	status    string // status address of both ends, "" for none
	stunEvery time.Duration
	handler   func(net.Conn)
	prices    []float64 // per path, USD per GB; the paths also get their link's rate
	policy    *tier.Policy
	socksUser string // the proxy's user and password, "" for any
	socksPass string
}

func logger(t *testing.T) *slog.Logger {
	if os.Getenv("BRAID_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func startServer(t *testing.T, o options) (*server.Server, [32]byte) {
	t.Helper()
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := pki.ParsePin(pinStr)
	srv, err := server.Start(server.Config{
		Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"secret-token"}, Status: o.status,
		AllowPrivate: !o.private, AllowOwn: !o.private, Transport: o.transport, Logger: logger(t), Policy: o.policy,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, pin
}

func newWorld(t *testing.T, o options) *world {
	t.Helper()
	w := &world{}
	w.srv, w.pin = startServer(t, o)
	w.dest = newDestination(t, o.handler)
	var paths []client.PathConfig
	for i, l := range o.links {
		r, err := emu.NewRelay("127.0.0.1:0", w.srv.Addr(), l, l, int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		w.relays = append(w.relays, r)
		paths = append(paths, client.PathConfig{
			Name: fmt.Sprintf("p%d", i), Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")},
			Server: r.Addr().String(), Conns: o.conns,
		})
		if i < len(o.prices) {
			paths[len(paths)-1].PriceGB = o.prices[i]
			paths[len(paths)-1].RateMbps = l.RateBps / 1e6
		}
	}
	tok := o.token
	if tok == "" {
		tok = "secret-token"
	}
	pin := w.pin
	if o.pin != nil {
		pin = *o.pin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := client.Start(ctx, client.Config{
		Pin: pin, Token: tok, SOCKS: "127.0.0.1:0", Paths: paths, Status: o.status,
		Transport: o.transport, Logger: logger(t), STUNInterval: o.stunEvery,
		SOCKSUser: o.socksUser, SOCKSPass: o.socksPass,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	w.cli = cli
	return w
}

// destination is a TCP service on loopback; by default it answers each
// connection with sink-and-source: it hashes what it reads and, when the
// client has half-closed, reports the hash.
type destination struct {
	ln      net.Listener
	handler func(net.Conn)
	wg      sync.WaitGroup
}

func newDestination(t *testing.T, handler func(net.Conn)) *destination {
	return newDestinationAt(t, "127.0.0.1:0", handler)
}

func newDestinationOn(t *testing.T, addr string) *destination {
	return newDestinationAt(t, addr, nil)
}

func newDestinationAt(t *testing.T, addr string, handler func(net.Conn)) *destination {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if handler == nil {
		handler = echoHandler
	}
	d := &destination{ln: ln, handler: handler}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer c.Close()
				d.handler(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); d.wait(t) })
	return d
}

// wait waits for the destination's handlers to end, failing (rather than
// hanging the package) when one is still running a minute later: a flow
// that its end never closed or reset.
func (d *destination) wait(t testing.TB) {
	t.Helper()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Errorf("destination %v: a connection still open a minute after the test: its flow was never ended", d.ln.Addr())
	}
}

func (d *destination) addr() socks5.Addr {
	ap := d.ln.Addr().(*net.TCPAddr).AddrPort()
	return socks5.Addr{IP: ap.Addr(), Port: ap.Port()}
}

// echoHandler copies everything back and half-closes after EOF.
func echoHandler(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// dialSOCKS connects through the client's proxy to dest.
func (w *world) dialSOCKS(t testing.TB, dest socks5.Addr) (net.Conn, error) {
	return w.dialSOCKSAs(t, dest, nil)
}

// dialSOCKSAs dials through the client's SOCKS proxy with credentials.
func (w *world) dialSOCKSAs(t testing.TB, dest socks5.Addr, creds *socks5.Credentials) (net.Conn, error) {
	conn, err := net.Dial("tcp", w.cli.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := socks5.Connect(conn, creds, dest); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// exchange sends up random bytes and reads down bytes concurrently,
// checking both by hash: up goes to the destination, whose handler echoes
// or generates.
func echoCheck(conn net.Conn, n int, seed uint64) error {
	return echoCheckConn(conn.(*net.TCPConn), n, seed)
}

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

func echoCheckConn(conn halfCloser, n int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		left := n
		for left > 0 {
			c := min(left, 1+rng.IntN(len(buf)))
			fill(buf[:c], rng)
			sent.Write(buf[:c])
			if _, err := conn.Write(buf[:c]); err != nil {
				errc <- fmt.Errorf("write: %w", err)
				return
			}
			left -= c
		}
		errc <- conn.CloseWrite()
	}()
	got := sha256.New()
	m, err := copyWithStallLimit(got, conn, stallLimit)
	if err != nil {
		conn.Close() // unblocks the writer
		return fmt.Errorf("read after %d of %d bytes: %w (write side: %v)", m, n, err, <-errc)
	}
	werr := <-errc
	if werr != nil {
		return werr
	}
	if m != int64(n) {
		return fmt.Errorf("read %d bytes, want %d", m, n)
	}
	if !equalHash(got, sent) {
		return errors.New("echoed bytes differ (sha256)")
	}
	return nil
}

// stallLimit is how long an echo transfer may go without a byte before it
// fails: a stuck transfer then names itself instead of hanging the package
// until go test's timeout.
const stallLimit = 2 * time.Minute

// copyWithStallLimit copies conn to w until EOF, failing once no byte has
// arrived for limit.
func copyWithStallLimit(w io.Writer, conn net.Conn, limit time.Duration) (int64, error) {
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 64<<10)
	var total int64
	for {
		conn.SetReadDeadline(time.Now().Add(limit))
		n, err := conn.Read(buf)
		w.Write(buf[:n])
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return total, fmt.Errorf("no byte for %v: %w", limit, err)
			}
			return total, err
		}
	}
}

func fill(b []byte, rng *rand.Rand) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

func equalHash(a, b interface{ Sum([]byte) []byte }) bool {
	return string(a.Sum(nil)) == string(b.Sum(nil))
}
