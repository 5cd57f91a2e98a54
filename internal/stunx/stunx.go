// Package stunx speaks the small part of STUN (RFC 5389 / RFC 8489) that
// braid needs, over the UDP sockets that quic-go already owns.
//
// braid uses STUN Binding transactions to confirm that each provider path
// still reaches the concentrator and to learn the public (NAT) address the
// path is mapped to, so that NAT rebinding or a provider handover is noticed.
// STUN messages start with two zero bits, which quic-go classifies as
// non-QUIC packets: it hands them to the application through
// (*quic.Transport).ReadNonQUICPacket and lets the application send raw
// datagrams with (*quic.Transport).WriteTo. STUN and QUIC therefore share one
// socket, and the mapped address STUN reports is exactly the one QUIC uses.
//
// The concentrator runs Serve on its transport; the client runs a Prober per
// path. Messages are decoded and encoded by github.com/pion/stun/v3. pion is
// lenient where braid wants to be strict, so a few checks of our own come on
// top (see codec.decode and codec.mappedAddress): only well-formed RFC 5389
// messages are accepted (two zero top bits, magic cookie, a length field that
// covers exactly the rest of the packet and is a multiple of 4, a correct
// FINGERPRINT that is the last attribute if present, addresses of exactly
// their family's length) and nothing ever reads past the packet.
//
// Only this package may call ReadNonQUICPacket on a given PacketConn, and a
// PacketConn is used either by a server (Serve) or by probers, not both: each
// would consume the other's packets.
package stunx

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"github.com/pion/stun/v3"
	"github.com/quic-go/quic-go"
)

// PacketConn is the part of *quic.Transport this package uses (so tests can
// fake it). ReadNonQUICPacket must return promptly with ctx's error once ctx
// is done.
type PacketConn interface {
	ReadNonQUICPacket(ctx context.Context, b []byte) (int, net.Addr, error)
	WriteTo(b []byte, addr net.Addr) (int, error)
}

var _ PacketConn = (*quic.Transport)(nil)

// Software is the value of the SOFTWARE attribute in the server's responses.
const Software = "braid"

const (
	headerSize = 20 // STUN message header

	// maxPacket is the largest STUN message either side accepts. Nothing
	// braid sends or answers comes close; anything bigger is dropped as
	// malformed (a read buffer one byte larger detects truncation).
	maxPacket = 1500

	familyIPv4 = 0x01 // address families of (XOR-)MAPPED-ADDRESS
	familyIPv6 = 0x02
)

// txID is a STUN transaction id.
type txID = [stun.TransactionIDSize]byte

var (
	// bindingIndication is the Binding indication (keepalive) type.
	bindingIndication = stun.NewType(stun.MethodBinding, stun.ClassIndication)

	// The constant parts of a response, converted to Setter once: a
	// conversion at each Build would allocate.
	bindingSuccessType stun.Setter = stun.BindingSuccess
	softwareAttr       stun.Setter = stun.NewSoftware(Software)
)

// Errors of the checks made on top of pion's decoder. Other decoding errors
// are pion's.
var (
	errShort       = errors.New("stunx: shorter than a STUN header")
	errTooLong     = errors.New("stunx: packet too large")
	errNotSTUN     = errors.New("stunx: first two bits not zero")
	errCookie      = errors.New("stunx: wrong magic cookie")
	errLength      = errors.New("stunx: length field does not match the packet")
	errFingerprint = errors.New("stunx: FINGERPRINT is not the last attribute")
)

// codec is one goroutine's reusable STUN state. pion's Message keeps its
// buffers (Raw, Attributes) across Decode and Build, and the address
// attributes reuse their IP slices, so a loop that keeps one codec decodes
// and encodes without allocating per packet. A codec must not be shared
// between goroutines.
type codec struct {
	msg    stun.Message // the message decode decoded last
	out    stun.Message // the message bindingSuccess built last
	xorIn  stun.XORMappedAddress
	mapIn  stun.MappedAddress
	xorOut stun.XORMappedAddress
	ipIn   [net.IPv6len]byte // backing array of xorIn.IP / mapIn.IP
	ipOut  [net.IPv6len]byte // backing array of xorOut.IP
}

