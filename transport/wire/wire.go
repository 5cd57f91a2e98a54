// Package wire is braid's wire format: the shard frames of data streams
// and the control messages, encoded and parsed. It depends on nothing
// else in braid but internal/wirebuf.
package wire

// Wire format. docs/PROTOCOL.md is the reference; keep the two in step.
//
// Every QUIC connection of a path carries:
//   - one bidirectional control stream, opened by the client first, holding
//     length-prefixed control messages (join, ping/pong, ack, credit, reset);
//   - unidirectional data streams, opened by whichever side sends, each a
//     plain sequence of shard frames: a fixed 34-byte header and its payload.
//
// Encoding is append-style (AppendX(b, ...) []byte) and parsing never
// allocates more than the bytes it was handed, so every parser can be fuzzed.

import (
	"braid/internal/wirebuf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"
)

// ALPN is the TLS application protocol braid speaks over QUIC.
const ALPN = "braid/1"

// Version is the protocol version carried in Join: the highest this side
// speaks. Version 3 adds packet coding beneath QUIC (transport/pktfec);
// version 4 adds UDP associations (UDP-OPEN, UDP-CLOSE and datagrams in
// QUIC DATAGRAM frames); version 5 codes datagrams across paths (the
// datagram kinds 0x02 and 0x03) and carries the tier's real-time terms
// (the tier's wire form version 2). A concentrator answers a join
// with the lower of its version and the client's; a client an older
// concentrator refuses for its version joins again one version lower.
const Version = 5

// MinVersion is the oldest protocol version still spoken.
const MinVersion = 2

// CodingVersion is the first version whose peers decode coded packets.
const CodingVersion = 3

// UDPVersion is the first version whose peers carry UDP associations.
const UDPVersion = 4

// DatagramCodingVersion is the first version whose peers read coded
// datagrams and the tier's real-time terms.
const DatagramCodingVersion = 5

// Limits of the shard format.
const (
	// MaxShards bounds k+m: the receiver tracks shards of a block in a
	// 32-bit set.
	MaxShards = 32
	// MaxShardSize bounds one shard's payload.
	MaxShardSize = 64 << 10
	// ShardHeaderLen is the fixed size of a shard header.
	ShardHeaderLen = 34
	// MaxOpenLen bounds an OPEN block: the flow's class, then the longest
	// SOCKS5 address, a 255-byte name with its type, length and port.
	MaxOpenLen     = 1 + 1 + 1 + 255 + 2
	shardFrameType = 0x42
)

// Block flags.
const (
	// FlagFin marks the last block of a flow direction.
	FlagFin = 1 << 0
	// FlagOpen marks block 0 of the client-to-concentrator direction: its
	// payload is the destination (SOCKS5 address encoding), not flow data.
	FlagOpen = 1 << 1
	// FlagReply marks block 0 of the concentrator-to-client direction: its
	// payload is one reply code (SOCKS5 REP values), not flow data.
	FlagReply = 1 << 2
	// FlagS2 marks a data block whose payload is S2-compressed (block
	// format): its length is the compressed length, while offsets and
	// flow credit count the bytes it decompresses to.
	FlagS2     = 1 << 3
	knownFlags = FlagFin | FlagOpen | FlagReply | FlagS2
)

// ErrMalformed is wrapped by every parse error: the peer sent bytes that
// are not braid protocol.
var ErrMalformed = errors.New("Malformed message")

// Malformed returns an error wrapping ErrMalformed.
func Malformed(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
}

// ShardHeader describes one shard of one block of one flow direction.
type ShardHeader struct {
	Flags    uint8
	K, M     uint8  // data and parity shards of the block
	Index    uint8  // this shard's index, 0..K+M-1; < K is data
	ShardLen uint32 // payload bytes that follow the header
	Flow     uint32
	Block    uint64 // block sequence number within the flow direction
	Offset   uint64 // flow data offset of the block's first byte
	BlockLen uint32 // bytes of the block before padding
}

