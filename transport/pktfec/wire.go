// Package pktfec codes QUIC packets beneath quic-go. A Conn wraps a UDP
// socket as the net.PacketConn quic-go reads and writes: to a peer that
// decodes (Enable), every QUIC packet goes out with a 24-bit sequence
// number, and after each group of them Reed-Solomon parity packets follow;
// on the way in, lost packets are rebuilt from the parity that arrived and
// handed to quic-go as if they had come over the wire. Neither quic-go's
// congestion control nor its retransmission then sees a loss that parity
// repaired.
//
// The code is systematic: a data packet is handed to quic-go the moment it
// arrives; only a rebuilt one waits for its group's parity. A group closes
// when it holds K packets or when its timer (a fraction of the path's RTT)
// fires, so a quiet connection never waits. The receiver reports what it
// saw (packets expected, received, repaired) every 100 ms, and the sender
// sizes parity from those reports: none on a clean path, more as the loss
// before repair grows, more again while loss is left after repair, never
// more than the cap.
//
// Why not a library: FEC beneath QUIC is what the transport's own designers
// left to extensions still in draft; the coding itself is
// klauspost/reedsolomon (EncodeIdx adds one packet at a time to the
// parity, so the sender copies nothing).
//
// Wire format (docs/PROTOCOL.md, "Packet coding"): the first byte tells
// QUIC packets (0x40 set), STUN (top bits 00, first byte 0 or 1) and
// these apart:
//
//	data    0x20 | seq:24 | QUIC packet          (no parity follows)
//	data    0x21 | seq:24 | QUIC packet          (in a group parity covers)
//	parity  0x22 | first:24 | n:8 | k:8 | m:8 | j:8 | RS parity of [len:16 | packet] shards
//	report  0x23 | expected:32 | received:32 | repaired:32
package pktfec

import (
	"encoding/binary"
	"errors"
)

// Packet types, in the first byte.
const (
	typeData      = 0x20
	typeGroupData = 0x21
	typeParity    = 0x22
	typeReport    = 0x23
)

// DataHeaderLen is the coding header each coded data packet carries on
// the wire beside its QUIC packet, for counting wire bytes.
const DataHeaderLen = dataHdr

// Header sizes.
const (
	dataHdr    = 4
	parityHdr  = 8
	reportLen  = 13
	lenPrefix  = 2                     // each shard starts with its packet's length
	maxPacket  = 1452                  // quic-go's largest packet (protocol.MaxPacketBufferSize)
	maxShard   = lenPrefix + maxPacket // a shard: length and packet
	maxWire    = parityHdr + maxShard  // the largest datagram this package sends
	readBufLen = 2048                  // room for any datagram of ours and then some
	// plainMax: QUIC packets this small go out uncoded, as packets too
	// large to code do (the receiver hands any QUIC packet up). They
	// are acknowledgements and little else (a short-header packet has a
	// 16-byte tag, so 64 bytes leave room for a few bytes of stream
	// data), and a lost acknowledgement costs nothing the next one does
	// not repair; coded, they drew parity like data. On a quiet path
	// (a voice call's echo, the probes' answers) they were most of the
	// packets, and most of the parity.
	plainMax = 64
	seqMask  = 1<<24 - 1
	seqHalf  = 1 << 23
)

// MaxK and MaxM bound a group's code: at most MaxK data packets and MaxM
// parity packets.
const (
	MaxK = 64
	MaxM = 8
)

var errMalformed = errors.New("malformed coding packet")

// seqDiff returns a-b in 24-bit serial arithmetic.
func seqDiff(a, b uint32) int32 {
	return int32((a-b)<<8) >> 8
}

func putSeq(b []byte, s uint32) {
	b[0], b[1], b[2] = byte(s>>16), byte(s>>8), byte(s)
}

func getSeq(b []byte) uint32 {
	return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
}

// isQUIC tells a QUIC packet by its fixed bit (RFC 9000, 17.2 and 17.3).
func isQUIC(b []byte) bool { return len(b) > 0 && b[0]&0x40 != 0 }

// parityHeader is a parity packet's header.
type parityHeader struct {
	first   uint32 // seq of the group's first data packet
	n, k, m int    // data packets in the group, the code's data and parity counts
	j       int    // this packet's parity index, 0 <= j < m
}

func appendParityHeader(b []byte, h parityHeader) []byte {
	b = append(b, typeParity, 0, 0, 0, byte(h.n), byte(h.k), byte(h.m), byte(h.j))
	putSeq(b[len(b)-7:], h.first)
	return b
}

// parseParity checks a parity packet and returns its header and payload.
func parseParity(b []byte) (parityHeader, []byte, error) {
	if len(b) < parityHdr+lenPrefix+1 || len(b) > maxWire || b[0] != typeParity {
		return parityHeader{}, nil, errMalformed
	}
	h := parityHeader{first: getSeq(b[1:]), n: int(b[4]), k: int(b[5]), m: int(b[6]), j: int(b[7])}
	if h.k < 1 || h.k > MaxK || h.m < 1 || h.m > MaxM || h.n < 1 || h.n > h.k || h.j >= h.m {
		return parityHeader{}, nil, errMalformed
	}
	return h, b[parityHdr:], nil
}

// report is what a receiver saw of one peer's coded packets, counted since
// it first heard from it. Counters are cumulative so a lost report costs
// nothing but its freshness.
type report struct {
	expected, received, repaired uint32
}

func appendReport(b []byte, r report) []byte {
	b = append(b, typeReport)
	b = binary.BigEndian.AppendUint32(b, r.expected)
	b = binary.BigEndian.AppendUint32(b, r.received)
	return binary.BigEndian.AppendUint32(b, r.repaired)
}

func parseReport(b []byte) (report, error) {
	if len(b) != reportLen || b[0] != typeReport {
		return report{}, errMalformed
	}
	return report{binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint32(b[5:]), binary.BigEndian.Uint32(b[9:])}, nil
}
