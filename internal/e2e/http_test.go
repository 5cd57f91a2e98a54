package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"braid/internal/policyfile"
	"braid/internal/socks5"
)

// webOrigin serves /big (size bytes from a seeded generator) and /echo
// (the request body back), over TLS or not.
func webOrigin(t *testing.T, tls bool, size int) *httptest.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			w.Write(seeded(size, 7))
		case "/echo":
			io.Copy(w, r.Body)
		default:
			fmt.Fprintf(w, "%s %s", r.Method, r.RequestURI)
		}
	})
	srv := httptest.NewUnstartedServer(h)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func seeded(n int, seed uint64) []byte {
	b := make([]byte, n)
	fill(b, rand.New(rand.NewPCG(seed, seed)))
	return b
}

// viaProxy is an HTTP client whose proxy is the braid client's port.
func (w *world) viaProxy(user, pass string, origin *httptest.Server) *http.Client {
	u := &url.URL{Scheme: "http", Host: w.cli.SOCKSAddr().String()}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(u)}
	if origin.TLS != nil {
		tr.TLSClientConfig = origin.Client().Transport.(*http.Transport).TLSClientConfig
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// checkBigAndEcho fetches /big and round-trips a body through /echo.
func checkBigAndEcho(t *testing.T, c *http.Client, origin *httptest.Server, size int) {
	t.Helper()
	resp, err := c.Get(origin.URL + "/big")
	if err != nil {
		t.Fatalf("GET /big: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != int64(size) || !bytes.Equal(h.Sum(nil), sha(seeded(size, 7))) {
		t.Fatalf("GET /big: %d bytes of %d, %v, hash ok %v", n, size, err, bytes.Equal(h.Sum(nil), sha(seeded(size, 7))))
	}
	up := seeded(1<<20, 9)
	resp, err = c.Post(origin.URL+"/echo", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatalf("POST /echo: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, up) {
		t.Fatalf("POST /echo: %d bytes back of %d, %v", len(got), len(up), err)
	}
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestHTTPProxy: the proxy port speaks HTTP beside SOCKS5, with the same
// credentials: CONNECT to a TLS server (what https_proxy does) and plain
// requests to an HTTP server carry their bytes through braid; wrong
// credentials get 407; SOCKS5 still works on the port, and UDP ASSOCIATE
// is still refused.
func TestHTTPProxy(t *testing.T) {
	w := newWorld(t, options{links: threeLinks()[:2], socksUser: "alice", socksPass: "s3cret"})
	const size = 4 << 20
	tlsOrigin, plainOrigin := webOrigin(t, true, size), webOrigin(t, false, size)

	for _, origin := range []*httptest.Server{tlsOrigin, plainOrigin} {
		c := w.viaProxy("alice", "s3cret", origin)
		checkBigAndEcho(t, c, origin, size)
		c.CloseIdleConnections()

		bad := w.viaProxy("alice", "wrong", origin)
		resp, err := bad.Get(origin.URL + "/")
		switch {
		case origin.TLS != nil:
			// A refused CONNECT is the Transport's error.
			if err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
				t.Fatalf("CONNECT with a wrong password: %v, want 407", err)
			}
		case err != nil:
			t.Fatal(err)
		default:
			resp.Body.Close()
			if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") != `Basic realm="braid"` {
				t.Fatalf("plain request with a wrong password: %v %v", resp.Status, resp.Header)
			}
		}
		bad.CloseIdleConnections()
	}
	if got := connectStatus(t, w, plainOrigin.Listener.Addr().String(), ""); got != http.StatusProxyAuthRequired {
		t.Fatalf("CONNECT without credentials: %d, want 407", got)
	}

	conn, err := w.dialSOCKSAs(t, w.dest.addr(), &socks5.Credentials{User: "alice", Pass: "s3cret"})
	if err != nil {
		t.Fatalf("SOCKS5 beside HTTP: %v", err)
	}
	defer conn.Close()
	if err := echoCheck(conn, 256<<10, 41); err != nil {
		t.Fatal(err)
	}
	uc, err := net.Dial("tcp", w.cli.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(10 * time.Second))
	// UDP ASSOCIATE on the same port, with the same credentials.
	if relay, err := socks5.Associate(uc, &socks5.Credentials{User: "alice", Pass: "s3cret"}, socks5.Addr{}); err != nil || relay.Port == 0 {
		t.Fatalf("UDP ASSOCIATE: %v, relay %v", err, relay)
	}
}

// connectStatus sends a CONNECT for target (with a Basic credential
// "user:pass" unless auth is empty) and returns the answer's status.
func connectStatus(t *testing.T, w *world, target, auth string) int {
	t.Helper()
	return rawStatus(t, w, fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, authHeader(auth)))
}

func authHeader(auth string) string {
	if auth == "" {
		return ""
	}
	u, p, _ := strings.Cut(auth, ":")
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(u, p)
	return "Proxy-Authorization: " + req.Header.Get("Authorization") + "\r\n"
}

// rawStatus writes raw to the proxy port and returns the status of the
// answer.
func rawStatus(t *testing.T, w *world, raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", w.cli.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: no answer: %v", raw, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHTTPReplyCodes: the concentrator's refusals become the statuses of
// an HTTP proxy, as they become SOCKS5 reply codes: 403 for a destination
// the policy refuses (by address or by a name that resolves to loopback),
// 502 for a name that does not resolve and a port that refuses.
func TestHTTPReplyCodes(t *testing.T) {
	w := newWorld(t, options{links: threeLinks()[:1], private: true})
	tests := []struct {
		name, raw string
		want      int
	}{
		{"private address", fmt.Sprintf("CONNECT %s HTTP/1.1\r\n\r\n", w.dest.addr()), http.StatusForbidden},
		{"loopback by name", "CONNECT localhost:80 HTTP/1.1\r\n\r\n", http.StatusForbidden},
		{"plain, loopback by name", "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n", http.StatusForbidden},
		{"no such name", "CONNECT no-such-host.invalid:80 HTTP/1.1\r\n\r\n", http.StatusBadGateway},
		{"plain, no such name", "GET http://no-such-host.invalid/ HTTP/1.1\r\n\r\n", http.StatusBadGateway},
		{"not a proxy request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
	}
	for _, tt := range tests {
		if got := rawStatus(t, w, tt.raw); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}

	open := newWorld(t, options{links: threeLinks()[:1]})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	if got := connectStatus(t, open, closed, ""); got != http.StatusBadGateway {
		t.Errorf("closed port: status %d, want %d", got, http.StatusBadGateway)
	}
	if got := rawStatus(t, open, "GET http://"+closed+"/ HTTP/1.1\r\n\r\n"); got != http.StatusBadGateway {
		t.Errorf("plain, closed port: status %d, want %d", got, http.StatusBadGateway)
	}
}

// TestHTTPProxyCurl: curl through the proxy port, by https_proxy and
// http_proxy as users set them, and refused with a wrong password.
func TestHTTPProxyCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed: the Go client tests (TestHTTPProxy) cover the same ground")
	}
	w := newWorld(t, options{links: threeLinks()[:1], socksUser: "alice", socksPass: "s3cret"})
	tlsOrigin, plainOrigin := webOrigin(t, true, 1<<20), webOrigin(t, false, 1<<20)
	proxy := "http://alice:s3cret@" + w.cli.SOCKSAddr().String()
	run := func(env, target string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// -k: the origin's certificate is httptest's own.
		cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "-k", target}, args...)...)
		cmd.Env = []string{env, "NO_PROXY=", "no_proxy=", "HOME=" + t.TempDir()}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
		}
		return out.String(), err
	}
	if out, err := run("https_proxy="+proxy, tlsOrigin.URL+"/hello?x=1", "--fail"); err != nil || out != "GET /hello?x=1" {
		t.Fatalf("curl with https_proxy: %q, %v", out, err)
	}
	if out, err := run("https_proxy="+proxy, tlsOrigin.URL+"/big", "--fail"); err != nil || !bytes.Equal([]byte(out), seeded(1<<20, 7)) {
		t.Fatalf("curl with https_proxy, 1 MiB: %d bytes, %v", len(out), err)
	}
	if out, err := run("http_proxy="+proxy, plainOrigin.URL+"/plain", "--fail"); err != nil || out != "GET /plain" {
		t.Fatalf("curl with http_proxy: %q, %v", out, err)
	}
	wrong := "http://alice:nope@" + w.cli.SOCKSAddr().String()
	// curl says "CONNECT tunnel failed, response 407".
	if _, err := run("https_proxy="+wrong, tlsOrigin.URL+"/"); err == nil || !strings.Contains(err.Error(), "407") {
		t.Fatalf("curl with a wrong password: %v, want a 407", err)
	}
	if out, err := run("http_proxy="+wrong, plainOrigin.URL+"/", "-o", "/dev/null", "-w", "%{http_code}"); err != nil || out != "407" {
		t.Fatalf("curl with http_proxy and a wrong password: %q, %v; want 407", out, err)
	}
}

