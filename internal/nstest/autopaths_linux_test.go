//go:build linux

package nstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"braid/client"
	"braid/internal/pki"
	"braid/internal/socks5"
)

// TestAutoPathsHotPlug's topology. The concentrator's address is a /32 on
// the server namespace's loopback, reachable over either link: the client
// namespace has a route to it through each link, so a path bound to a
// device (SO_BINDTODEVICE) leaves by its own link.
//
//	braidc-X                                     braids-X
//	vethA-c 10.99.11.1/24 <--A--> vethA-s 10.99.11.2/24
//	vethB-c 10.99.12.1/24 <--B--> vethB-s 10.99.12.2/24   (added later)
//	                                           lo 10.99.100.1/32
//	10.99.100.1 via 10.99.11.2 dev vethA-c
//	10.99.100.1 via 10.99.12.2 dev vethB-c metric 10
const (
	autoServerIP   = "10.99.100.1"
	autoTransfer   = 16 << 20                   // the echo during which link A goes away
	autoSmall      = 1 << 20                    // the echoes before and after
	envAutoServer  = "BRAID_NSTEST_AUTO_SERVER" // the concentrator's IP for the auto client
	autoClientRole = "AutoClient"
)

// autoLink is one veth pair of TestAutoPathsHotPlug, with the client's
// route to the concentrator through it.
type autoLink struct {
	cliDev, srvDev string
	cliIP, srvIP   string // with prefix length
	gw             string // srvIP without the prefix length
	metric         string // of the route to autoServerIP
	rate           string // tc rate, both directions
}

var autoLinks = []autoLink{
	{"vethA-c", "vethA-s", "10.99.11.1/24", "10.99.11.2/24", "10.99.11.2", "0", "20mbit"},
	{"vethB-c", "vethB-s", "10.99.12.1/24", "10.99.12.2/24", "10.99.12.2", "10", "20mbit"},
}

// newAutoNamespaces creates the client and server namespaces of
// TestAutoPathsHotPlug, with loopback up, the concentrator's /32 on the
// server's loopback and reverse-path filtering off in both (the client
// namespace gets replies from autoServerIP on a link that is not its
// preferred route to it). No link joins them yet. t.Cleanup deletes the
// namespaces, which destroys every veth in them.
func newAutoNamespaces(t *testing.T, ctx context.Context) *topology {
	t.Helper()
	tp := newNamespaces(t, ctx)
	for _, ns := range []string{tp.cli, tp.srv} {
		mustRun(t, ctx, false, "ip", "-n", ns, "link", "set", "lo", "up")
		// all and default, before any veth exists: a device's own value
		// starts from default, and the kernel applies the larger of the
		// device's and all's.
		for _, c := range []string{"all", "default"} {
			p := "/proc/sys/net/ipv4/conf/" + c + "/rp_filter"
			mustRun(t, ctx, false, "ip", "netns", "exec", ns, "sh", "-c", "echo 0 > "+p)
		}
	}
	mustRun(t, ctx, false, "ip", "-n", tp.srv, "addr", "add", autoServerIP+"/32", "dev", "lo")
	return tp
}

// addAutoLink joins the namespaces with l. The client end is up, with its
// address and its route to the concentrator, before the server end comes
// up and gives it carrier: the client sees the interface become usable
// only once it can reach the concentrator through it, as when a modem
// has finished its DHCP.
func addAutoLink(t *testing.T, ctx context.Context, tp *topology, l autoLink) {
	t.Helper()
	// Both ends are created inside the namespaces, so no name is ever
	// taken in the root namespace.
	mustRun(t, ctx, true, "ip", "-n", tp.cli, "link", "add", l.cliDev, "type", "veth", "peer", "name", l.srvDev, "netns", tp.srv)
	mustRun(t, ctx, false, "ip", "-n", tp.cli, "addr", "add", l.cliIP, "dev", l.cliDev)
	mustRun(t, ctx, false, "ip", "-n", tp.srv, "addr", "add", l.srvIP, "dev", l.srvDev)
	for _, e := range []struct{ ns, dev string }{{tp.cli, l.cliDev}, {tp.srv, l.srvDev}} {
		// tbf shapes egress, so each end shapes its own direction.
		mustRun(t, ctx, true, "ip", "netns", "exec", e.ns, "tc", "qdisc", "add", "dev", e.dev, "root",
			"tbf", "rate", l.rate, "burst", "64kb", "latency", "50ms")
	}
	mustRun(t, ctx, false, "ip", "-n", tp.cli, "link", "set", l.cliDev, "up")
	mustRun(t, ctx, false, "ip", "-n", tp.cli, "route", "add", autoServerIP+"/32",
		"via", l.gw, "dev", l.cliDev, "metric", l.metric)
	mustRun(t, ctx, false, "ip", "-n", tp.srv, "link", "set", l.srvDev, "up")
}

