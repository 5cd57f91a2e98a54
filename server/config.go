// Package server is braid's concentrator: it accepts QUIC connections from
// clients' paths, authenticates them, keeps the session registry, dials
// each flow's destination and relays both ways.
package server

import (
	"braid/internal/tier"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

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
	// AllowPrivate lets flows reach loopback, private, link-local and
	// multicast destinations.
	AllowPrivate bool
	// DialTimeout bounds dialing a destination (default 10 s).
	DialTimeout time.Duration
	// MaxSessions bounds concurrent sessions (default 1024).
	MaxSessions int
	// Transport tunes coding, windows and probing; MaxFlows and
	// SessionWindow are the per-session limits.
	Transport transport.Config
	// Logger receives the concentrator's logs; nil discards them.
	Logger *slog.Logger
	// Dial dials destinations; nil means a net.Dialer. Tests replace it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolve resolves destination names; nil means net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
}

// ConfigError names the field that is wrong and why.
type ConfigError struct{ Field, Reason string }

func (e *ConfigError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Fill sets defaults.
func (c *Config) Fill() {
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
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
		return &ConfigError{"listen", "is required"}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return &ConfigError{"listen", fmt.Sprintf("%q is not HOST:PORT", c.Listen)}
	}
	if len(c.Cert.Certificate) == 0 {
		return &ConfigError{"cert", "is required (braid keygen writes one)"}
	}
	if len(c.Tokens) == 0 && (c.Policy == nil || len(c.Policy.Tokens) == 0) {
		return &ConfigError{"token", "at least one token is required"}
	}
	for _, t := range c.Tokens {
		if t == "" || len(t) > 255 {
			return &ConfigError{"token", "tokens are 1 to 255 bytes"}
		}
	}
	if c.DialTimeout < 0 {
		return &ConfigError{"dial-timeout", "must not be negative"}
	}
	if c.MaxSessions < 1 {
		return &ConfigError{"max-sessions", "must be at least 1"}
	}
	if err := c.Transport.Validate(); err != nil {
		return &ConfigError{"transport", err.Error()}
	}
	return nil
}
