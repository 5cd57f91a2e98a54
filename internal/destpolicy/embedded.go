package destpolicy

import "net/netip"

// IPv6 ranges whose addresses carry an IPv4 address that they route to,
// through the host's stack, a translator or a tunnel relay.
var (
	mappedPrefix     = netip.MustParsePrefix("::ffff:0:0/96")   // RFC 4291 IPv4-mapped
	compatPrefix     = netip.MustParsePrefix("::/96")           // RFC 4291 IPv4-compatible (deprecated)
	translatedPrefix = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 SIIT IPv4-translated
	nat64Prefix      = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052 well-known prefix
	nat64LocalPrefix = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215 local-use prefix
	sixToFourPrefix  = netip.MustParsePrefix("2002::/16")       // RFC 3056 6to4
	teredoPrefix     = netip.MustParsePrefix("2001::/32")       // RFC 4380 Teredo
)

// Embedded returns the IPv4 addresses that the IPv6 address ip carries
// and that traffic to ip reaches: the payload of an IPv4-mapped
// (::ffff:0:0/96), IPv4-compatible (::/96, but not :: and ::1, which are
// the IPv6 unspecified and loopback addresses), SIIT IPv4-translated
// (::ffff:0:0:0/96) or NAT64 address (64:ff9b::/96 and 64:ff9b:1::/48, in
// the /96 layout of RFC 6052: the last 32 bits); the relay address of a
// 6to4 address (2002::/16, bits 16 to 48); and both addresses of a Teredo
// address (2001::/32): the server (bits 32 to 64) and the client (the last
// 32 bits, inverted). It returns nil for IPv4 addresses and for IPv6
// addresses that embed none. The zone is ignored.
func Embedded(ip netip.Addr) []netip.Addr {
	return appendEmbedded(nil, ip)
}

// appendEmbedded appends Embedded(ip) to dst, at most two addresses, so
// callers can keep them in an array on the stack.
func appendEmbedded(dst []netip.Addr, ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return dst
	}
	ip = ip.WithZone("")
	b := ip.As16()
	last := netip.AddrFrom4([4]byte(b[12:16]))
	switch {
	case mappedPrefix.Contains(ip), translatedPrefix.Contains(ip),
		nat64Prefix.Contains(ip), nat64LocalPrefix.Contains(ip):
		return append(dst, last)
	case compatPrefix.Contains(ip):
		if ip.IsUnspecified() || ip.IsLoopback() {
			return dst
		}
		return append(dst, last)
	case sixToFourPrefix.Contains(ip):
		return append(dst, netip.AddrFrom4([4]byte(b[2:6])))
	case teredoPrefix.Contains(ip):
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return append(dst, netip.AddrFrom4([4]byte(b[4:8])), netip.AddrFrom4(client))
	}
	return dst
}