// ShardLenFor is the shard size for a block of n bytes cut into k shards.
func ShardLenFor(n, k int) int { return (n + k - 1) / k }

// AppendShardHeader appends the encoding of h to b.
func AppendShardHeader(b []byte, h *ShardHeader) []byte {
	b = append(b, shardFrameType, h.Flags, h.K, h.M, h.Index, 0)
	b = binary.BigEndian.AppendUint32(b, h.ShardLen)
	b = binary.BigEndian.AppendUint32(b, h.Flow)
	b = binary.BigEndian.AppendUint64(b, h.Block)
	b = binary.BigEndian.AppendUint64(b, h.Offset)
	b = binary.BigEndian.AppendUint32(b, h.BlockLen)
	return b
}

// ParseShardHeader parses and validates a header from the first
// ShardHeaderLen bytes of b.
func ParseShardHeader(b []byte, h *ShardHeader) error {
	if len(b) < ShardHeaderLen {
		return Malformed("shard header: %d bytes, want %d", len(b), ShardHeaderLen)
	}
	if b[0] != shardFrameType {
		return Malformed("shard header: frame type %#x", b[0])
	}
	*h = ShardHeader{
		Flags:    b[1],
		K:        b[2],
		M:        b[3],
		Index:    b[4],
		ShardLen: binary.BigEndian.Uint32(b[6:]),
		Flow:     binary.BigEndian.Uint32(b[10:]),
		Block:    binary.BigEndian.Uint64(b[14:]),
		Offset:   binary.BigEndian.Uint64(b[22:]),
		BlockLen: binary.BigEndian.Uint32(b[30:]),
	}
	return h.validate(b[5])
}

func (h *ShardHeader) validate(reserved byte) error {
	switch {
	case reserved != 0:
		return Malformed("shard header: reserved byte %#x", reserved)
	case h.Flags&^knownFlags != 0:
		return Malformed("shard header: unknown flags %#x", h.Flags)
	case h.Flags&FlagOpen != 0 && h.Flags&FlagReply != 0:
		return Malformed("shard header: open and reply both set")
	case h.Flags&FlagS2 != 0 && (h.Flags&(FlagOpen|FlagReply) != 0 || h.BlockLen == 0):
		return Malformed("shard header: compressed open, reply or empty block")
	case h.Flags&(FlagOpen|FlagReply) != 0 && h.Block != 0:
		return Malformed("shard header: open/reply on block %d", h.Block)
	case h.K == 0:
		return Malformed("shard header: k = 0")
	case int(h.K)+int(h.M) > MaxShards:
		return Malformed("shard header: k+m = %d > %d", int(h.K)+int(h.M), MaxShards)
	case h.Index >= h.K+h.M:
		return Malformed("shard header: index %d >= k+m %d", h.Index, h.K+h.M)
	case h.ShardLen > MaxShardSize:
		return Malformed("shard header: shard length %d > %d", h.ShardLen, MaxShardSize)
	case int(h.ShardLen) != ShardLenFor(int(h.BlockLen), int(h.K)):
		return Malformed("shard header: shard length %d does not fit block length %d in %d shards", h.ShardLen, h.BlockLen, h.K)
	case h.Offset > math.MaxInt64-uint64(h.BlockLen):
		return Malformed("shard header: offset %d out of range", h.Offset)
	case h.Flags&FlagOpen != 0 && (h.BlockLen < 6 || h.BlockLen > MaxOpenLen):
		return Malformed("shard header: open of %d bytes", h.BlockLen)
	case h.Flags&FlagReply != 0 && h.BlockLen != 1:
		return Malformed("shard header: reply of %d bytes", h.BlockLen)
	}
	return nil
}

// SameBlock reports whether two shards' headers agree on everything that
// describes their block.
func (h *ShardHeader) SameBlock(o *ShardHeader) bool {
	return h.Flags == o.Flags && h.K == o.K && h.M == o.M && h.ShardLen == o.ShardLen &&
		h.Offset == o.Offset && h.BlockLen == o.BlockLen
}

// MsgType identifies a control message.
type MsgType uint8

