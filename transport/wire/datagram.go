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

// Coded datagrams (protocol version 5). A class's datagrams are sent in
// groups of k, each with m parity datagrams on the paths the datagram
// plan names (scheduler.PlanDatagrams). A data datagram is
//
//	0x02 | group:32 | index:8 | class:8 | unit
//	unit = sent:32 | association:32 | ATYP ADDR PORT | payload
//
// and is delivered the moment it arrives; sent is the sender's clock in
// microseconds (wrapping), which lets the receiver see how late a
// datagram is against the fastest it has seen. A parity datagram is
//
//	0x03 | group:32 | index:8 | k:8 | m:8 | class:8 | shard
//
// index is k to k+m-1. For k > 1 the shards are Reed-Solomon parity of
// the group's k units, each padded to the shard's length as
// len:16 | unit | zeros; for k = 1 the shard is len:16 | unit, a copy.
// k is the number of datagrams the group closed with, which may be
// fewer than planned when the group's wait ran out.
const (
	DatagramData   = 0x02
	DatagramParity = 0x03
	// DatagramDataHeader and DatagramParityHeader are the bytes before
	// the unit and the shard; DatagramUnitHeader the unit's before its
	// address.
	DatagramDataHeader   = 1 + 4 + 1 + 1
	DatagramParityHeader = 1 + 4 + 1 + 1 + 1 + 1
	DatagramUnitHeader   = 4 + 4
	// DatagramMaxShards is the most datagrams (k+m) of a group.
	DatagramMaxShards = 8
	// DatagramMaxParity is the most parity datagrams of a group.
	DatagramMaxParity = 4
)

// AppendCodedDatagram appends a data datagram: position index of group,
// traffic class class, sent at sent (microseconds), of association id to
// (or from) addr, carrying payload.
func AppendCodedDatagram(b []byte, group uint32, index, class uint8, sent, id uint32, addr, payload []byte) []byte {
	b = append(b, DatagramData)
	b = binary.BigEndian.AppendUint32(b, group)
	b = append(b, index, class)
	b = binary.BigEndian.AppendUint32(b, sent)
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, addr...)
	return append(b, payload...)
}

// ParseCodedDatagram splits a data datagram; unit is a slice of b. The
// unit is checked too (ParseUnit).
func ParseCodedDatagram(b []byte) (group uint32, index, class uint8, unit []byte, err error) {
	if len(b) < DatagramDataHeader || b[0] != DatagramData {
		return 0, 0, 0, nil, Malformed("coded datagram of %d bytes", len(b))
	}
	group, index, class, unit = binary.BigEndian.Uint32(b[1:]), b[5], b[6], b[DatagramDataHeader:]
	if index >= DatagramMaxShards {
		return 0, 0, 0, nil, Malformed("coded datagram position %d", index)
	}
	if _, _, _, _, err := ParseUnit(unit); err != nil {
		return 0, 0, 0, nil, err
	}
	return group, index, class, unit, nil
}

// ParseUnit splits a unit into its send time, association, address and
// payload, all slices of u.
func ParseUnit(u []byte) (sent, id uint32, addr, payload []byte, err error) {
	if len(u) < DatagramUnitHeader {
		return 0, 0, nil, nil, Malformed("datagram unit of %d bytes", len(u))
	}
	n, err := DatagramAddrLen(u[DatagramUnitHeader:])
	if err != nil {
		return 0, 0, nil, nil, err
	}
	a := u[DatagramUnitHeader : DatagramUnitHeader+n]
	return binary.BigEndian.Uint32(u), binary.BigEndian.Uint32(u[4:]), a, u[DatagramUnitHeader+n:], nil
}

// AppendParityHeader appends a parity datagram's header; the shard
// follows it.
func AppendParityHeader(b []byte, group uint32, index, k, m, class uint8) []byte {
	b = append(b, DatagramParity)
	b = binary.BigEndian.AppendUint32(b, group)
	return append(b, index, k, m, class)
}

// ParseParity splits a parity datagram; shard is a slice of b.
func ParseParity(b []byte) (group uint32, index, k, m, class uint8, shard []byte, err error) {
	if len(b) < DatagramParityHeader+2 || b[0] != DatagramParity {
		return 0, 0, 0, 0, 0, nil, Malformed("parity datagram of %d bytes", len(b))
	}
	group, index, k, m, class = binary.BigEndian.Uint32(b[1:]), b[5], b[6], b[7], b[8]
	if k == 0 || m == 0 || m > DatagramMaxParity || int(k)+int(m) > DatagramMaxShards || index < k || index >= k+m {
		return 0, 0, 0, 0, 0, nil, Malformed("parity datagram %d of k=%d m=%d", index, k, m)
	}
	return group, index, k, m, class, b[DatagramParityHeader:], nil
}

// PadUnit writes unit into shard as len:16 | unit | zeros; shard must
// hold 2+len(unit) bytes.
func PadUnit(shard, unit []byte) {
	binary.BigEndian.PutUint16(shard, uint16(len(unit)))
	n := copy(shard[2:], unit)
	clear(shard[2+n:])
}

// UnpadUnit is the unit PadUnit wrote into shard, a slice of it.
func UnpadUnit(shard []byte) ([]byte, error) {
	if len(shard) < 2 {
		return nil, Malformed("datagram shard of %d bytes", len(shard))
	}
	n := int(binary.BigEndian.Uint16(shard))
	if n > len(shard)-2 {
		return nil, Malformed("datagram shard claims %d of %d bytes", n, len(shard)-2)
	}
	return shard[2 : 2+n], nil
}
