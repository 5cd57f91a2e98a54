package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"braid/internal/cmdtest"
	"braid/internal/socks5"
)

// A refused destination logs a line that names the flag allowing it:
// the first refusal at once, later ones at most every refusedLogEvery.
func TestRefusedDestinationNamesFlag(t *testing.T) {
	for _, c := range []struct {
		ip, want, not string
		private       bool
	}{
		{"10.1.2.3", "--allow-private", "--allow-own", false},
		{"169.254.1.1", "--allow-private", "--allow-own", false},
		{"127.0.0.1", "--allow-private and --allow-own", "", false},
		{"127.0.0.1", "--allow-own", "--allow-private", true},
	} {
		var logs cmdtest.Buffer
		s := &Server{cfg: Config{AllowPrivate: c.private, Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("must not dial") },
			Resolve: func(context.Context, string) ([]net.IP, error) { return nil, errors.New("must not resolve") }},
			log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
		dest := socks5.Addr{IP: netip.MustParseAddr(c.ip), Port: 80}
		for range 3 {
			if conn, got := s.dial(context.Background(), dest); conn != nil || got != socks5.NotAllowed {
				t.Fatalf("%s: reply %v", c.ip, got)
			}
		}
		out := logs.String()
		if n := strings.Count(out, "\n"); n != 1 {
			t.Errorf("%s (private allowed %v): %d lines for 3 refusals in a row, want 1:\n%s", c.ip, c.private, n, out)
		}
		if !strings.Contains(out, "level=INFO") || !strings.Contains(out, c.want) || (c.not != "" && strings.Contains(out, c.not)) ||
			!strings.Contains(out, "dest="+c.ip+":80") {
			t.Errorf("%s (private allowed %v): line %q does not name %s (only)", c.ip, c.private, out, c.want)
		}
	}
}
