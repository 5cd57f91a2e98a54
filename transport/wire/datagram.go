package wire

import "encoding/binary"

// A UDP datagram of an association rides one QUIC DATAGRAM frame:
//
//	0x01 | association:32 | ATYP ADDR PORT | payload
//
// The address is the destination (client to concentrator) or the source
// (concentrator to client), in SOCKS5's form as a flow's OPEN carries it:
// ATYP 1 and 4 bytes, 4 and 16 bytes, or 3, a length and a name; then a
// 16-bit port.
const (
	DatagramPlain = 0x01
	// DatagramHeaderMax is the longest datagram header: kind, id and a
	// 255-byte name.
	DatagramHeaderMax = 1 + 4 + 1 + 1 + 255 + 2
)

// AppendDatagram appends a datagram of association id to addr (or from
// it) carrying payload. addr must be a valid address (DatagramAddrLen).
func AppendDatagram(b []byte, id uint32, addr, payload []byte) []byte {
	b = append(b, DatagramPlain)
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, addr...)
	return append(b, payload...)
}

// ParseDatagram splits a datagram into its association, address and
// payload, all slices of b.
func ParseDatagram(b []byte) (id uint32, addr, payload []byte, err error) {
	if len(b) < 5 {
		return 0, nil, nil, Malformed("datagram of %d bytes", len(b))
	}
	if b[0] != DatagramPlain {
		return 0, nil, nil, Malformed("datagram kind %#x", b[0])
	}
	id = binary.BigEndian.Uint32(b[1:])
	n, err := DatagramAddrLen(b[5:])
	if err != nil {
		return 0, nil, nil, err
	}
	return id, b[5 : 5+n], b[5+n:], nil
}

// DatagramAddrLen returns the length of the SOCKS5-form address at the
// start of b.
func DatagramAddrLen(b []byte) (int, error) {
	if len(b) < 1 {
		return 0, Malformed("datagram address missing")
	}
	var n int
	switch b[0] {
	case 1:
		n = 1 + 4 + 2
	case 4:
		n = 1 + 16 + 2
	case 3:
		if len(b) < 2 || b[1] == 0 {
			return 0, Malformed("datagram name missing")
		}
		n = 1 + 1 + int(b[1]) + 2
	default:
		return 0, Malformed("datagram address type %#x", b[0])
	}
	if len(b) < n {
		return 0, Malformed("datagram address truncated: %d of %d bytes", len(b), n)
	}
	return n, nil
}
