// Package client is braid's client end: a local SOCKS5 proxy whose flows
// ride a transport session spread over several network paths to one
// concentrator.
package client

import (
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"braid/internal/fielderr"
	"braid/internal/netx"
	"braid/transport"
	"braid/transport/wire"
)

// Config is everything the client needs; cmd/braid fills it from flags and
// a config file. Fill sets defaults, Validate checks it.
type Config struct {
	// Server is the concentrator's HOST:PORT.
	Server string
	// MoreServers are other concentrators (HOST:PORT, sharing Server's
	// key and token), tried in turn when the one in use drains (GOAWAY),
	// refuses a new session or cannot be reached. A path with its own
	// server= stays with it.
	MoreServers []string
	// Pin is the SHA-256 of the concentrator's SubjectPublicKeyInfo.
	Pin [32]byte
	// Token authenticates the user to the concentrator.
	Token string
	// SOCKS is the proxy's listen address (default 127.0.0.1:1080), for
	// SOCKS5 and HTTP alike: a connection whose first byte is 0x05 speaks
	// SOCKS5, any other HTTP (CONNECT and plain requests).
	SOCKS string
	// SOCKSUser and SOCKSPass, when set, require RFC 1929 authentication
	// of SOCKS5 clients and Proxy-Authorization: Basic of HTTP clients.
	SOCKSUser, SOCKSPass string
	// Status is the loopback HOST:PORT where GET /status serves the
	// paths' state as JSON; empty means no status server.
	Status string
	// StatusOptional makes a Status address that cannot be bound a
	// warning, not an error: the client runs without its status page.
	// cmd/braid sets it when Status is the flag's default, which a second
	// client on the same host finds taken.
	StatusOptional bool
	// Paths are the network paths; none (and no AutoPaths) means one path
	// over the default route.
	Paths []PathConfig
	// AutoPaths makes one path per usable network interface (up, with a
	// global address and a route), named after it, and follows hot-plug:
	// a new interface becomes a path, a vanished one is closed. Interfaces
	// that Paths bind with a device are left to them.
	AutoPaths bool
	// Transport tunes coding, windows and probing.
	Transport transport.Config
	// HandshakeTimeout bounds a SOCKS client's handshake, and the reading
	// of an HTTP client's request header (default 10 s).
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds a SOCKS request from its handshake to its
	// reply (default 20 s): waiting for a session while none is up (at
	// most Transport.Grace of it) and for the concentrator to reach the
	// destination. A request that finds no session in time is answered
	// "network unreachable".
	ConnectTimeout time.Duration
	// STUNInterval is how often each connection asks the concentrator for
	// its public address (default 10 s).
	STUNInterval time.Duration
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger

	stun    *stunWatch  // set by Start
	servers *serverList // set by Start
}

// PathConfig is one network path: where its sockets are bound, which
// concentrator address it reaches, and what it costs.
type PathConfig struct {
	Name string
	// Bind pins the path's UDP sockets to a local address and/or a device
	// (SO_BINDTODEVICE).
	Bind netx.Bind
	// Server overrides Config.Server for this path.
	Server string
	// Conns is the number of QUIC connections in the path's pool; 0 (the
	// default) lets the bestvalue scheduler's plans size it (one under
	// other schedulers). Random loss calls for more, see
	// docs/ARCHITECTURE.md.
	Conns int
	// PriceGB is what a GB over this path costs, in USD.
	PriceGB float64
	// RateMbps is the path's nominal rate (0: unknown), the best-value
	// planner's capacity for the path until it is measured under load.
	RateMbps float64
	// Medium is ethernet, wifi, cellular, satellite or other.
	Medium string
	// Operator is own or partner.
	Operator string
	// STUN is a STUN server HOST:PORT to learn the path's public address
	// from; empty means the concentrator, which answers STUN on its QUIC
	// port.
	STUN string
}

// ConfigError names the field of a Config that is wrong and why: Field is
// the setting's flag name without its dashes ("socks", "path NAME"), or
// "transport" for the Transport config, whose own field begins Reason.
type ConfigError = fielderr.Error

// Media and operators a path may name.
var (
	Media     = wire.Media
	Operators = map[string]uint8{"own": wire.OperatorOwn, "partner": wire.OperatorPartner}
)

