package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"braid/internal/socks5"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tcpFlow stands in for a braid flow: a TCP connection to the destination.
type tcpFlow struct{ *net.TCPConn }

// SetReadDeadline keeps Flow's contract: a deadline already past makes a
// read that would wait time out, while data or EOF that are there are
// read (a TCPConn times out at once either way).
func (f tcpFlow) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		t = time.Now().Add(5 * time.Millisecond)
	}
	return f.TCPConn.SetReadDeadline(t)
}

func (f tcpFlow) Reset() {
	f.SetLinger(0)
	f.Close()
}

// opener dials destinations on loopback and records what it was asked.
type opener struct {
	mu    sync.Mutex
	opens []string // dest|user
	fail  error    // returned instead of dialing, when set
}

func (o *opener) Open(ctx context.Context, dest socks5.Addr, user string) (Flow, error) {
	o.mu.Lock()
	o.opens = append(o.opens, dest.String()+"|"+user)
	fail := o.fail
	o.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", dest.String())
	if err != nil {
		return nil, &socks5.ReplyError{Code: socks5.ReplyForError(err)}
	}
	return tcpFlow{c.(*net.TCPConn)}, nil
}

func (o *opener) asked() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.opens...)
}

// startProxy serves s on a loopback listener, as the client does: the
// first byte read, then ServeConn.
func startProxy(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				var first [1]byte
				if _, err := io.ReadFull(c, first[:]); err != nil {
					c.Close()
					return
				}
				s.ServeConn(context.Background(), c, first[:])
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func proxyClient(proxy, user, pass string, tlsConf *tls.Config) *http.Client {
	u := &url.URL{Scheme: "http", Host: proxy}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: tlsConf}}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", u, err)
	}
	return resp, string(b)
}

// origin answers with what it saw of the request.
func origin(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not reach the client")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "kept")
		var seen []string
		for _, k := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Listed", "Keep-Alive", "User-Agent"} {
			if v, ok := r.Header[k]; ok {
				seen = append(seen, fmt.Sprintf("%s=%q", k, v))
			}
		}
		fmt.Fprintf(w, "%s %s host=%s body=%q proto=%s hop=%v", r.Method, r.RequestURI, r.Host, body, r.Proto, seen)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPlainHTTP(t *testing.T) {
	o := &opener{}
	proxy := startProxy(t, &Server{Opener: o})
	srv := origin(t)
	c := proxyClient(proxy, "", "", nil)
	defer c.CloseIdleConnections()

	req, _ := http.NewRequest("GET", srv.URL+"/a/b?x=1", nil)
	req.Header.Set("Connection", "X-Listed")
	req.Header.Set("X-Listed", "hop")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("User-Agent", "tester")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`GET /a/b?x=1 host=%s body="" proto=HTTP/1.1 hop=[User-Agent=["tester"]]`, srv.Listener.Addr())
	if string(b) != want {
		t.Fatalf("origin saw %q\nwant      %q", b, want)
	}
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-End") != "kept" {
		t.Fatalf("response header %v: hop-by-hop fields kept or end-to-end ones lost", resp.Header)
	}

	// POST with a length, a chunked body, and 100-continue; all over the
	// same proxy connection and the same flow.
	resp, err = c.Post(srv.URL+"/post", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), `POST /post host=`) || !strings.Contains(string(b), `body="hello"`) {
		t.Fatalf("POST: origin saw %q", b)
	}
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte("chunk")); pw.Write([]byte("ed")); pw.Close() }()
	resp, err = c.Post(srv.URL+"/chunked", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `body="chunked"`) {
		t.Fatalf("chunked POST: origin saw %q", b)
	}
	ec := proxyClient(proxy, "", "", nil)
	ec.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
	req, _ = http.NewRequest("PUT", srv.URL+"/expect", strings.NewReader("after 100"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err = ec.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	ec.CloseIdleConnections()
	if !strings.Contains(string(b), `body="after 100"`) {
		t.Fatalf("100-continue PUT: origin saw %q", b)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("100-continue PUT took %v: the 100 Continue did not come through", d)
	}

	// HEAD keeps its Content-Length and has no body.
	resp, err = c.Head(srv.URL + "/head")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v", resp.Status)
	}

	// Another origin: the same proxy connection, a new flow.
	srv2 := origin(t)
	if _, body := get(t, c, srv2.URL+"/other"); !strings.HasPrefix(body, "GET /other host="+srv2.Listener.Addr().String()) {
		t.Fatalf("second origin saw %q", body)
	}
	if _, body := get(t, c, srv.URL+"/back"); !strings.HasPrefix(body, "GET /back ") {
		t.Fatalf("back to the first origin: %q", body)
	}
	want1, want2 := srv.Listener.Addr().String()+"|", srv2.Listener.Addr().String()+"|"
	if got := o.asked(); len(got) != 4 || got[0] != want1 || got[1] != want1 || got[2] != want2 || got[3] != want1 {
		// One flow for the first five requests on c's connection (ec had
		// its own), one per change of origin.
		t.Fatalf("flows opened: %q, want [%s %s %s %s]", got, want1, want1, want2, want1)
	}
}

