// Package netx opens the per-path UDP sockets that carry braid's QUIC
// paths. Each path must leave through one specific network, so its socket
// is bound to a local address and/or pinned to an interface.
package netx

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// socketBufferSize is what we ask the kernel for on both directions.
// quic-go wants several MiB so bursts at high bandwidth-delay products are
// not dropped in the socket queue; 7 MiB matches its own target.
const socketBufferSize = 7 << 20

// Bind says where a path's UDP socket is bound: a local IP (the zero Addr
// means any address) and/or a device name for SO_BINDTODEVICE. Binding to
// a device is what actually forces traffic out of one interface when the
// routing table would otherwise pick another.
type Bind struct {
	IP     netip.Addr
	Device string
}

// String renders the binding for logs and errors, e.g. "192.0.2.1 dev
// wwan0", "dev eth1", "192.0.2.1" or "any".
func (b Bind) String() string {
	switch {
	case b.IP.IsValid() && b.Device != "":
		return b.IP.String() + " dev " + b.Device
	case b.IP.IsValid():
		return b.IP.String()
	case b.Device != "":
		return "dev " + b.Device
	default:
		return "any"
	}
}

// ListenUDP opens a UDP socket for one path, bound to b.IP with an
// ephemeral port and, when b.Device is set, pinned to that interface with
// SO_BINDTODEVICE (Linux only; elsewhere it returns an error saying so).
// network is "udp", "udp4" or "udp6"; when b.IP is set its family decides
// and must agree with network. Receive and send buffers are raised to
// 7 MiB on a best-effort basis. Errors name the device or address.
func ListenUDP(network string, b Bind) (*net.UDPConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("netx: bind %s: unsupported network %q (want udp, udp4 or udp6)", b, network)
	}
	addr := ""
	if b.IP.IsValid() {
		ip := b.IP
		// A v4-mapped address would give a v6 socket that cannot carry
		// native IPv4 traffic on every platform; bind the plain v4 address.
		if ip.Is4In6() {
			ip = ip.Unmap()
		}
		family := "udp6"
		if ip.Is4() {
			family = "udp4"
		}
		if network != "udp" && network != family {
			return nil, fmt.Errorf("netx: bind %s: address family does not match network %q", b, network)
		}
		network = family
		addr = netip.AddrPortFrom(ip, 0).String()
	} else {
		addr = ":0"
	}

	var lc net.ListenConfig
	if b.Device != "" {
		lc.Control = bindToDevice(b.Device)
	}
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		return nil, fmt.Errorf("netx: bind %s: %w", b, err)
	}
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		// Cannot happen for udp networks; guard so a future change fails
		// loudly instead of leaking the socket.
		pc.Close()
		return nil, fmt.Errorf("netx: bind %s: got %T, want *net.UDPConn", b, pc)
	}
	// Best effort: without privileges the kernel caps these at
	// net.core.{r,w}mem_max, which still works, only with more loss under
	// load. quic-go reports the shortfall itself.
	_ = conn.SetReadBuffer(socketBufferSize)
	_ = conn.SetWriteBuffer(socketBufferSize)
	return conn, nil
}

// InterfaceExists reports whether the named network interface exists, so
// configuration errors can say "no such interface" up front rather than a
// path failing later with a raw errno.
func InterfaceExists(name string) bool {
	if name == "" {
		return false
	}
	_, err := net.InterfaceByName(name)
	return err == nil
}

// LoopbackHost reports whether host (a name or an address, with or
// without a port, an IPv6 address in brackets or not) names this machine
// only: localhost or a loopback address. "" (every interface) and other
// names are not.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LocalRequest reports whether an HTTP request served without a token
// may be answered: it names this machine in its Host header (a page
// elsewhere that rebinds its name to 127.0.0.1 sends its own name) and
// no browser marks it as sent by another site's page (Sec-Fetch-Site).
func LocalRequest(host, fetchSite string) bool {
	return LoopbackHost(host) && fetchSite != "cross-site"
}
