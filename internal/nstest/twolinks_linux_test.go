//go:build linux

package nstest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/server"
)

// transferSize is what goes up to the echoing destination and comes back.
const transferSize = 32 << 20

// TestTwoLinksOneDown runs a concentrator in one namespace and a client in
// another, joined by two tbf-shaped veth links (A 50 Mbit/s, B 20 Mbit/s).
// The client echoes 32 MiB through its SOCKS proxy to a destination next
// to the concentrator; once a quarter has come back, link A is taken down
// for good. The transfer must complete over B with every byte intact
// (SHA-256 both ways). It also checks that the test tested: both paths
// carried data before the cut, A's interface counters stopped after it,
// and B's grew by at least a quarter of the transfer after it.
func TestTwoLinksOneDown(t *testing.T) {
	if os.Getenv(envRole) != "" {
		t.Skip("skipping inside a helper subprocess")
	}
	ctx, tp, cli := startTwoLinks(t)
	start := time.Now()

	// A quarter has come back: both paths must have carried data both ways.
	quarter := parsePaths(t, cli.expect(t, ctx, "QUARTER"))
	for _, name := range []string{"a", "b"} {
		p, ok := quarter[name]
		if !ok {
			t.Fatalf("path %s missing at the quarter mark: %v", name, quarter)
		}
		if p.sent < 256<<10 || p.recv < 256<<10 {
			t.Fatalf("path %s carried only %d bytes up and %d down before the cut: the test would not test", name, p.sent, p.recv)
		}
	}
	a0 := stats(t, ctx, tp.cli, links[0].cliDev)
	b0 := stats(t, ctx, tp.cli, links[1].cliDev)
	if a0.tx < 1<<20 || a0.rx < 1<<20 {
		t.Fatalf("link A carried only %d bytes up and %d down before the cut", a0.tx, a0.rx)
	}
	if _, err := run(ctx, "ip", "-n", tp.srv, "link", "set", links[0].srvDev, "down"); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Since(start)
	// Let anything already inside the veth driver settle before the
	// snapshot the link must not move from.
	time.Sleep(300 * time.Millisecond)
	aCut := stats(t, ctx, tp.cli, links[0].cliDev)

	final := parsePaths(t, cli.expect(t, ctx, "PATHS"))
	res := cli.expect(t, ctx, "RESULT") // ok, bytes, sha256
	if err := cli.wait(t, ctx); err != nil {
		t.Fatalf("client helper failed: %v", err)
	}
	if len(res) != 3 || res[0] != "ok" || res[1] != strconv.Itoa(transferSize) {
		t.Fatalf("client helper: bad RESULT line %q", res)
	}
	elapsed := time.Since(start)
	aEnd := stats(t, ctx, tp.cli, links[0].cliDev)
	bEnd := stats(t, ctx, tp.cli, links[1].cliDev)
	if aEnd != aCut {
		t.Errorf("link A's counters moved after it went down: rx %d -> %d, tx %d -> %d", aCut.rx, aEnd.rx, aCut.tx, aEnd.tx)
	}
	if p, ok := final["a"]; ok && p.up {
		t.Errorf("the client still counts path a as up after link A went down: %+v", p)
	}
	// What the upload was ahead of the download is bounded by windows and
	// buffers (a few MiB), so at least a quarter went over B after the cut.
	if up, down := bEnd.tx-b0.tx, bEnd.rx-b0.rx; up < transferSize/4 || down < transferSize/4 {
		t.Errorf("link B carried only %d bytes up and %d down after the cut; want at least %d each", up, down, transferSize/4)
	}
	t.Logf("echoed %d MiB in %v (link A down at %v); at the quarter: path a %d/%d B up/down, path b %d/%d B; "+
		"link A %d/%d B up/down before the cut, link B %d/%d B after; sha256 %s",
		transferSize>>20, elapsed.Round(time.Millisecond), cutAt.Round(time.Millisecond),
		quarter["a"].sent, quarter["a"].recv, quarter["b"].sent, quarter["b"].recv,
		a0.tx, a0.rx, bEnd.tx-b0.tx, bEnd.rx-b0.rx, res[2])
}