// mustRun runs a command, skipping (skip) or failing the test when it
// fails.
func mustRun(t *testing.T, ctx context.Context, skip bool, args ...string) {
	t.Helper()
	if _, err := run(ctx, args...); err != nil {
		if skip {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
}

// TestAutoPathsHotPlug checks --path auto against real interfaces coming
// and going. A concentrator runs in one namespace; a client with
// AutoPaths in another starts with one veth link (A) to it:
//
//  1. the client has exactly one path, vethA-c, up, and a 1 MiB echo
//     through its SOCKS proxy comes back intact;
//  2. link B is plugged in: within a few seconds the client has a second
//     path, vethB-c, up;
//  3. a 16 MiB echo starts, and once a quarter is back link A is deleted
//     (ip link del vethA-c): the echo completes intact, path vethA-c is
//     gone from the session within a few seconds, vethB-c carries the
//     rest (its interface counters grow by at least a quarter of the
//     transfer both ways after the cut) and is the only path left, up,
//     and a last 1 MiB echo still works.
func TestAutoPathsHotPlug(t *testing.T) {
	if os.Getenv(envRole) != "" {
		t.Skip("skipping inside a helper subprocess")
	}
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	// Not deferred: cleanups run after the function returns and in
	// reverse, so the helpers get to stop gracefully before ctx kills them.
	t.Cleanup(cancel)
	tp := newAutoNamespaces(t, ctx)
	linkA, linkB := autoLinks[0], autoLinks[1]
	addAutoLink(t, ctx, tp, linkA)

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
	start := time.Now()
	cli := startHelper(t, ctx, tp.cli, autoClientRole,
		envPin+"="+pin, envSrvPort+"="+ready[0], envDestPort+"="+ready[1], envAutoServer+"="+autoServerIP)

	// (1) One interface, one path.
	one := parsePaths(t, cli.expect(t, ctx, "ONE"))
	if p, ok := one[linkA.cliDev]; len(one) != 1 || !ok || !p.up {
		t.Fatalf("with only link A, want exactly one path %s, up; have %v", linkA.cliDev, one)
	}
	small := cli.expect(t, ctx, "SMALL") // ok, bytes, sha256
	if len(small) != 3 || small[0] != "ok" || small[1] != strconv.Itoa(autoSmall) {
		t.Fatalf("client helper: bad SMALL line %q", small)
	}

	// (2) Plug in link B.
	addAutoLink(t, ctx, tp, linkB)
	plugged := time.Now()
	two := parsePaths(t, cli.expect(t, ctx, "TWO"))
	tookB := time.Since(plugged)
	for _, l := range autoLinks {
		if p, ok := two[l.cliDev]; !ok || !p.up {
			t.Fatalf("after plugging link B, want paths %s and %s up; have %v", linkA.cliDev, linkB.cliDev, two)
		}
	}
	if len(two) != 2 {
		t.Fatalf("after plugging link B, want exactly two paths; have %v", two)
	}
	if tookB > 10*time.Second {
		t.Errorf("path %s took %v to come up after link B was plugged in", linkB.cliDev, tookB)
	}

	// (3) Unplug link A a quarter into the big echo.
	quarter := parsePaths(t, cli.expect(t, ctx, "QUARTER"))
	for _, l := range autoLinks {
		p, ok := quarter[l.cliDev]
		if !ok {
			t.Fatalf("path %s missing at the quarter mark: %v", l.cliDev, quarter)
		}
		if p.sent < 256<<10 || p.recv < 256<<10 {
			t.Fatalf("path %s carried only %d bytes up and %d down before the cut: the test would not test", l.cliDev, p.sent, p.recv)
		}
	}
	a0 := stats(t, ctx, tp.cli, linkA.cliDev)
	b0 := stats(t, ctx, tp.cli, linkB.cliDev)
	mustRun(t, ctx, false, "ip", "-n", tp.cli, "link", "del", linkA.cliDev)
	cut := time.Now()

	final := parsePaths(t, cli.expect(t, ctx, "PATHS"))
	res := cli.expect(t, ctx, "RESULT") // ok, bytes, sha256
	if len(res) != 3 || res[0] != "ok" || res[1] != strconv.Itoa(autoTransfer) {
		t.Fatalf("client helper: bad RESULT line %q", res)
	}
	transferDone := time.Since(cut)
	bEnd := stats(t, ctx, tp.cli, linkB.cliDev)
	// What the upload was ahead of the download is bounded by windows and
	// buffers (a few MiB), so at least a quarter went over B after the cut.
	if up, down := bEnd.tx-b0.tx, bEnd.rx-b0.rx; up < autoTransfer/4 || down < autoTransfer/4 {
		t.Errorf("link B carried only %d bytes up and %d down after the cut; want at least %d each", up, down, autoTransfer/4)
	}

	gone := cli.expect(t, ctx, "GONE") // ms after the quarter mark, paths...
	if len(gone) < 1 {
		t.Fatalf("client helper: bad GONE line %q", gone)
	}
	goneMS, err := strconv.Atoi(gone[0])
	if err != nil {
		t.Fatalf("client helper: bad GONE line %q", gone)
	}
	// Measured by the client from its quarter mark, a little before the
	// cut: an upper bound of the time from the cut.
	if goneMS > 5000 {
		t.Errorf("path %s disappeared %d ms after the quarter mark; want within 5 s of link A's deletion", linkA.cliDev, goneMS)
	}
	left := parsePaths(t, gone[1:])
	if p, ok := left[linkB.cliDev]; len(left) != 1 || !ok || !p.up {
		t.Errorf("after link A's deletion, want exactly one path %s, up; have %v", linkB.cliDev, left)
	}
	after := cli.expect(t, ctx, "AFTER") // ok, bytes, sha256
	if len(after) != 3 || after[0] != "ok" || after[1] != strconv.Itoa(autoSmall) {
		t.Fatalf("client helper: bad AFTER line %q", after)
	}
	if err := cli.wait(t, ctx); err != nil {
		t.Fatalf("client helper failed: %v", err)
	}
	t.Logf("path %s up %v after link B was plugged in; echoed %d MiB, link A deleted at the quarter "+
		"(path a %d/%d B up/down, path b %d/%d B; link A %d/%d B tx/rx), done %v after the cut; "+
		"path %s gone %d ms after the quarter mark; link B %d/%d B tx/rx after the cut; at the end %v; "+
		"sha256 %s; %v in all",
		linkB.cliDev, tookB.Round(time.Millisecond), autoTransfer>>20,
		quarter[linkA.cliDev].sent, quarter[linkA.cliDev].recv, quarter[linkB.cliDev].sent, quarter[linkB.cliDev].recv,
		a0.tx, a0.rx, transferDone.Round(time.Millisecond), linkA.cliDev, goneMS,
		bEnd.tx-b0.tx, bEnd.rx-b0.rx, final, res[2], time.Since(start).Round(time.Millisecond))
}

// TestHelperAutoClient is the client host of TestAutoPathsHotPlug: it runs
// only as its subprocess inside the client's namespace. It starts a
// client with AutoPaths and, step by step (the parent changes the links in
// between), prints:
//
//	ONE <paths>               exactly one path, up
//	SMALL ok <bytes> <sha256> a small echo came back
//	TWO <paths>               the second path is up
//	QUARTER <paths>           a quarter of the big echo is back
//	PATHS <paths>             the big echo is over
//	RESULT ok <bytes> <sha256>
//	GONE <ms> <paths>         the first path left the session, <ms> after
//	                          the quarter mark
//	AFTER ok <bytes> <sha256> a small echo over what is left
//
// where <paths> are name:sent:received:up fields (see parsePaths).
func TestHelperAutoClient(t *testing.T) {
	if os.Getenv(envRole) != strings.ToLower(autoClientRole) {
		t.Skip("helper for TestAutoPathsHotPlug; runs only as its subprocess")
	}
	pin, err := pki.ParsePin(os.Getenv(envPin))
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort(os.Getenv(envAutoServer), os.Getenv(envSrvPort))
	destPort, err := strconv.ParseUint(os.Getenv(envDestPort), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	dest := socks5.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: uint16(destPort)}
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	startCtx, startCancel := context.WithTimeout(ctx, 15*time.Second)
	defer startCancel()
	cli, err := client.Start(startCtx, client.Config{
		Server: server, AutoPaths: true,
		Pin: pin, Token: token, SOCKS: "127.0.0.1:0", Logger: logger(),
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
	linkA, linkB := autoLinks[0].cliDev, autoLinks[1].cliDev

	// (1) Exactly one path, up.
	waitPaths(t, ctx, cli, 15*time.Second, "only "+linkA+" up", func(up map[string]bool) bool {
		return len(up) == 1 && up[linkA]
	})
	fmt.Printf("%sONE%s\n", linePrefix, pathFields(cli))
	sum, err := socksEcho(ctx, cli, dest, autoSmall, 1, nil)
	if err != nil {
		t.Fatalf("echo over %s alone: %v", linkA, err)
	}
	fmt.Printf("%sSMALL ok %d %x\n", linePrefix, autoSmall, sum)

	// (2) The parent plugs in link B.
	waitPaths(t, ctx, cli, 10*time.Second, linkA+" and "+linkB+" up", func(up map[string]bool) bool {
		return len(up) == 2 && up[linkA] && up[linkB]
	})
	fmt.Printf("%sTWO%s\n", linePrefix, pathFields(cli))

	// (3) The parent deletes link A once a quarter of the echo is back.
	// Meanwhile, watch the paths: when A leaves, and whether B ever does.
	var quarterAt atomic.Pointer[time.Time]
	goneAfter := make(chan time.Duration, 1)
	var bMissing atomic.Bool
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
			names := pathNames(cli)
			if !slices.Contains(names, linkB) {
				bMissing.Store(true)
			}
			if q := quarterAt.Load(); q != nil && !slices.Contains(names, linkA) {
				goneAfter <- time.Since(*q)
				return
			}
		}
	}()
	sum, err = socksEcho(ctx, cli, dest, autoTransfer, 42, func() {
		now := time.Now()
		quarterAt.Store(&now)
		fmt.Printf("%sQUARTER%s\n", linePrefix, pathFields(cli))
	})
	fmt.Printf("%sPATHS%s\n", linePrefix, pathFields(cli))
	if err != nil {
		t.Fatalf("echo while %s is deleted: %v", linkA, err)
	}
	fmt.Printf("%sRESULT ok %d %x\n", linePrefix, autoTransfer, sum)
	select {
	case d := <-goneAfter:
		// B up as well: it carries on alone.
		waitPaths(t, ctx, cli, 5*time.Second, "only "+linkB+" up", func(up map[string]bool) bool {
			return len(up) == 1 && up[linkB]
		})
		fmt.Printf("%sGONE %d%s\n", linePrefix, d.Milliseconds(), pathFields(cli))
	case <-time.After(15 * time.Second):
		t.Fatalf("path %s still in the session more than 15 s after the transfer ended:%s", linkA, pathFields(cli))
	}
	stopWatch()
	if bMissing.Load() {
		t.Errorf("path %s left the session at some point while it should have stayed", linkB)
	}
	sum, err = socksEcho(ctx, cli, dest, autoSmall, 7, nil)
	if err != nil {
		t.Fatalf("echo over %s after %s was deleted: %v", linkB, linkA, err)
	}
	fmt.Printf("%sAFTER ok %d %x\n", linePrefix, autoSmall, sum)
}

// waitPaths waits up to d for cond to hold of the paths (name -> up),
// failing the test with what it has otherwise.
func waitPaths(t *testing.T, ctx context.Context, cli *client.Client, d time.Duration, what string, cond func(map[string]bool) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		up := map[string]bool{}
		for _, p := range cli.Session().Paths() {
			up[p.Name()] = p.Up()
		}
		if cond(up) {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("paths not %s after %v:%s", what, d, pathFields(cli))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pathNames(cli *client.Client) []string {
	var names []string
	for _, p := range cli.Session().Paths() {
		names = append(names, p.Name())
	}
	return names
}

// socksEcho echoes n seeded bytes to dest through the client's SOCKS
// proxy and returns their SHA-256; quarter, if not nil, is called once a
// quarter has come back.
func socksEcho(ctx context.Context, cli *client.Client, dest socks5.Addr, n int, seed uint64, quarter func()) ([]byte, error) {
	conn, err := net.Dial("tcp", cli.SOCKSAddr().String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := socks5.Connect(conn, nil, dest); err != nil {
		return nil, fmt.Errorf("SOCKS connect to %s (in the concentrator's namespace): %w", dest, err)
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	return echo(conn.(*net.TCPConn), n, seed, func(int64) {
		if quarter != nil {
			quarter()
		}
	})
}
