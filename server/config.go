// Package server is braid's concentrator: it accepts QUIC connections from
// clients' paths, authenticates them, keeps the session registry, dials
// each flow's destination and relays both ways.
package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"braid/internal/fielderr"
	"braid/internal/tier"
	"braid/transport"
)

// Config is everything the concentrator needs; cmd/braid fills it from
// flags and a config file.
type Config struct {
	// Listen is the UDP HOST:PORT to listen on.
	Listen string
	// Cert is the concentrator's certificate; clients pin its key.
	Cert tls.Certificate
	// Tokens are the accepted user tokens (with those Policy lists).
	Tokens []string
	// Policy maps tokens to tiers (revenue per GB, an SLA per class) and
	// sets default path prices by medium; nil: no tiers, every session
	// plans with empty terms.
	Policy *tier.Policy
	// Status is the HOST:PORT where GET /status serves every session's
	// paths as JSON; empty means none. It lists no secrets, but it does
	// show clients' traffic: keep it on loopback or a management network.
	Status string
	// AllowPrivate lets flows reach private, link-local, multicast and
	// other special-purpose destinations (internal/destpolicy); the
	// concentrator's own addresses, loopback among them, stay refused
	// unless AllowOwn is set too.
	AllowPrivate bool
	// AllowOwn lets flows reach the concentrator host's own addresses,
	// loopback included: whatever listens on the host, even firewalled
	// from outside, becomes reachable by every client.
	AllowOwn bool
	// OwnAddrs are more addresses of the concentrator's own that are on
	// none of its interfaces (a public address behind 1:1 NAT), refused
	// as destinations like those of its interfaces.
	OwnAddrs []netip.Addr
	// MemoryBudget bounds the flow bytes all sessions together hold:
	// blocks sent and not yet acknowledged, and the flows' receive
	// windows (default 192 MiB; transport.Budget).
	MemoryBudget int64
	// DrainTimeout is how long Drain lets live flows go on, for
	// cmd/braid (Drain itself takes a context).
	DrainTimeout time.Duration
	// DialTimeout bounds dialing a destination (default 10 s).
	DialTimeout time.Duration
	// MaxSessions bounds concurrent sessions, all tokens together
	// (default 1024).
	MaxSessions int
	// MaxSessionsPerToken bounds each token's concurrent sessions
	// (default 8), so that one token cannot take every session; a tier's
	// max_sessions in Policy wins for the tokens of that tier.
	MaxSessionsPerToken int
	// RetryHandshakes is the number of QUIC handshakes in progress from
	// which every new connection must first prove its source address
	// with a stateless Retry (one more round trip) before the
	// concentrator keeps any state for it (default 32).
	RetryHandshakes int
	// MaxHandshakes bounds the QUIC handshakes in progress (default
	// 256); beyond it new connections are refused statelessly
	// (CONNECTION_REFUSED) until some finish.
	MaxHandshakes int
	// Transport tunes coding, windows and probing; MaxFlows and
	// SessionWindow are the per-session limits.
	Transport transport.Config
	// Accounting, when set, receives usage records per tenant, tier,
	// class and path every AccountingInterval and as each session ends
	// (account.go); AccountingID names this concentrator in them
	// (default: the host's name).
	Accounting         UsageSink
	AccountingID       string
	AccountingInterval time.Duration // default 10 s
	// Logger receives the concentrator's logs; nil discards them.
	Logger *slog.Logger
	// Dial dials destinations; nil means a net.Dialer. Tests replace it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolve resolves destination names; nil means net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
}

// ConfigError names the field of a Config that is wrong and why: Field is
// the setting's flag name without its dashes ("max-sessions"), or
// "transport" for the Transport config, whose own field begins Reason.
type ConfigError = fielderr.Error

// Fill sets defaults.
func (c *Config) Fill() {
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 1024
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = 192 << 20
	}
	if c.MaxSessionsPerToken == 0 {
		c.MaxSessionsPerToken = 8
	}
	if c.RetryHandshakes == 0 {
		c.RetryHandshakes = 32
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AccountingInterval == 0 {
		c.AccountingInterval = 10 * time.Second
	}
	if c.AccountingID == "" {
		c.AccountingID, _ = os.Hostname()
	}
	if c.Dial == nil {
		d := &net.Dialer{}
		c.Dial = d.DialContext
	}
	if c.Resolve == nil {
		c.Resolve = func(ctx context.Context, host string) ([]net.IP, error) {
			return net.DefaultResolver.LookupIP(ctx, "ip", host)
		}
	}
	c.Transport.Fill()
}

// Validate checks a filled Config.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return fielderr.New("listen", "is required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fielderr.Errorf("listen", "%q is not HOST:PORT", c.Listen)
	}
	if len(c.Cert.Certificate) == 0 {
		return fielderr.New("cert", "is required (braid keygen writes one)")
	}
	if len(c.Tokens) == 0 && (c.Policy == nil || len(c.Policy.Tokens) == 0) {
		return fielderr.New("token", "at least one token is required")
	}
	for _, t := range c.Tokens {
		if t == "" || len(t) > 255 {
			return fielderr.New("token", "tokens are 1 to 255 bytes")
		}
	}
	if c.AccountingInterval < 0 {
		return fielderr.New("accounting-interval", "must not be negative")
	}
	if c.DialTimeout < 0 {
		return fielderr.New("dial-timeout", "must not be negative")
	}
	if c.MaxSessions < 1 {
		return fielderr.New("max-sessions", "must be at least 1")
	}
	if c.MemoryBudget < 16<<20 {
		return fielderr.New("memory-budget", "must be at least 16 MiB")
	}
	if c.MaxSessionsPerToken < 1 {
		return fielderr.New("max-sessions-per-token", "must be at least 1")
	}
	if c.MaxHandshakes < 1 {
		return fielderr.New("max-handshakes", "must be at least 1")
	}
	if c.RetryHandshakes < 1 || c.RetryHandshakes > c.MaxHandshakes {
		return fielderr.Errorf("retry-handshakes", "must be 1 to max-handshakes (%d)", c.MaxHandshakes)
	}
	if err := c.Transport.Validate(); err != nil {
		return fielderr.New("transport", err.Error())
	}
	return nil
}
