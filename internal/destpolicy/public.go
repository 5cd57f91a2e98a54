package destpolicy

import "net/netip"

// Reasons a destination is refused. Each reads after "is" in a log line.
const (
	reasonInvalid       = "not an IP address"
	reasonUnspecified   = "unspecified"
	reasonLoopback      = "loopback"
	reasonPrivate       = "private"
	reasonLinkLocal     = "link-local"
	reasonMulticast     = "multicast"
	reasonBroadcast     = "broadcast"
	reasonThisNetwork   = "in this network (0.0.0.0/8)"
	reasonShared        = "carrier-grade NAT shared space (100.64.0.0/10)"
	reasonProtocol      = "reserved for IETF protocol assignments (192.0.0.0/24)"
	reasonDocumentation = "reserved for documentation"
	reasonBenchmarking  = "reserved for benchmarking"
	reasonReserved      = "reserved"
	reasonCompatible    = "IPv4-compatible (deprecated, ::/96)"
	reasonTranslated    = "IPv4-translated (SIIT, ::ffff:0:0:0/96)"
	reasonDiscard       = "discard-only (100::/64)"
	reasonSiteLocal     = "site-local (deprecated, fec0::/10)"
	reasonOwn           = "the concentrator's own address"
)

type special struct {
	prefix netip.Prefix
	reason string
}

// special4 lists the IPv4 ranges no client should reach through the
// concentrator (IANA IPv4 special-purpose registry), most specific first
// where they overlap.
var special4 = []special{
	{netip.MustParsePrefix("0.0.0.0/32"), reasonUnspecified},
	{netip.MustParsePrefix("0.0.0.0/8"), reasonThisNetwork},
	{netip.MustParsePrefix("10.0.0.0/8"), reasonPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), reasonShared},
	{netip.MustParsePrefix("127.0.0.0/8"), reasonLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), reasonLinkLocal},
	{netip.MustParsePrefix("172.16.0.0/12"), reasonPrivate},
	{netip.MustParsePrefix("192.0.0.0/24"), reasonProtocol},
	{netip.MustParsePrefix("192.0.2.0/24"), reasonDocumentation},
	{netip.MustParsePrefix("192.168.0.0/16"), reasonPrivate},
	{netip.MustParsePrefix("198.18.0.0/15"), reasonBenchmarking},
	{netip.MustParsePrefix("198.51.100.0/24"), reasonDocumentation},
	{netip.MustParsePrefix("203.0.113.0/24"), reasonDocumentation},
	{netip.MustParsePrefix("224.0.0.0/4"), reasonMulticast},
	{netip.MustParsePrefix("255.255.255.255/32"), reasonBroadcast},
	{netip.MustParsePrefix("240.0.0.0/4"), reasonReserved},
}

// special6 lists the IPv6 ranges refused whatever they embed. Addresses
// outside 2000::/3 that none of these name are refused as reserved too
// (no global unicast space is allocated there), except the NAT64 prefixes,
// which are judged by the IPv4 address they carry.
var special6 = []special{
	{netip.MustParsePrefix("::/128"), reasonUnspecified},
	{netip.MustParsePrefix("::1/128"), reasonLoopback},
	{compatPrefix, reasonCompatible},
	{translatedPrefix, reasonTranslated},
	{netip.MustParsePrefix("100::/64"), reasonDiscard},
	{netip.MustParsePrefix("2001:2::/48"), reasonBenchmarking},
	{netip.MustParsePrefix("2001:db8::/32"), reasonDocumentation},
	{netip.MustParsePrefix("3fff::/20"), reasonDocumentation},
	{netip.MustParsePrefix("fc00::/7"), reasonPrivate},
	{netip.MustParsePrefix("fe80::/10"), reasonLinkLocal},
	{netip.MustParsePrefix("fec0::/10"), reasonSiteLocal},
	{netip.MustParsePrefix("ff00::/8"), reasonMulticast},
}

var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Public returns nil when ip is a public unicast address, one a
// concentrator may dial for any client, or a *RefusedError naming the
// special-purpose range it is in: loopback, private (RFC 1918, fc00::/7),
// link-local, multicast of any scope, unspecified, broadcast, 0.0.0.0/8,
// carrier-grade NAT, IETF protocol assignments, benchmarking,
// documentation, 240.0.0.0/4, IPv4-compatible and IPv4-translated, the
// discard prefix, site-local, and IPv6 space outside 2000::/3.
//
// An IPv4-mapped address is judged as the IPv4 address it maps. Any other
// IPv6 address that embeds IPv4 addresses (see [Embedded]) is refused when
// one of them is, before the IPv6 address itself is judged, so the error
// names the embedded address: 64:ff9b::7f00:1 is refused because
// 127.0.0.1 is loopback. The zone is ignored. Public says nothing about
// the concentrator's own addresses; [Policy.Check] does.
func Public(ip netip.Addr) error {
	if !ip.IsValid() {
		return &RefusedError{Addr: ip, Reason: reasonInvalid}
	}
	a := ip.Unmap().WithZone("")
	if a.Is4() {
		if reason := classify4(a); reason != "" {
			return &RefusedError{Addr: ip, Reason: reason}
		}
		return nil
	}
	var buf [2]netip.Addr
	for _, v4 := range appendEmbedded(buf[:0], a) {
		if reason := classify4(v4); reason != "" {
			return &RefusedError{Addr: ip, Embedded: v4, Reason: reason}
		}
	}
	if reason := classify6(a); reason != "" {
		return &RefusedError{Addr: ip, Reason: reason}
	}
	return nil
}

// classify4 returns why the IPv4 address ip is refused, "" when it is
// public.
func classify4(ip netip.Addr) string {
	for _, s := range special4 {
		if s.prefix.Contains(ip) {
			return s.reason
		}
	}
	return ""
}

// classify6 returns why the IPv6 address ip (without zone) is refused in
// itself, "" when it is public; the IPv4 addresses it embeds are
// Public's business.
func classify6(ip netip.Addr) string {
	for _, s := range special6 {
		if s.prefix.Contains(ip) {
			return s.reason
		}
	}
	if globalUnicast6.Contains(ip) || nat64Prefix.Contains(ip) || nat64LocalPrefix.Contains(ip) {
		return ""
	}
	return reasonReserved
}
