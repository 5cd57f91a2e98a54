package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/cmdtest"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/transport"
	"braid/transport/wire"
)

func TestPublic(t *testing.T) {
	cases := map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2001:4860:4860::8888": true,
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.1.1": false, "224.0.0.1": false, "239.1.1.1": false, "0.0.0.0": false,
		"0.1.2.3": false, "255.255.255.255": false, "100.64.0.1": false, "::1": false,
		"fe80::1": false, "fc00::1": false, "ff02::1": false, "::": false,
		"::ffff:127.0.0.1": false, "::ffff:8.8.8.8": true,
	}
	for s, want := range cases {
		if got := Public(netip.MustParseAddr(s)); got != want {
			t.Errorf("Public(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cert, _, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"t"}}
	cases := map[string]func(c *Config){
		"listen": func(c *Config) { c.Listen = "" },
		"cert":   func(c *Config) { c.Cert.Certificate = nil },
		"token":  func(c *Config) { c.Tokens = nil },

		"max-sessions":           func(c *Config) { c.MaxSessions = -1 },
		"max-sessions-per-token": func(c *Config) { c.MaxSessionsPerToken = -1 },
		"max-handshakes":         func(c *Config) { c.MaxHandshakes = -1 },
		"retry-handshakes":       func(c *Config) { c.RetryHandshakes = 300 }, // above MaxHandshakes' 256
	}
	for field, mutate := range cases {
		c := good
		mutate(&c)
		_, err := Start(c)
		ce, ok := err.(*ConfigError)
		if !ok || ce.Field != field {
			t.Errorf("%s: got %v, want a ConfigError on %s", field, err, field)
		}
	}
}

// TestRefusalsLogged checks the concentrator's side of a refused client:
// one line for a bad token, one for a client that rejects its key.
func TestRefusalsLogged(t *testing.T) {
	cert, pinStr, _ := pki.SelfSigned(nil)
	pin, _ := pki.ParsePin(pinStr)
	var logs cmdtest.Buffer
	srv, err := Start(Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"good"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dial := func(pin [32]byte) transport.PathDialer {
		return transport.PathDialer{Info: wire.PathInfo{Name: "a"}, Dial: func(ctx context.Context) (*quic.Conn, error) {
			return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := transport.Dial(ctx, transport.Config{}, "bad", []transport.PathDialer{dial(pin)}); err == nil {
		t.Fatal("bad token accepted")
	}
	bad := pin
	bad[3] ^= 1
	if _, err := transport.Dial(ctx, transport.Config{}, "good", []transport.PathDialer{dial(bad)}); err == nil {
		t.Fatal("bad pin accepted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "did not complete") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{"refused client: bad token", "did not complete the TLS handshake"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want one log line with %q, got:\n%s", want, out)
		}
	}
}

// TestDialReplies checks which SOCKS reply each dial outcome becomes; the
// dialer and resolver are stand-ins, so no packet leaves the machine.
func TestDialReplies(t *testing.T) {
	dialErr := func(err error) func(context.Context, string, string) (net.Conn, error) {
		return func(context.Context, string, string) (net.Conn, error) { return nil, err }
	}
	timeout := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)}
	cases := []struct {
		name    string
		dest    socks5.Addr
		dial    func(context.Context, string, string) (net.Conn, error)
		resolve func(context.Context, string) ([]net.IP, error)
		private bool
		want    socks5.Reply
	}{
		{"refused", socks5.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 1},
			dialErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), nil, true, socks5.ConnectionRefused},
		{"network unreachable", socks5.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 1},
			dialErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}), nil, true, socks5.NetworkUnreachable},
		{"host unreachable", socks5.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 1},
			dialErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}), nil, true, socks5.HostUnreachable},
		{"timeout", socks5.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 1},
			dialErr(context.DeadlineExceeded), nil, true, socks5.TTLExpired},
		{"syscall timeout", socks5.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 1},
			dialErr(timeout), nil, true, socks5.TTLExpired},
		{"no such host", socks5.Addr{Name: "nowhere.invalid", Port: 1}, nil,
			func(context.Context, string) ([]net.IP, error) {
				return nil, &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}
			}, true, socks5.HostUnreachable},
		{"name resolving to loopback", socks5.Addr{Name: "sneaky.example", Port: 1}, nil,
			func(context.Context, string) ([]net.IP, error) { return []net.IP{net.IPv4(127, 0, 0, 1)}, nil },
			false, socks5.NotAllowed},
		{"private address", socks5.Addr{IP: netip.MustParseAddr("10.0.0.1"), Port: 1}, nil, nil, false, socks5.NotAllowed},
		// AllowPrivate does not open the concentrator's own addresses,
		// loopback among them, nor IPv4 embedded in IPv6.
		{"loopback with private allowed", socks5.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 1}, nil, nil, true, socks5.NotAllowed},
		{"IPv4-compatible loopback", socks5.Addr{IP: netip.MustParseAddr("::127.0.0.1"), Port: 1}, nil, nil, false, socks5.NotAllowed},
		{"NAT64 loopback", socks5.Addr{IP: netip.MustParseAddr("64:ff9b::7f00:1"), Port: 1}, nil, nil, false, socks5.NotAllowed},
		{"NAT64 loopback with private allowed", socks5.Addr{IP: netip.MustParseAddr("64:ff9b::7f00:1"), Port: 1}, nil, nil, true, socks5.NotAllowed},
		{"6to4 private", socks5.Addr{IP: netip.MustParseAddr("2002:a00:1::1"), Port: 1}, nil, nil, false, socks5.NotAllowed},
	}
	for _, c := range cases {
		s := &Server{cfg: Config{AllowPrivate: c.private, Dial: c.dial, Resolve: c.resolve}, log: slog.New(slog.DiscardHandler)}
		if s.cfg.Dial == nil {
			s.cfg.Dial = dialErr(errors.New("must not dial"))
		}
		if s.cfg.Resolve == nil {
			s.cfg.Resolve = func(context.Context, string) ([]net.IP, error) { return nil, errors.New("must not resolve") }
		}
		conn, got := s.dial(context.Background(), c.dest)
		if conn != nil || got != c.want {
			t.Errorf("%s: reply %v, want %v", c.name, got, c.want)
		}
	}
}

// A running concentrator refuses its own interface addresses and the
// operator's extra ones even with private destinations allowed, unless
// AllowOwn is set.
func TestOwnAddressesRefused(t *testing.T) {
	cert, _, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	var own netip.Addr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() {
			own = p.Addr()
			break
		}
	}
	extra := netip.MustParseAddr("198.51.100.7")
	dialed := errors.New("dialed")
	for _, allowOwn := range []bool{false, true} {
		srv, err := Start(Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"t"}, AllowPrivate: true,
			AllowOwn: allowOwn, OwnAddrs: []netip.Addr{extra},
			Dial: func(context.Context, string, string) (net.Conn, error) { return nil, dialed }})
		if err != nil {
			t.Fatal(err)
		}
		dests := []netip.Addr{extra, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:127.0.0.1")}
		if own.IsValid() {
			dests = append(dests, own)
		}
		for _, ip := range dests {
			_, code := srv.dial(context.Background(), socks5.Addr{IP: ip, Port: 80})
			if want := socks5.NotAllowed; !allowOwn && code != want {
				t.Errorf("own address %v: reply %v, want %v", ip, code, want)
			}
			if allowOwn && code == socks5.NotAllowed {
				t.Errorf("own address %v refused with AllowOwn", ip)
			}
		}
		srv.Close()
	}
	if !own.IsValid() {
		t.Log("no non-loopback interface address here: checked loopback and the extra address only")
	}
}
