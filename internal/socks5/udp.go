package socks5

import "fmt"

// A datagram on a UDP ASSOCIATE relay carries its destination (client to
// relay) or its source (relay to client) in front of the payload (RFC 1928
// section 7):
//
//	+-----+------+------+----------+----------+----------+
//	| RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
//	+-----+------+------+----------+----------+----------+
//	|  2  |  1   |  1   | Variable |    2     | Variable |
//	+-----+------+------+----------+----------+----------+

// MaxUDPHeaderLen is the longest UDP datagram header: RSV, FRAG and an
// address with a 255-byte name.
const MaxUDPHeaderLen = 3 + maxAddrLen

// UDPHeader is the header of one datagram on a UDP ASSOCIATE relay.
type UDPHeader struct {
	// Frag is the fragment number; 0 is a datagram standing alone. Like
	// most SOCKS servers braid does not reassemble fragments: a caller
	// drops (and counts) a datagram whose Frag is not 0.
	Frag byte
	// Addr is the datagram's destination (from the client) or its source
	// (to the client).
	Addr Addr
}

var errTruncatedUDP = fmt.Errorf("socks5: truncated UDP header: %w", errTruncatedAddr)

// AppendUDPHeader appends h's wire form to b, to be followed by the
// payload. It fails as AppendAddr does for an address it cannot encode,
// leaving b as it was.
func AppendUDPHeader(b []byte, h UDPHeader) ([]byte, error) {
	out, err := AppendAddr(append(b, 0, 0, h.Frag), h.Addr)
	if err != nil {
		return b, err
	}
	return out, nil
}

// ParseUDPHeader parses the header at the front of a datagram and returns
// the payload, a subslice of b (it copies nothing but a domain name). RSV
// is ignored, as the request's reserved byte is: a nonzero value harms
// nothing. Truncated input yields an error wrapping io.ErrUnexpectedEOF,
// an unknown ATYP ErrAddressType and an empty name an error wrapping
// ErrProtocol; the payload is then nil. It never reads past b.
func ParseUDPHeader(b []byte) (UDPHeader, []byte, error) {
	if len(b) < 3 {
		return UDPHeader{}, nil, errTruncatedUDP
	}
	a, payload, err := ParseAddr(b[3:])
	if err != nil {
		return UDPHeader{}, nil, err
	}
	return UDPHeader{Frag: b[2], Addr: a}, payload, nil
}