// TestKeptFlowClosedByOrigin: an origin that closes its idle connection
// does not cost the next request: the proxy sees the flow closed and
// opens another.
func TestKeptFlowClosedByOrigin(t *testing.T) {
	o := &opener{}
	proxy := startProxy(t, &Server{Opener: o})
	srv := origin(t)
	c := proxyClient(proxy, "", "", nil)
	defer c.CloseIdleConnections()
	get(t, c, srv.URL+"/1")
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // the origin's FIN reaches the proxy
	if resp, body := get(t, c, srv.URL+"/2"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /2 ") {
		t.Fatalf("after the origin closed: %v %q", resp.Status, body)
	}
	if n := len(o.asked()); n != 2 {
		t.Fatalf("%d flows opened, want 2", n)
	}
}

func TestConnect(t *testing.T) {
	o := &opener{}
	proxy := startProxy(t, &Server{Opener: o, Creds: &socks5.Credentials{User: "alice", Pass: "s3cret"}})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s", r.URL.Path)
	}))
	defer srv.Close()
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c := proxyClient(proxy, "alice", "s3cret", tlsConf)
	defer c.CloseIdleConnections()
	if _, body := get(t, c, srv.URL+"/secure"); body != "tls /secure" {
		t.Fatalf("through CONNECT: %q", body)
	}
	if got := o.asked(); len(got) != 1 || got[0] != srv.Listener.Addr().String()+"|alice" {
		t.Fatalf("flows opened: %q", got)
	}
	for _, cred := range [][2]string{{"alice", "wrong"}, {"bob", "s3cret"}, {"", ""}} {
		bad := proxyClient(proxy, cred[0], cred[1], tlsConf)
		_, err := bad.Get(srv.URL + "/")
		bad.CloseIdleConnections()
		if err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
			t.Fatalf("CONNECT as %q/%q: %v, want 407", cred[0], cred[1], err)
		}
	}
	if n := len(o.asked()); n != 1 {
		t.Fatalf("refused requests opened flows: %d opens", n)
	}
}