// Control message types.
const (
	MsgJoin          MsgType = 0x01
	MsgJoinOK        MsgType = 0x02
	MsgJoinErr       MsgType = 0x03
	MsgPing          MsgType = 0x10
	MsgPong          MsgType = 0x11
	MsgAck           MsgType = 0x20
	MsgCredit        MsgType = 0x21
	MsgSessionCredit MsgType = 0x22
	MsgReset         MsgType = 0x23
	MsgClose         MsgType = 0x30
	MsgRetire        MsgType = 0x31
	MsgGoAway        MsgType = 0x32
	MsgTier          MsgType = 0x40
	MsgUDPOpen       MsgType = 0x50
	MsgUDPClose      MsgType = 0x51
)

func (t MsgType) String() string {
	switch t {
	case MsgJoin:
		return "join"
	case MsgJoinOK:
		return "join-ok"
	case MsgJoinErr:
		return "join-err"
	case MsgPing:
		return "ping"
	case MsgPong:
		return "pong"
	case MsgAck:
		return "ack"
	case MsgCredit:
		return "credit"
	case MsgSessionCredit:
		return "session-credit"
	case MsgReset:
		return "reset"
	case MsgClose:
		return "close"
	case MsgRetire:
		return "retire"
	case MsgGoAway:
		return "goaway"
	case MsgTier:
		return "tier"
	case MsgUDPOpen:
		return "udp-open"
	case MsgUDPClose:
		return "udp-close"
	}
	return fmt.Sprintf("msg(%#x)", uint8(t))
}

// MaxControlBody bounds a control message body.
const MaxControlBody = 1024

// Join error codes.
const (
	JoinErrVersion    = 1 // protocol version not supported
	JoinErrAuth       = 2 // token refused
	JoinErrSession    = 3 // unknown session or wrong secret
	JoinErrLimit      = 4 // too many sessions or paths
	JoinErrMalformed  = 5 // join message Malformed
	JoinErrShutdown   = 6 // concentrator shutting down
	ResetCodeProtocol = 1 // peer broke the protocol on this flow
)

// PathInfo is what a path tells the far side about itself.
type PathInfo struct {
	Name     string
	Medium   uint8   // MediumX
	Operator uint8   // OperatorOwn or OperatorPartner
	PriceGB  float64 // USD per GB carried
	// RateMbps is the path's nominal rate (a subscription's or a link's),
	// 0 if unknown: the planner's capacity for a path it has not yet
	// measured under load.
	RateMbps float64
}

// Device is the client device's profile, as its JOIN carries it: the
// planner picks shard sizes (and whether compression pays) from it.
type Device struct {
	MTU     uint16 // 0: 1500
	CPU     uint8  // scheduler.CPUClass: 0 mid, 1 low, 2 high
	Metered bool   // the device pays per byte itself
}

// Path media and operators.
const (
	MediumOther     = 0
	MediumEthernet  = 1
	MediumWiFi      = 2
	MediumCellular  = 3
	MediumSatellite = 4
	OperatorOwn     = 0
	OperatorPartner = 1
)

// Media are the media by the names configuration and policy files use.
var Media = map[string]uint8{"other": MediumOther, "ethernet": MediumEthernet, "wifi": MediumWiFi,
	"cellular": MediumCellular, "satellite": MediumSatellite}

// MediumName is the name of a medium, "other" for one not known.
func MediumName(m uint8) string {
	for name, v := range Media {
		if v == m && name != "other" {
			return name
		}
	}
	return "other"
}

