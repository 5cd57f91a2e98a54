package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"braid/internal/cmdtest"
	"braid/internal/pki"
	"braid/internal/socks5"
)

// start runs the command with args in a goroutine.
func start(args ...string) *cmdtest.Run { return cmdtest.Start(run, args...) }

// freePort returns a loopback address with a port that was free a moment
// ago, for commands that must be told their address in advance.
func freePort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// echoServer echoes every connection back until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// waitSOCKS waits until the client r listens on addr.
func waitSOCKS(t *testing.T, r *cmdtest.Run, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case code := <-r.Code:
			t.Fatalf("client exited with %d; stderr:\n%s", code, r.Stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("SOCKS proxy not up on %s; stderr:\n%s", addr, r.Stderr)
		}
	}
}

// socksDial connects to dest through the SOCKS5 proxy at proxy.
func socksDial(proxy, dest string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := socks5.Connect(c, nil, socks5.AddrFromAddrPort(netip.MustParseAddrPort(dest))); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func TestEndToEnd(t *testing.T) {
	cert, key, pin := keyFiles(t)
	listen := freePort(t, "udp")
	srv := start("server", "--listen", listen, "--cert", cert, "--key", key,
		"--token", "other", "--token", "secret", "--allow-private", "--allow-own", "--log-level", "warn")
	stopServer := sync.OnceFunc(func() {
		if code := srv.Stop(t); code != 0 {
			t.Errorf("server exited with %d; stderr:\n%s", code, srv.Stderr)
		}
	})
	defer stopServer()
	echo := echoServer(t)

	t.Run("proxy", func(t *testing.T) {
		socksAddr := freePort(t, "tcp")
		cli := start("client", "--server", listen, "--pin", pin, "--token", "secret", "--socks", socksAddr, "--status", "127.0.0.1:0",
			"--path", "a=127.0.0.1,medium=ethernet", "--path", "b=127.0.0.1,conns=2,medium=cellular,price=3",
			"--fec", "4,1", "--log-level", "warn")
		waitSOCKS(t, cli, socksAddr)

		c, err := socksDial(socksAddr, echo)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 1<<20)
		rand.Read(want)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(want)
			errc <- err
		}()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("echoed bytes differ")
		}
		c.Close()

		if code := cli.Stop(t); code != 0 {
			t.Errorf("client exited with %d; stderr:\n%s", code, cli.Stderr)
		}
	})

	// A refused token or pin must end the client with status 1 and one
	// line saying why, not leave it waiting.
	refused := func(t *testing.T, pin, token string) {
		cli := start("client", "--server", listen, "--pin", pin, "--token", token,
			"--socks", "127.0.0.1:0", "--status", "127.0.0.1:0", "--path", "a=127.0.0.1", "--log-level", "error")
		code := cli.Wait(t, 20*time.Second)
		out := cli.Stderr.String()
		if code != 1 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "braid client: ") {
			t.Errorf("client exited with %d, stderr %q; want 1 and one line", code, out)
		}
		t.Logf("stderr: %s", out)
	}
	t.Run("wrong token", func(t *testing.T) { refused(t, pin, "wrong") })
	t.Run("wrong pin", func(t *testing.T) {
		_, other, err := pki.SelfSigned(nil)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, other, "secret")
	})

	// When the concentrator goes away the client stays: the network
	// never ends it. It says once, at WARN, that the session ended (or is
	// going away: the concentrator drains) and it is opening a new one,
	// keeps trying, and a signal stops it cleanly.
	t.Run("server gone", func(t *testing.T) {
		socksAddr := freePort(t, "tcp")
		cli := start("client", "--server", listen, "--pin", pin, "--token", "secret", "--socks", socksAddr, "--status", "127.0.0.1:0",
			"--path", "a=127.0.0.1", "--grace", "1s", "--log-level", "warn")
		waitSOCKS(t, cli, socksAddr)
		// The SOCKS listener is up before the first session: one round
		// trip through it says the session is, so the concentrator goes
		// away from a session and not from a join.
		c, err := socksDial(socksAddr, echo)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("read echo: %v", err)
		}
		c.Close()
		stopServer()
		deadline := time.After(20 * time.Second)
		for !strings.Contains(cli.Stderr.String(), "opening a new session") && !strings.Contains(cli.Stderr.String(), "opening a new one") {
			select {
			case code := <-cli.Code:
				t.Fatalf("client exited with %d when its concentrator went away; stderr:\n%s", code, cli.Stderr)
			case <-deadline:
				t.Fatalf("no line about the session's end; stderr:\n%s", cli.Stderr)
			case <-time.After(20 * time.Millisecond):
			}
		}
		select {
		case code := <-cli.Code:
			t.Fatalf("client exited with %d while retrying; stderr:\n%s", code, cli.Stderr)
		case <-time.After(2 * time.Second):
		}
		if code := cli.Stop(t); code != 0 {
			t.Errorf("client exited with %d; stderr:\n%s", code, cli.Stderr)
		}
		if n := strings.Count(cli.Stderr.String(), "level=WARN"); n != 1 {
			t.Errorf("%d WARN lines for one lost session, want 1; stderr:\n%s", n, cli.Stderr)
		}
		t.Logf("stderr: %s", cli.Stderr)
	})
}

func TestDemo(t *testing.T) {
	d := start("demo", "--socks", "127.0.0.1:0", "--status", "127.0.0.1:0", "--duration", "1m")
	// Wait for the curl line, which carries both addresses.
	curl := regexp.MustCompile(`curl --socks5-hostname (\S+) -o /dev/null (http://\S+)/bytes/\d+`)
	var m []string
	deadline := time.Now().Add(15 * time.Second)
	for m == nil {
		m = curl.FindStringSubmatch(d.Stdout.String())
		if m != nil {
			break
		}
		select {
		case code := <-d.Code:
			t.Fatalf("demo exited with %d; stderr:\n%s", code, d.Stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no curl line; stdout:\n%s\nstderr:\n%s", d.Stdout, d.Stderr)
		}
	}
	proxy, base := m[1], m[2]
	// The banner gives the dashboard's address; it answers.
	dashLine := regexp.MustCompile(`live dashboard: (http://\S+/)\n`)
	dash := dashLine.FindStringSubmatch(d.Stdout.String())
	for dash == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		dash = dashLine.FindStringSubmatch(d.Stdout.String())
	}
	if dash == nil {
		t.Fatalf("no dashboard line in the banner:\n%s", d.Stdout)
	}
	if resp, err := http.Get(dash[1] + "api/state"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the demo's dashboard: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return socksDial(proxy, addr)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	get := func(path string) []byte {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := get("/bytes/300000"); len(b) != 300000 {
		t.Errorf("/bytes/300000 returned %d bytes", len(b))
	}
	if b := get("/"); !bytes.Contains(b, []byte("/bytes/N")) {
		t.Errorf("/ returned %q", b)
	}
	tr.CloseIdleConnections()
	// The same port is an HTTP proxy, as the banner's second line says.
	if !strings.Contains(d.Stdout.String(), "http_proxy=http://"+proxy+" curl") {
		t.Errorf("no http_proxy line in the banner:\n%s", d.Stdout)
	}
	tr = &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})}
	hc.Transport = tr
	if b := get("/bytes/200000"); len(b) != 200000 {
		t.Errorf("/bytes/200000 through the HTTP proxy returned %d bytes", len(b))
	}
	tr.CloseIdleConnections()

	if code := d.Stop(t); code != 0 {
		t.Errorf("demo exited with %d; stderr:\n%s", code, d.Stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(d.Stdout.String()))
	for sc.Scan() {
		t.Log(sc.Text())
	}
}