func TestAuth(t *testing.T) {
	srv := origin(t)
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		creds  *socks5.Credentials
		header string // Proxy-Authorization; "-" for none
		status int
		user   string
	}{
		{"none asked, none given", nil, "-", 200, ""},
		{"none asked, some given", nil, basic("x:y"), 200, ""},
		{"right", &socks5.Credentials{User: "alice", Pass: "s3cret"}, basic("alice:s3cret"), 200, "alice"},
		{"scheme in any case", &socks5.Credentials{User: "alice", Pass: "s3cret"}, "bAsIc " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")), 200, "alice"},
		{"wrong password", &socks5.Credentials{User: "alice", Pass: "s3cret"}, basic("alice:s3cre"), 407, ""},
		{"wrong user", &socks5.Credentials{User: "alice", Pass: "s3cret"}, basic("alicf:s3cret"), 407, ""},
		{"missing", &socks5.Credentials{User: "alice", Pass: "s3cret"}, "-", 407, ""},
		{"not base64", &socks5.Credentials{User: "alice", Pass: "s3cret"}, "Basic !!!", 407, ""},
		{"no colon", &socks5.Credentials{User: "alice", Pass: "s3cret"}, basic("alices3cret"), 407, ""},
		{"other scheme", &socks5.Credentials{User: "alice", Pass: "s3cret"}, "Bearer abc", 407, ""},
		{"any user: a label", &socks5.Credentials{AnyUser: true}, basic("voip:x"), 200, "voip"},
		{"any user: none given", &socks5.Credentials{AnyUser: true}, "-", 200, ""},
		{"any user: over 255 bytes", &socks5.Credentials{AnyUser: true}, basic(strings.Repeat("u", 256) + ":x"), 407, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &opener{}
			proxy := startProxy(t, &Server{Opener: o, Creds: tt.creds})
			c := proxyClient(proxy, "", "", nil)
			defer c.CloseIdleConnections()
			req, _ := http.NewRequest("GET", srv.URL+"/", nil)
			if tt.header != "-" {
				// Transport.ProxyConnectHeader is for CONNECT only; for a
				// plain request the header goes with the request.
				req.Header.Set("Proxy-Authorization", tt.header)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 407 {
				if got := resp.Header.Get("Proxy-Authenticate"); got != `Basic realm="braid"` {
					t.Fatalf("Proxy-Authenticate %q", got)
				}
				if len(o.asked()) != 0 {
					t.Fatal("a refused request opened a flow")
				}
				return
			}
			if got := o.asked(); len(got) != 1 || !strings.HasSuffix(got[0], "|"+tt.user) {
				t.Fatalf("flows opened: %q, want user %q", got, tt.user)
			}
		})
	}
}

func TestStatusFor(t *testing.T) {
	tests := []struct {
		code socks5.Reply
		want int
	}{
		{socks5.Succeeded, 200},
		{socks5.NotAllowed, 403},
		{socks5.TTLExpired, 504},
		{socks5.ConnectionRefused, 502},
		{socks5.HostUnreachable, 502},
		{socks5.NetworkUnreachable, 502},
		{socks5.GeneralFailure, 502},
		{socks5.AddressNotSupported, 502},
	}
	for _, tt := range tests {
		if got := StatusFor(tt.code); got != tt.want {
			t.Errorf("StatusFor(%v) = %d, want %d", tt.code, got, tt.want)
		}
	}
}

// TestOpenRefused: a refused flow is answered with the mapped status,
// for CONNECT and plain requests alike.
func TestOpenRefused(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{&socks5.ReplyError{Code: socks5.NotAllowed}, 403},
		{&socks5.ReplyError{Code: socks5.TTLExpired}, 504},
		{&socks5.ReplyError{Code: socks5.ConnectionRefused}, 502},
		{errors.New("anything else"), 502},
	} {
		proxy := startProxy(t, &Server{Opener: &opener{fail: tt.err}})
		for _, req := range []string{
			"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
		} {
			if got := rawStatus(t, proxy, req); got != tt.want {
				t.Errorf("%v, %q: status %d, want %d", tt.err, req[:8], got, tt.want)
			}
		}
	}
}