// startTwoLinks builds the two-link topology, starts the concentrator's
// helper in its namespace and the client's, with env added, in the other.
func startTwoLinks(t *testing.T, env ...string) (context.Context, *topology, *helper) {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	// Not deferred: cleanups run after the test returns and in reverse,
	// so the helpers get to stop gracefully before ctx kills them.
	t.Cleanup(cancel)
	tp := newTopology(t, ctx)
	dir := t.TempDir()
	pin, err := pki.Keygen(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	srv := startHelper(t, ctx, tp.srv, "Server", envDir+"="+dir)
	ready := srv.expect(t, ctx, "READY") // UDP port, destination TCP port
	if len(ready) != 2 {
		t.Fatalf("server helper: bad READY line %q", ready)
	}
	cli := startHelper(t, ctx, tp.cli, "Client",
		append([]string{envPin + "=" + pin, envSrvPort + "=" + ready[0], envDestPort + "=" + ready[1]}, env...)...)
	return ctx, tp, cli
}

type pathCount struct {
	sent, recv uint64
	up         bool
}

// parsePaths parses fields name:sent:received:up as printed by pathFields.
func parsePaths(t *testing.T, fields []string) map[string]pathCount {
	t.Helper()
	m := map[string]pathCount{}
	for _, f := range fields {
		parts := strings.Split(f, ":")
		if len(parts) != 4 {
			t.Fatalf("bad path counters %q", f)
		}
		sent, err1 := strconv.ParseUint(parts[1], 10, 64)
		recv, err2 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad path counters %q", f)
		}
		m[parts[0]] = pathCount{sent: sent, recv: recv, up: parts[3] == "true"}
	}
	return m
}

// pathFields renders the client's path counters for parsePaths.
func pathFields(cli *client.Client) string {
	var b strings.Builder
	for _, p := range cli.Session().Paths() {
		fmt.Fprintf(&b, " %s:%d:%d:%t", p.Name(), p.BytesSent.Load(), p.BytesReceived.Load(), p.Up())
	}
	return b.String()
}

