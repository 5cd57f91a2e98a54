package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"braid/internal/cmdtest"
	"braid/internal/netx"
	"braid/internal/socks5"
	"braid/internal/status"
)

// nowhere returns a loopback UDP address nothing listens on.
func nowhere(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func testConfig(t *testing.T) Config {
	return Config{Server: nowhere(t), Pin: [32]byte{1}, Token: "t", SOCKS: "127.0.0.1:0",
		Paths: []PathConfig{{Name: "lo", Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")}}}}
}

// busy returns a loopback TCP address that is taken until the test ends.
func busy(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestStartWithoutConcentrator: with nothing at the concentrator's
// address, Start returns at once and serves: SOCKS requests wait for a
// session, then fail "network unreachable"; the status page says it is
// connecting; Close stops the join in progress.
func TestStartWithoutConcentrator(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.Status = "127.0.0.1:0"
	cfg.ConnectTimeout = 300 * time.Millisecond
	begin := time.Now()
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("Start took %v: it waited for the concentrator", d)
	}
	conn, err := net.Dial("tcp", c.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	asked := time.Now()
	_, err = socks5.Connect(conn, nil, socks5.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 80})
	var re *socks5.ReplyError
	if !errors.As(err, &re) || re.Code != socks5.NetworkUnreachable {
		t.Fatalf("SOCKS request with no session: %v, want reply %v", err, socks5.NetworkUnreachable)
	}
	if waited := time.Since(asked); waited < 250*time.Millisecond {
		t.Fatalf("the request was answered after %v; it should wait for a session", waited)
	}
	resp, err := http.Get("http://" + c.StatusAddr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var doc status.Client
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || doc.Session != "connecting" || doc.Paths == nil || len(doc.Paths) != 0 || doc.Sessions != 0 {
		t.Fatalf("status with no session: %+v, %v", doc, err)
	}
	select {
	case <-c.Done():
		t.Fatalf("the client ended: %v", c.Err())
	default:
	}
	closed := time.Now()
	c.Close()
	if d := time.Since(closed); d > 2*time.Second {
		t.Fatalf("Close took %v while joining", d)
	}
	if c.Err() != nil {
		t.Fatalf("Err after Close: %v", c.Err())
	}
	if c.Session() != nil {
		t.Fatal("Session returned a session that never was")
	}
	if st := c.Status(); st.Session != "stopped" {
		t.Fatalf("status after Close: %+v", st)
	}
}

// TestSessionWaitsForFirst: Session blocks until there is one, or until
// the client ends; WaitSession gives up with its context.
func TestSessionWaitsForFirst(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, err := Start(context.Background(), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if s, err := c.WaitSession(ctx); s != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSession with no concentrator: %v, %v", s, err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.Close()
	}()
	if s := c.Session(); s != nil {
		t.Fatalf("Session: %v, want nil once the client closed without one", s)
	}
}

// TestStartUndoes: a Start that fails leaves nothing running. With
// automatic paths (--path auto) that includes the interface watcher,
// whichever listener could not be opened.
func TestStartUndoes(t *testing.T) {
	if !netx.DeviceBind {
		t.Skip("automatic paths need SO_BINDTODEVICE")
	}
	taken := busy(t)
	for _, field := range []string{"socks", "status"} {
		t.Run(field, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			cfg := testConfig(t)
			cfg.Paths, cfg.AutoPaths = nil, true
			cfg.Status = "127.0.0.1:0"
			if field == "socks" {
				cfg.SOCKS = taken
			} else {
				cfg.Status = taken
			}
			c, err := Start(context.Background(), cfg)
			var le *ListenError
			if c != nil || !errors.As(err, &le) || le.Field != field {
				t.Fatalf("Start: %v, %v; want no client and a ListenError on %s", c, err, field)
			}
		})
	}
}

// TestListeners: an address the user gave that cannot be bound fails
// Start with a ListenError naming its field; the default status address
// (StatusOptional) is only a warning.
func TestListeners(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	taken := busy(t)
	for _, tc := range []struct {
		name     string
		mutate   func(*Config)
		field    string // "" for a client that runs
		warnLike string
	}{
		{"socks taken", func(c *Config) { c.SOCKS = taken }, "socks", ""},
		{"socks taken, status optional", func(c *Config) { c.SOCKS = taken; c.Status = "127.0.0.1:0"; c.StatusOptional = true }, "socks", ""},
		{"status taken", func(c *Config) { c.Status = taken }, "status", ""},
		{"optional status taken", func(c *Config) { c.Status = taken; c.StatusOptional = true }, "", "status page off"},
		{"optional status free", func(c *Config) { c.Status = "127.0.0.1:0"; c.StatusOptional = true }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs cmdtest.Buffer
			cfg := testConfig(t)
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			tc.mutate(&cfg)
			c, err := Start(context.Background(), cfg)
			if tc.field != "" {
				var le *ListenError
				if !errors.As(err, &le) || le.Field != tc.field || le.Addr != taken {
					t.Fatalf("Start: %v, want a ListenError on %s %s", err, tc.field, taken)
				}
				if c != nil {
					t.Fatal("Start returned a client with its error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.warnLike != "" {
				if c.StatusAddr() != nil {
					t.Fatalf("status on %v although its address was taken", c.StatusAddr())
				}
				if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, tc.warnLike) {
					t.Fatalf("no warning about the status page: %q", out)
				}
			} else if c.StatusAddr() == nil {
				t.Fatal("no status page on a free address")
			}
		})
	}
}

// TestHTTPOnSOCKSPort: the SOCKS port answers HTTP too. With no session a
// CONNECT waits for one, then gets 502 (network unreachable, as SOCKS5
// answers); so does a UDP ASSOCIATE.
func TestHTTPOnSOCKSPort(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.ConnectTimeout = 300 * time.Millisecond
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := net.Dial("tcp", c.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("CONNECT with no session: %s, want 502", resp.Status)
	}

	uc, err := net.Dial("tcp", c.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(10 * time.Second))
	// UDP ASSOCIATE waits for a session as CONNECT does, and with none
	// is answered network unreachable.
	_, err = socks5.Associate(uc, nil, socks5.Addr{})
	var re *socks5.ReplyError
	if !errors.As(err, &re) || re.Code != socks5.NetworkUnreachable {
		t.Fatalf("UDP ASSOCIATE: %v, want reply %v", err, socks5.NetworkUnreachable)
	}
}