// TestHTTPClasses: the username of Proxy-Authorization picks a flow's
// class as the SOCKS5 username does, and the class reaches the
// concentrator in the OPEN.
func TestHTTPClasses(t *testing.T) {
	pol, err := policyfile.Parse([]byte(`
[tiers.basic]
revenue_usd_per_gb = 2
[[tiers.basic.classes]]
name = "interactive"
users = ["voip"]
p99_latency_ms = 150
[tokens]
"secret-token" = "basic"
`), "toml")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, options{links: threeLinks()[:1], policy: pol})
	sess := w.cli.Session()
	for deadline := time.Now().Add(5 * time.Second); sess.Classify(0, "voip") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the tier never reached the client")
		}
	}
	ss := w.srv.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	for _, tt := range []struct {
		auth  string
		class int
	}{{"voip:x", 1}, {"browser:x", 0}, {"", 0}} {
		conn, err := net.Dial("tcp", w.cli.SOCKSAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\n%s\r\n", w.dest.addr(), authHeader(tt.auth))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT as %q: %v, %v", tt.auth, resp, err)
		}
		// The tunnel is up: the concentrator holds its flow, by class.
		io.WriteString(conn, "ping")
		if got := make([]byte, 4); func() bool { _, err := io.ReadFull(br, got); return err != nil || string(got) != "ping" }() {
			t.Fatalf("CONNECT as %q: the echo did not come back", tt.auth)
		}
		if n := ss[0].FlowsByClass()[tt.class]; n != 1 {
			t.Errorf("CONNECT as %q: %d flows of class %d at the concentrator, want 1 (%v)", tt.auth, n, tt.class, ss[0].FlowsByClass())
		}
		conn.Close()
		for deadline := time.Now().Add(5 * time.Second); len(ss[0].FlowsByClass()) > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the flow of %q outlived its tunnel: %v", tt.auth, ss[0].FlowsByClass())
			}
		}
	}
}