// decode validates b as exactly one STUN message and decodes it into c.msg,
// which it returns; c.msg does not alias b (b is copied into its Raw, whose
// buffer is reused) and stays valid until the next decode.
//
// pion's Decode checks the magic cookie and that every attribute, padding
// included, fits inside the length the header announces. It does not mind
// set top bits (it folds them into the message type, so 0xC001 would pass
// as a Binding request), bytes after the announced length, or a length that
// is not a multiple of 4, and its FINGERPRINT check assumes, without
// checking, that FINGERPRINT is the last attribute. We check those here.
// The header checks come first and never allocate, so that floods of
// garbage are dropped without work for the garbage collector (pion's errors
// are formatted with fmt).
func (c *codec) decode(b []byte) (*stun.Message, error) {
	switch {
	case len(b) < headerSize:
		return nil, errShort
	case len(b) > maxPacket:
		return nil, errTooLong
	case !stun.IsMessage(b):
		return nil, errCookie
	case b[0]&0xC0 != 0:
		return nil, errNotSTUN
	}
	if n := int(binary.BigEndian.Uint16(b[2:4])); n%4 != 0 || headerSize+n != len(b) {
		return nil, errLength
	}
	m := &c.msg
	m.Raw = append(m.Raw[:0], b...)
	if err := m.Decode(); err != nil {
		return nil, err
	}
	if hasFingerprint(m) {
		// Only one FINGERPRINT, at the very end (RFC 5389 15.5); only
		// then is pion's Check (CRC-32 of everything before the last 8
		// bytes) about the attribute it reads.
		for _, a := range m.Attributes[:len(m.Attributes)-1] {
			if a.Type == stun.AttrFingerprint {
				return nil, errFingerprint
			}
		}
		if err := stun.Fingerprint.Check(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// hasFingerprint reports whether m carries a FINGERPRINT attribute (after
// decode: a valid one, as its last attribute).
func hasFingerprint(m *stun.Message) bool { return m.Contains(stun.AttrFingerprint) }

// hasRequiredAttr reports whether m carries a comprehension-required
// attribute (type below 0x8000). The server understands none in a request.
// pion reads the pre-RFC 5389 type 0x8020 as XOR-MAPPED-ADDRESS (0x0020), so
// such an attribute counts as comprehension-required too.
func hasRequiredAttr(m *stun.Message) bool {
	for _, a := range m.Attributes {
		if a.Type.Required() {
			return true
		}
	}
	return false
}

// mappedAddress returns the address in m's XOR-MAPPED-ADDRESS, or failing
// that its MAPPED-ADDRESS (only the first of each counts, RFC 5389 15). ok is
// false if neither is present and valid (right length for its family, a
// unicast address, a non-zero port); an invalid XOR-MAPPED-ADDRESS is not
// replaced by a MAPPED-ADDRESS.
func (c *codec) mappedAddress(m *stun.Message) (netip.AddrPort, bool) {
	if v, err := m.Get(stun.AttrXORMappedAddress); err == nil {
		c.xorIn.IP = c.ipIn[:] // GetFrom reuses a long enough IP
		if !addressValueOK(v) || c.xorIn.GetFrom(m) != nil {
			return netip.AddrPort{}, false
		}
		return usableAddrPort(c.xorIn.IP, c.xorIn.Port)
	}
	if v, err := m.Get(stun.AttrMappedAddress); err == nil {
		c.mapIn.IP = c.ipIn[:]
		if !addressValueOK(v) || c.mapIn.GetFrom(m) != nil {
			return netip.AddrPort{}, false
		}
		return usableAddrPort(c.mapIn.IP, c.mapIn.Port)
	}
	return netip.AddrPort{}, false
}

// addressValueOK checks the layout of a (XOR-)MAPPED-ADDRESS value: a zero
// byte, the family, the port, and exactly 4 (IPv4) or 16 (IPv6) address
// bytes. pion's GetFrom ignores the first byte and accepts an
// XOR-MAPPED-ADDRESS that is too short (zero-filling the address) and a
// MAPPED-ADDRESS that is too long (truncating it).
func addressValueOK(v []byte) bool {
	if len(v) < 4 || v[0] != 0 {
		return false
	}
	switch v[1] {
	case familyIPv4:
		return len(v) == 4+net.IPv4len
	case familyIPv6:
		return len(v) == 4+net.IPv6len
	}
	return false
}

// usableAddrPort converts a decoded address, rejecting what cannot be a
// mapped address: port 0, unspecified, multicast, or IPv4-mapped IPv6.
func usableAddrPort(ip net.IP, port int) (netip.AddrPort, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 0xFFFF || addr.IsUnspecified() || addr.IsMulticast() || addr.Is4In6() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(port)), true
}

// bindingSuccess builds into c.out, and returns, the Binding success
// response to the request req: req's transaction id, XOR-MAPPED-ADDRESS to
// (an IPv4-mapped address as IPv4), SOFTWARE and, if req has one,
// FINGERPRINT. The result aliases c.out and is valid until the next
// bindingSuccess. It does not allocate once c.out has grown.
func (c *codec) bindingSuccess(req *stun.Message, to netip.AddrPort) ([]byte, error) {
	if a := to.Addr().Unmap(); a.Is4() {
		v := a.As4()
		c.xorOut.IP = append(c.ipOut[:0], v[:]...)
	} else {
		v := a.As16()
		c.xorOut.IP = append(c.ipOut[:0], v[:]...)
	}
	c.xorOut.Port = int(to.Port())
	m := &c.out
	// req as a Setter copies its transaction id (pion's way of crafting
	// responses); stun.NewTransactionIDSetter would allocate each time.
	err := m.Build(req, bindingSuccessType, &c.xorOut, softwareAttr)
	if err == nil && hasFingerprint(req) {
		err = stun.Fingerprint.AddTo(m) // must come last
	}
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

// bindingRequest returns a Binding request with the given id and a
// FINGERPRINT (28 bytes).
func bindingRequest(id txID) []byte {
	// Cannot fail: none of these setters returns an error.
	return stun.MustBuild(stun.NewTransactionIDSetter(id), stun.BindingRequest, stun.Fingerprint).Raw
}

// addrPortOf returns the UDP address a as an AddrPort with IPv4-mapped IPv6
// addresses unmapped, or the zero AddrPort if a is not an IP address.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case nil:
		return netip.AddrPort{}
	case *net.UDPAddr:
		if v == nil {
			return netip.AddrPort{}
		}
		ap = v.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