// Msg is one control message; which fields mean something depends on Type.
type Msg struct {
	Type MsgType

	// Join and JoinOK.
	Version       uint8
	Token         string
	SessionID     [16]byte
	Secret        [32]byte
	Path          PathInfo
	ConnIndex     uint8
	FlowWindow    uint32 // receive window the sender grants each flow
	SessionWindow uint64 // receive window the sender grants the session
	// Device is the client's device profile (Join; zero in JoinOK).
	Device Device

	// JoinErr, Reset and Close.
	Code   uint8
	Reason string

	// Ping and Pong.
	Seq  uint32
	Time int64 // sender's clock in ns for Ping; echoed in Pong

	// Ack, Credit, SessionCredit, Reset; UDPOpen and UDPClose (the
	// association's id; Code is UDPClose's).
	Flow  uint32
	Value uint64 // Ack: next block expected; Credit/SessionCredit: max offset; Reset: final offset sent; Pong: bytes received

	// Tier: the user's tier, opaque to transport (internal/tier's
	// encoding). Parsing copies it.
	Body []byte
}

// AppendMsg appends the framed encoding of m: type, 2-byte body length,
// body.
func AppendMsg(b []byte, m *Msg) []byte {
	start := len(b)
	b = append(b, byte(m.Type), 0, 0)
	switch m.Type {
	case MsgJoin, MsgJoinOK:
		b = append(b, m.Version)
		b = appendStr(b, m.Token)
		b = append(b, m.SessionID[:]...)
		b = append(b, m.Secret[:]...)
		b = appendStr(b, m.Path.Name)
		b = append(b, m.Path.Medium, m.Path.Operator)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(m.Path.PriceGB))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(m.Path.RateMbps))
		b = append(b, m.ConnIndex)
		b = binary.BigEndian.AppendUint32(b, m.FlowWindow)
		b = binary.BigEndian.AppendUint64(b, m.SessionWindow)
		metered := byte(0)
		if m.Device.Metered {
			metered = 1
		}
		b = binary.BigEndian.AppendUint16(b, m.Device.MTU)
		b = append(b, m.Device.CPU, metered)
	case MsgJoinErr, MsgClose, MsgGoAway:
		b = append(b, m.Code)
		b = appendStr(b, m.Reason)
	case MsgPing:
		b = binary.BigEndian.AppendUint32(b, m.Seq)
		b = binary.BigEndian.AppendUint64(b, uint64(m.Time))
	case MsgPong:
		b = binary.BigEndian.AppendUint32(b, m.Seq)
		b = binary.BigEndian.AppendUint64(b, uint64(m.Time))
		b = binary.BigEndian.AppendUint64(b, m.Value)
	case MsgAck, MsgCredit:
		b = binary.BigEndian.AppendUint32(b, m.Flow)
		b = binary.BigEndian.AppendUint64(b, m.Value)
	case MsgUDPOpen:
		b = binary.BigEndian.AppendUint32(b, m.Flow)
	case MsgUDPClose:
		b = binary.BigEndian.AppendUint32(b, m.Flow)
		b = append(b, m.Code)
	case MsgSessionCredit:
		b = binary.BigEndian.AppendUint64(b, m.Value)
	case MsgReset:
		b = binary.BigEndian.AppendUint32(b, m.Flow)
		b = append(b, m.Code)
		b = binary.BigEndian.AppendUint64(b, m.Value)
	case MsgTier:
		b = append(b, m.Body[:min(len(m.Body), MaxControlBody)]...)
	}
	binary.BigEndian.PutUint16(b[start+1:], uint16(len(b)-start-3))
	return b
}