// rawStatus sends raw bytes to the proxy and returns the answer's status,
// 0 when the proxy closed without one.
func rawStatus(t *testing.T, proxy, raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	go conn.Write([]byte(raw)) // may block on a large input the proxy stops reading
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestBadRequests(t *testing.T) {
	o := &opener{}
	proxy := startProxy(t, &Server{Opener: o, HeaderTimeout: 300 * time.Millisecond})
	huge := "GET http://example.com/ HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"
	tests := []struct {
		name, in string
		want     int
	}{
		{"garbage", "\x16\x03\x01 not http at all\r\n\r\n", 400},
		{"origin-form", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 400},
		{"https absolute", "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400},
		{"connect without port", "CONNECT example.com HTTP/1.1\r\n\r\n", 400},
		{"connect port 0", "CONNECT example.com:0 HTTP/1.1\r\n\r\n", 400},
		{"connect port too big", "CONNECT example.com:65536 HTTP/1.1\r\n\r\n", 400},
		{"connect path", "CONNECT /x HTTP/1.1\r\n\r\n", 400},
		{"zoned address", "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n", 400},
		{"bad header line", "GET http://example.com/ HTTP/1.1\r\nno colon here\r\n\r\n", 400},
		{"two lengths", "POST http://example.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"header over 64 KiB", huge, 431},
		{"cut header", "GET http://example.com/ HTTP/1.1\r\nHost: exa", 0},
	}
	for _, tt := range tests {
		if got := rawStatus(t, proxy, tt.in); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
	if got := o.asked(); len(got) != 0 {
		t.Fatalf("bad requests opened flows: %q", got)
	}
}

// TestHeaderTimeout: a client that starts a request and stalls is closed
// after the header timeout, with no answer.
func TestHeaderTimeout(t *testing.T) {
	proxy := startProxy(t, &Server{Opener: &opener{}, HeaderTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET http://example.com/ HTTP/1.1\r\nHo"))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil || len(b) != 0 {
		t.Fatalf("stalled request: read %q, %v; want a close and nothing", b, err)
	}
}

// TestTunnelEarlyData: bytes sent right behind the CONNECT, before its
// answer, are the tunnel's first.
func TestTunnelEarlyData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	proxy := startProxy(t, &Server{Opener: &opener{}})
	conn, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\n\r\nearly bytes", ln.Addr())
	br := bufio.NewReader(conn)
	line, _ := br.ReadString('\n')
	if line != "HTTP/1.1 200 Connection established\r\n" {
		t.Fatalf("answer %q", line)
	}
	conn.Write([]byte(" and later ones"))
	conn.(*net.TCPConn).CloseWrite()
	if s := <-got; s != "early bytes and later ones" {
		t.Fatalf("destination got %q", s)
	}
}

func TestTarget(t *testing.T) {
	tests := []struct {
		line string
		want string // dest, or "error"
	}{
		{"GET http://example.com/ HTTP/1.1", "example.com:80"},
		{"GET http://example.com:8080/x HTTP/1.1", "example.com:8080"},
		{"GET http://user:pw@example.com/ HTTP/1.1", "example.com:80"},
		{"GET http://192.0.2.1/ HTTP/1.1", "192.0.2.1:80"},
		{"GET http://[2001:db8::1]:81/ HTTP/1.1", "[2001:db8::1]:81"},
		{"GET HTTP://EXAMPLE.com/ HTTP/1.1", "EXAMPLE.com:80"},
		{"CONNECT example.com:443 HTTP/1.1", "example.com:443"},
		{"CONNECT [::1]:443 HTTP/1.1", "[::1]:443"},
		{"GET ftp://example.com/ HTTP/1.1", "error"},
		{"GET http:///nohost HTTP/1.1", "error"},
		{"GET http://example.com:x/ HTTP/1.1", "error"},
		{"CONNECT " + strings.Repeat("a", 256) + ":443 HTTP/1.1", "error"},
	}
	for _, tt := range tests {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.line + "\r\nHost: h\r\n\r\n")))
		if err != nil {
			if tt.want != "error" {
				t.Errorf("%q: ReadRequest: %v", tt.line, err)
			}
			continue
		}
		a, err := target(req, req.Method == "CONNECT")
		got := a.String()
		if err != nil {
			got = "error"
		}
		if got != tt.want {
			t.Errorf("%q: target %s (%v), want %s", tt.line, got, err, tt.want)
		}
	}
}

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":          {"X-A, x-b", "close"},
		"Proxy-Connection":    {"X-C"},
		"X-A":                 {"1"},
		"X-B":                 {"2"},
		"X-C":                 {"3"},
		"Keep-Alive":          {"timeout=5"},
		"Te":                  {"trailers"},
		"Upgrade":             {"websocket"},
		"Proxy-Authorization": {"Basic x"},
		"Proxy-Authenticate":  {"Basic"},
		"X-End":               {"kept"},
	}
	removeHopByHop(h)
	if len(h) != 1 || h.Get("X-End") != "kept" {
		t.Fatalf("left %v, want only X-End", h)
	}
}