// Fill sets defaults.
func (c *Config) Fill() {
	if c.SOCKS == "" {
		c.SOCKS = "127.0.0.1:1080"
	}
	if len(c.Paths) == 0 && !c.AutoPaths {
		c.Paths = []PathConfig{{Name: "default"}}
	}
	for i := range c.Paths {
		p := &c.Paths[i]
		if p.Medium == "" {
			p.Medium = "other"
		}
		if p.Operator == "" {
			p.Operator = "own"
		}
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 20 * time.Second
	}
	if c.STUNInterval == 0 {
		c.STUNInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Transport.Fill()
}

// Validate checks a filled Config.
func (c *Config) Validate() error {
	if c.Token == "" {
		return fielderr.New("token", "is required")
	}
	if c.Pin == ([32]byte{}) {
		return fielderr.New("pin", "is required (braid keygen prints it)")
	}
	if (c.SOCKSUser == "") != (c.SOCKSPass == "") {
		return fielderr.New("socks-user", "socks-user and socks-pass go together")
	}
	if len(c.SOCKSUser) > 255 || len(c.SOCKSPass) > 255 {
		return fielderr.New("socks-user", "user and password are at most 255 bytes")
	}
	if _, err := netip.ParseAddrPort(c.SOCKS); err != nil {
		if _, _, err := net.SplitHostPort(c.SOCKS); err != nil {
			return fielderr.Errorf("socks", "%q is not HOST:PORT", c.SOCKS)
		}
	}
	if c.Status != "" {
		host, _, err := net.SplitHostPort(c.Status)
		if err != nil {
			return fielderr.Errorf("status", "%q is not HOST:PORT", c.Status)
		}
		if ip, err := netip.ParseAddr(host); (err != nil && host != "localhost") || (err == nil && !ip.IsLoopback()) {
			return fielderr.Errorf("status", "%q is not a loopback address: the status page is for this machine only", host)
		}
	}
	names := map[string]bool{}
	for _, p := range c.Paths {
		field := "path " + p.Name
		switch {
		case wire.CheckPathName(p.Name) != nil:
			return fielderr.Errorf("path", "a path needs a name of 1 to %d bytes of printable UTF-8: %v", wire.MaxPathName, wire.CheckPathName(p.Name))
		case names[p.Name]:
			return fielderr.New(field, "name used twice")
		case p.Conns < 0 || p.Conns > 16:
			return fielderr.Errorf(field, "conns=%d is outside 1..16", p.Conns)
		case p.PriceGB < 0 || p.PriceGB != p.PriceGB || p.PriceGB > wire.MaxPriceGB:
			return fielderr.Errorf(field, "price must be a number from 0 to %v (USD/GB)", wire.MaxPriceGB)
		case p.RateMbps < 0 || p.RateMbps != p.RateMbps || math.IsInf(p.RateMbps, 0):
			return fielderr.New(field, "rate must be a number >= 0")
		}
		names[p.Name] = true
		if _, ok := Media[p.Medium]; !ok {
			return fielderr.Errorf(field, "medium %q is not ethernet, wifi, cellular, satellite or other", p.Medium)
		}
		if _, ok := Operators[p.Operator]; !ok {
			return fielderr.Errorf(field, "operator %q is not own or partner", p.Operator)
		}
		srv := c.Server
		if p.Server != "" {
			srv = p.Server
		}
		if srv == "" {
			return fielderr.New("server", "is required (or server= on every path)")
		}
		if _, _, err := net.SplitHostPort(srv); err != nil {
			return fielderr.Errorf(field, "server %q is not HOST:PORT", srv)
		}
		if p.STUN != "" {
			if _, _, err := net.SplitHostPort(p.STUN); err != nil {
				return fielderr.Errorf(field, "stun %q is not HOST:PORT", p.STUN)
			}
		}
		if p.Bind.Device != "" && !netx.DeviceBind {
			return fielderr.Errorf(field, "dev:%s needs SO_BINDTODEVICE, which %s lacks: give the interface's address instead (with a route from it)", p.Bind.Device, runtime.GOOS)
		}
		if p.Bind.Device != "" && !netx.InterfaceExists(p.Bind.Device) {
			return fielderr.Errorf(field, "interface %q does not exist", p.Bind.Device)
		}
	}
	for _, srv := range c.MoreServers {
		if _, _, err := net.SplitHostPort(srv); err != nil {
			return fielderr.Errorf("server", "%q is not HOST:PORT", srv)
		}
	}
	if len(c.MoreServers) > 0 && c.Server == "" {
		return fielderr.New("server", "more servers need a first one")
	}
	if c.AutoPaths && !netx.DeviceBind {
		return fielderr.Errorf("path", "auto needs SO_BINDTODEVICE, which %s lacks: give each path the address of its interface", runtime.GOOS)
	}
	if c.AutoPaths && c.Server == "" {
		return fielderr.New("server", "is required with automatic paths")
	}
	if len(c.Paths) > 16 {
		return fielderr.New("path", "at most 16 paths")
	}
	if err := c.Transport.Validate(); err != nil {
		return fielderr.New("transport", err.Error())
	}
	return nil
}

// serverList is the concentrators a client may use, and which one new
// connections dial: the first until the supervisor moves on (next).
type serverList struct {
	addrs []string
	cur   atomic.Int32
}

func newServerList(first string, more []string) *serverList {
	return &serverList{addrs: append([]string{first}, more...)}
}

// current returns the concentrator new connections dial.
func (l *serverList) current() string {
	return l.addrs[int(l.cur.Load())%len(l.addrs)]
}

// next moves to the following concentrator and returns it.
func (l *serverList) next() string {
	return l.addrs[int(l.cur.Add(1))%len(l.addrs)]
}
