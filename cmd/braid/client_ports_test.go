package main

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"braid/internal/netx"
	"braid/internal/pki"
	"braid/server"
)

// The client's ports: the SOCKS address and a status address the user
// gave must be free, or the client exits 2 naming the flag before it
// joins; the default status address may be taken (a second client on the
// host), and the client then runs without it.

// concentrator runs a concentrator in-process, so a test can count its
// sessions; it returns the server and the pin clients need.
func concentrator(t *testing.T, listen string) (*server.Server, string) {
	t.Helper()
	cert, pin, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	return concentratorWith(t, listen, cert), pin
}

// concentratorWith runs a concentrator on listen with cert, accepting the
// token "secret", until the test ends.
func concentratorWith(t *testing.T, listen string, cert tls.Certificate) *server.Server {
	t.Helper()
	srv, err := server.Start(server.Config{Listen: listen, Cert: cert, Tokens: []string{"secret"},
		AllowPrivate: true, AllowOwn: true}) // the echo server is on loopback
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// takenTCP returns a loopback TCP address held by the test until it ends.
func takenTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// holdDefaultStatus makes sure 127.0.0.1:1081, the --status default, is
// taken while the test runs: by the test, or already by someone else.
func holdDefaultStatus(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:1081")
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

// exitsWith runs a client that must fail at once with code 2 and one line
// naming flag.
func exitsWith(t *testing.T, flag string, args ...string) {
	t.Helper()
	cli := start(append([]string{"client"}, args...)...)
	code := cli.Wait(t, 10*time.Second)
	out := cli.Stderr.String()
	if code != 2 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "braid client: "+flag+": cannot listen on ") {
		t.Fatalf("client exited with %d, stderr %q; want 2 and one line naming %s", code, out, flag)
	}
	t.Logf("stderr: %s", out)
}

func TestClientPortTaken(t *testing.T) {
	srv, pin := concentrator(t, "127.0.0.1:0")
	base := []string{"--server", srv.Addr().String(), "--pin", pin, "--token", "secret", "--path", "a=127.0.0.1", "--log-level", "warn"}
	taken := takenTCP(t)
	t.Run("socks", func(t *testing.T) {
		exitsWith(t, "--socks", append(base, "--socks", taken, "--status", "off")...)
	})
	t.Run("socks, default status", func(t *testing.T) {
		exitsWith(t, "--socks", append(base, "--socks", taken)...)
	})
	t.Run("status flag", func(t *testing.T) {
		exitsWith(t, "--status", append(base, "--socks", "127.0.0.1:0", "--status", taken)...)
	})
	t.Run("status in config file", func(t *testing.T) {
		file := writeFile(t, "client.toml", "status = \""+taken+"\"\n")
		exitsWith(t, "--status", append(base, "--socks", "127.0.0.1:0", "--config", file)...)
	})
	t.Run("status flag, automatic paths", func(t *testing.T) {
		if !netx.DeviceBind {
			t.Skip("--path auto needs SO_BINDTODEVICE")
		}
		// The interface watcher of --path auto goes with the client.
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		auto := []string{"--server", srv.Addr().String(), "--pin", pin, "--token", "secret", "--path", "auto", "--log-level", "warn"}
		exitsWith(t, "--status", append(auto, "--socks", "127.0.0.1:0", "--status", taken)...)
	})
	// None of them joined: the concentrator holds no orphaned session.
	time.Sleep(200 * time.Millisecond)
	if n := len(srv.Sessions()); n != 0 {
		t.Fatalf("%d sessions at the concentrator from clients that exited 2", n)
	}
}

// TestClientDefaultStatusTaken: a second client on the host finds the
// default status address taken; it warns and serves.
func TestClientDefaultStatusTaken(t *testing.T) {
	holdDefaultStatus(t)
	// The echo server first, so the concentrator, which holds its
	// connections, is closed before it waits for them.
	echo := echoServer(t)
	srv, pin := concentrator(t, "127.0.0.1:0")
	socksAddr := freePort(t, "tcp")
	cli := start("client", "--server", srv.Addr().String(), "--pin", pin, "--token", "secret",
		"--socks", socksAddr, "--path", "a=127.0.0.1", "--log-level", "warn")
	waitSOCKS(t, cli, socksAddr)
	c, err := socksDial(socksAddr, echo)
	if err != nil {
		t.Fatalf("SOCKS through the client: %v; stderr:\n%s", err, cli.Stderr)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	c.Close()
	if n := len(srv.Sessions()); n != 1 {
		t.Fatalf("%d sessions at the concentrator, want 1", n)
	}
	if code := cli.Stop(t); code != 0 {
		t.Fatalf("client exited with %d; stderr:\n%s", code, cli.Stderr)
	}
	out := cli.Stderr.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "status page off") || !strings.Contains(out, "127.0.0.1:1081") {
		t.Fatalf("no warning about the status address; stderr:\n%s", out)
	}
	t.Logf("stderr: %s", out)
}

// TestClientWaitsForConcentrator: started while its concentrator is not
// up, the client runs (it exited after 3 s before), and serves once the
// concentrator starts.
func TestClientWaitsForConcentrator(t *testing.T) {
	listen := freePort(t, "udp")
	cert, pin, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	echo := echoServer(t)
	socksAddr := freePort(t, "tcp")
	cli := start("client", "--server", listen, "--pin", pin, "--token", "secret",
		"--socks", socksAddr, "--status", "127.0.0.1:0", "--path", "a=127.0.0.1", "--log-level", "warn")
	waitSOCKS(t, cli, socksAddr)
	select {
	case code := <-cli.Code:
		t.Fatalf("client exited with %d with its concentrator down; stderr:\n%s", code, cli.Stderr)
	case <-time.After(4 * time.Second):
	}
	started := time.Now()
	concentratorWith(t, listen, cert)
	c, err := socksDial(socksAddr, echo)
	if err != nil {
		t.Fatalf("SOCKS once the concentrator is up: %v; stderr:\n%s", err, cli.Stderr)
	}
	t.Logf("first flow %v after the concentrator started", time.Since(started).Round(time.Millisecond))
	c.Close()
	if code := cli.Stop(t); code != 0 {
		t.Fatalf("client exited with %d; stderr:\n%s", code, cli.Stderr)
	}
	if out := cli.Stderr.String(); strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "concentrator not reachable") {
		t.Errorf("want one WARN line about the unreachable concentrator; stderr:\n%s", out)
	}
}