// TestHelperServer is the concentrator host: it runs only as
// TestTwoLinksOneDown's subprocess inside the concentrator's namespace.
// It serves the concentrator on every address and an echoing destination
// on loopback, prints READY <udp port> <tcp port>, and stops when stdin
// closes.
func TestHelperServer(t *testing.T) {
	if os.Getenv(envRole) != "server" {
		t.Skip("helper for TestTwoLinksOneDown; runs only as its subprocess")
	}
	dir := os.Getenv(envDir)
	cert, _, err := pki.LoadServerCert(filepath.Join(dir, pki.CertFileName), filepath.Join(dir, pki.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(server.Config{
		Listen: "0.0.0.0:0", Cert: cert, Tokens: []string{token},
		AllowPrivate: true, AllowOwn: true, Logger: logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	fmt.Printf("%sREADY %d %d\n", linePrefix, srv.Addr().Port, ln.Addr().(*net.TCPAddr).Port)
	io.Copy(io.Discard, os.Stdin) // until the parent is done
	ln.Close()
	srv.Close() // ends the sessions, and with them the relays' conns
	wg.Wait()
}

// TestHelperClient is the client host: it runs only as
// TestTwoLinksOneDown's subprocess inside the client's namespace. It
// joins the concentrator over both links, echoes transferSize bytes
// through its own SOCKS proxy, prints QUARTER with the path counters
// once a quarter is back, and RESULT ok <bytes> <sha256> at the end.
func TestHelperClient(t *testing.T) {
	if os.Getenv(envRole) != "client" {
		t.Skip("helper for TestTwoLinksOneDown; runs only as its subprocess")
	}
	pin, err := pki.ParsePin(os.Getenv(envPin))
	if err != nil {
		t.Fatal(err)
	}
	port := os.Getenv(envSrvPort)
	destPort, err := strconv.ParseUint(os.Getenv(envDestPort), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	startCtx, startCancel := context.WithTimeout(ctx, 15*time.Second)
	defer startCancel()
	cli, err := client.Start(startCtx, client.Config{
		Pin: pin, Token: token, SOCKS: "127.0.0.1:0", Logger: logger(),
		Paths: []client.PathConfig{
			{Name: "a", Bind: netx.Bind{Device: links[0].cliDev}, Server: net.JoinHostPort("10.99.1.2", port)},
			{Name: "b", Bind: netx.Bind{Device: links[1].cliDev}, Server: net.JoinHostPort("10.99.2.2", port)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The parent closes stdin to abort (and its death closes it too).
	go func() {
		io.Copy(io.Discard, os.Stdin)
		fmt.Fprintln(os.Stderr, "nstest: stdin closed by the parent: aborting")
		os.Exit(3)
	}()
	defer func() {
		closed := make(chan struct{})
		go func() { cli.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Error("client.Close took more than 10 s")
		}
	}()

	// Both paths up before the transfer, so both carry from the start.
	for {
		up := 0
		for _, p := range cli.Session().Paths() {
			if p.Up() {
				up++
			}
		}
		if up == 2 {
			break
		}
		if startCtx.Err() != nil {
			t.Fatalf("paths not both up after 15 s:%s", pathFields(cli))
		}
		time.Sleep(20 * time.Millisecond)
	}

	conn, err := net.Dial("tcp", cli.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	dest := socks5.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: uint16(destPort)}
	if _, err := socks5.Connect(conn, nil, dest); err != nil {
		t.Fatalf("SOCKS connect to %s (in the concentrator's namespace): %v", dest, err)
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	size := transferSize
	if v := os.Getenv(envSize); v != "" {
		if size, err = strconv.Atoi(v); err != nil {
			t.Fatalf("%s=%q: %v", envSize, v, err)
		}
	}
	sum, err := echo(conn.(*net.TCPConn), size, 42, func(got int64) {
		fmt.Printf("%sQUARTER%s\n", linePrefix, pathFields(cli))
	})
	fmt.Printf("%sPATHS%s\n", linePrefix, pathFields(cli))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%sRESULT ok %d %x\n", linePrefix, size, sum)
}

// echo writes n seeded random bytes to conn, half-closes, and reads the
// echo back concurrently, checking it by SHA-256; quarter is called once,
// when a quarter has come back. It returns the hash.
func echo(conn *net.TCPConn, n int, seed uint64, quarter func(got int64)) ([]byte, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for left := n; left > 0; {
			c := min(left, 1+rng.IntN(len(buf)))
			fill(buf[:c], rng)
			sent.Write(buf[:c])
			if _, err := conn.Write(buf[:c]); err != nil {
				errc <- fmt.Errorf("write after %d of %d bytes: %w", n-left, n, err)
				return
			}
			left -= c
		}
		errc <- conn.CloseWrite()
	}()
	got := sha256.New()
	buf := make([]byte, 64<<10)
	var m int64
	called := false
	var rerr error
	for {
		k, err := conn.Read(buf)
		got.Write(buf[:k])
		m += int64(k)
		if !called && m >= int64(n/4) {
			called = true
			quarter(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("read after %d of %d bytes: %w", m, n, err)
			break
		}
	}
	if rerr != nil {
		conn.Close() // unblock the writer
		<-errc
		return nil, rerr
	}
	if werr := <-errc; werr != nil {
		return nil, werr
	}
	if m != int64(n) {
		return nil, fmt.Errorf("read %d bytes, want %d", m, n)
	}
	want, have := sent.Sum(nil), got.Sum(nil)
	if string(want) != string(have) {
		return nil, fmt.Errorf("echoed bytes differ: sha256 %x, sent %x", have, want)
	}
	return have, nil
}

// fill fills b from rng, eight bytes per draw.
func fill(b []byte, rng *rand.Rand) {
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := i; j < min(i+8, len(b)); j++ {
			b[j] = byte(v >> (8 * (j - i)))
		}
	}
}

// TestTwoLinksServerSideFlap takes link A down on the concentrator's side
// for one second in the middle of a 64 MiB echo: the concentrator's sends
// fail (network unreachable) and quic-go drops its connection. The path
// must carry data again soon after the link is back (the client redials
// a connection that stays silent; the concentrator's stateless reset ends
// the one it forgot), not after quic-go's 15 s idle timeout, and every
// byte must arrive.
func TestTwoLinksServerSideFlap(t *testing.T) {
	if os.Getenv(envRole) != "" {
		t.Skip("skipping inside a helper subprocess")
	}
	const size = 64 << 20
	ctx, tp, cli := startTwoLinks(t, envSize+"="+strconv.Itoa(size))
	cli.expect(t, ctx, "QUARTER")
	if _, err := run(ctx, "ip", "-n", tp.srv, "link", "set", links[0].srvDev, "down"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := run(ctx, "ip", "-n", tp.srv, "link", "set", links[0].srvDev, "up"); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	aBack := stats(t, ctx, tp.cli, links[0].cliDev)
	// Poll link A's counters until a MiB more has crossed it each way.
	var again time.Duration
	for again == 0 && time.Since(back) < 20*time.Second {
		time.Sleep(50 * time.Millisecond)
		if a := stats(t, ctx, tp.cli, links[0].cliDev); a.rx-aBack.rx > 1<<20 && a.tx-aBack.tx > 1<<20 {
			again = time.Since(back)
		}
	}
	final := parsePaths(t, cli.expect(t, ctx, "PATHS"))
	res := cli.expect(t, ctx, "RESULT")
	if err := cli.wait(t, ctx); err != nil {
		t.Fatalf("client helper failed: %v", err)
	}
	if len(res) != 3 || res[0] != "ok" || res[1] != strconv.Itoa(size) {
		t.Fatalf("client helper: bad RESULT line %q", res)
	}
	if again == 0 {
		t.Fatalf("link A carried under a MiB each way in the 20 s after it came back: %+v", final)
	}
	t.Logf("link A down 1 s on the concentrator's side; a MiB each way over it again %v after it came back",
		again.Round(time.Millisecond))
	if again > 5*time.Second {
		t.Errorf("path A took %v to carry data again after a 1 s outage", again)
	}
}