func appendStr(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// ParseMsgHeader returns the type and body length of a framed control
// message from its first 3 bytes.
func ParseMsgHeader(b []byte) (MsgType, int, error) {
	if len(b) < 3 {
		return 0, 0, Malformed("control header: %d bytes", len(b))
	}
	n := int(binary.BigEndian.Uint16(b[1:]))
	if n > MaxControlBody {
		return 0, 0, Malformed("control %v: body %d bytes > %d", MsgType(b[0]), n, MaxControlBody)
	}
	return MsgType(b[0]), n, nil
}

// ParseMsgBody parses the body of a control message of type t into m.
// Trailing bytes are an error, so a message has one encoding.
func ParseMsgBody(t MsgType, body []byte, m *Msg) error {
	*m = Msg{Type: t}
	r := wirebuf.NewReader(body)
	switch t {
	case MsgJoin, MsgJoinOK:
		m.Version = r.U8()
		m.Token = r.Str()
		r.Copy(m.SessionID[:])
		r.Copy(m.Secret[:])
		m.Path.Name = r.Str()
		m.Path.Medium = r.U8()
		m.Path.Operator = r.U8()
		m.Path.PriceGB = r.F64()
		m.Path.RateMbps = r.F64()
		m.ConnIndex = r.U8()
		m.FlowWindow = r.U32()
		m.SessionWindow = r.U64()
		m.Device.MTU = r.U16()
		m.Device.CPU = r.U8()
		metered := r.U8()
		m.Device.Metered = metered == 1
		if !r.Short() && (m.Device.CPU > 2 || metered > 1) {
			return Malformed("%v: device profile cpu %d metered %d", t, m.Device.CPU, metered)
		}
		if !r.Short() && (math.IsNaN(m.Path.PriceGB) || m.Path.PriceGB < 0 || m.Path.PriceGB > MaxPriceGB) {
			return Malformed("%v: price %v is outside 0..%v USD/GB", t, m.Path.PriceGB, MaxPriceGB)
		}
		if t == MsgJoin && !r.Short() {
			if err := CheckPathName(m.Path.Name); err != nil {
				return Malformed("%v: %v", t, err)
			}
		}
		if !r.Short() && (math.IsNaN(m.Path.RateMbps) || m.Path.RateMbps < 0 || math.IsInf(m.Path.RateMbps, 0)) {
			return Malformed("%v: rate %v", t, m.Path.RateMbps)
		}
	case MsgJoinErr, MsgClose, MsgGoAway:
		m.Code = r.U8()
		m.Reason = r.Str()
	case MsgPing:
		m.Seq = r.U32()
		m.Time = int64(r.U64())
	case MsgPong:
		m.Seq = r.U32()
		m.Time = int64(r.U64())
		m.Value = r.U64()
	case MsgAck, MsgCredit:
		m.Flow = r.U32()
		m.Value = r.U64()
	case MsgUDPOpen:
		m.Flow = r.U32()
	case MsgUDPClose:
		m.Flow = r.U32()
		m.Code = r.U8()
	case MsgSessionCredit:
		m.Value = r.U64()
	case MsgReset:
		m.Flow = r.U32()
		m.Code = r.U8()
		m.Value = r.U64()
	case MsgTier:
		m.Body = append([]byte(nil), r.Rest()...)
	case MsgRetire: // no body
	default:
		return Malformed("control: unknown type %#x", uint8(t))
	}
	if r.Short() {
		return Malformed("%v: truncated body of %d bytes", t, len(body))
	}
	if r.Len() != 0 {
		return Malformed("%v: %d trailing bytes", t, r.Len())
	}
	return nil
}

// ParseMsg parses one whole framed message from b and returns the rest.
func ParseMsg(b []byte, m *Msg) ([]byte, error) {
	t, n, err := ParseMsgHeader(b)
	if err != nil {
		return nil, err
	}
	if len(b) < 3+n {
		return nil, Malformed("%v: truncated", t)
	}
	return b[3+n:], ParseMsgBody(t, b[3:3+n], m)
}

// MaxPriceGB is the highest price per GB a path may claim (USD): a
// peer's price is multiplied into the operator's cost figures and must
// stay a sane number.
const MaxPriceGB = 1000

// MaxPathName is the longest path name, in bytes.
const MaxPathName = 64

// CheckPathName says what is wrong with a path name, if anything: it is
// 1 to MaxPathName bytes of printable UTF-8 (spaces allowed, no control
// characters). The name reaches logs, metrics labels, the dashboard, the
// accounting database and its reports, none of which should take bytes
// a terminal, a spreadsheet or PostgreSQL would read otherwise.
func CheckPathName(name string) error {
	if name == "" || len(name) > MaxPathName {
		return fmt.Errorf("path name of %d bytes (1 to %d)", len(name), MaxPathName)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("path name %q is not UTF-8", name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("path name %q holds a character that does not print (%U)", name, r)
		}
	}
	return nil
}
