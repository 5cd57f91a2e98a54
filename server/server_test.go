package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/pki"
	"braid/transport"
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

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRefusalsLogged checks the concentrator's side of a refused client:
// one line for a bad token, one for a client that rejects its key.
func TestRefusalsLogged(t *testing.T) {
	cert, pinStr, _ := pki.SelfSigned(nil)
	pin, _ := pki.ParsePin(pinStr)
	var logs syncBuffer
	srv, err := Start(Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"good"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dial := func(pin [32]byte) transport.PathDialer {
		return transport.PathDialer{Info: transport.PathInfo{Name: "a"}, Dial: func(ctx context.Context) (*quic.Conn, error) {
			return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, transport.ALPN), transport.QUICConfig())
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
	for !strings.Contains(logs.String(), "not completed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{"refused client: bad token", "TLS handshake not completed"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want one log line with %q, got:\n%s", want, out)
		}
	}
}
