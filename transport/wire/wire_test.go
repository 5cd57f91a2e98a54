package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestShardHeaderRoundTrip(t *testing.T) {
	hs := []ShardHeader{
		{K: 1, ShardLen: 0, BlockLen: 0, Flags: FlagFin},
		{K: 8, M: 2, Index: 9, ShardLen: 8192, Flow: 7, Block: 1 << 40, Offset: 1 << 50, BlockLen: 65536},
		{K: 1, M: 1, Index: 1, ShardLen: 7, Flow: 1, BlockLen: 7, Flags: FlagOpen},
		{K: 1, ShardLen: 1, BlockLen: 1, Flags: FlagReply | FlagFin},
		{K: 3, M: 1, ShardLen: 4, BlockLen: 10, Flags: FlagFin, Block: 9, Offset: 100},
	}
	for _, h := range hs {
		b := AppendShardHeader(nil, &h)
		if len(b) != ShardHeaderLen {
			t.Fatalf("encoded %d bytes, want %d", len(b), ShardHeaderLen)
		}
		var got ShardHeader
		if err := ParseShardHeader(b, &got); err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if got != h {
			t.Fatalf("round trip: got %+v, want %+v", got, h)
		}
	}
}

func TestShardHeaderRejects(t *testing.T) {
	good := ShardHeader{K: 4, M: 2, Index: 1, ShardLen: 250, Flow: 1, Block: 3, Offset: 1000, BlockLen: 1000}
	cases := map[string]func(_ []byte, h *ShardHeader){
		"unknown flag":    func(b []byte, h *ShardHeader) { h.Flags = 0x80 },
		"open and reply":  func(b []byte, h *ShardHeader) { h.Flags = FlagOpen | FlagReply; h.Block = 0 },
		"open on block 3": func(b []byte, h *ShardHeader) { h.Flags = FlagOpen },
		"k zero":          func(b []byte, h *ShardHeader) { h.K = 0 },
		"k+m too big":     func(b []byte, h *ShardHeader) { h.K, h.M = 20, 13 },
		"index":           func(b []byte, h *ShardHeader) { h.Index = 6 },
		"shard too big":   func(b []byte, h *ShardHeader) { h.K, h.BlockLen, h.ShardLen = 1, MaxShardSize+1, MaxShardSize+1 },
		"length mismatch": func(b []byte, h *ShardHeader) { h.ShardLen = 251 },
		"long open": func(_ []byte, h *ShardHeader) {
			h.Flags, h.Block, h.K, h.M, h.Index, h.ShardLen, h.BlockLen = FlagOpen, 0, 1, 0, 0, 300, 300
		},
		"long reply": func(_ []byte, h *ShardHeader) {
			h.Flags, h.Block, h.K, h.M, h.Index, h.ShardLen, h.BlockLen = FlagReply, 0, 1, 0, 0, 2, 2
		},
		"offset overflow": func(b []byte, h *ShardHeader) { h.Offset = 1<<64 - 10 },
	}
	for name, mutate := range cases {
		h := good
		mutate(nil, &h)
		b := AppendShardHeader(nil, &h)
		var got ShardHeader
		if err := ParseShardHeader(b, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	for name, at := range map[string]int{"frame type": 0, "reserved": 5} {
		b := AppendShardHeader(nil, &good)
		b[at] ^= 0x11
		var got ShardHeader
		if err := ParseShardHeader(b, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	var got ShardHeader
	if err := ParseShardHeader(make([]byte, ShardHeaderLen-1), &got); !errors.Is(err, ErrMalformed) {
		t.Errorf("short header: %v", err)
	}
}

func TestMsgRoundTrip(t *testing.T) {
	msgs := []Msg{
		{Type: MsgJoin, Version: 1, Token: "tok", SessionID: [16]byte{1}, Secret: [32]byte{2},
			Path:      PathInfo{Name: "lte", Medium: MediumCellular, Operator: OperatorPartner, PriceGB: 3.5},
			ConnIndex: 2, FlowWindow: 1 << 20, SessionWindow: 1 << 25},
		{Type: MsgJoinOK, Version: 1, SessionID: [16]byte{9}, FlowWindow: 1 << 16, SessionWindow: 1 << 20},
		{Type: MsgJoin, Version: 1, Token: "t", Path: PathInfo{Name: "a"}, Device: Device{MTU: 1280, CPU: 1, Metered: true}},
		{Type: MsgJoinErr, Code: JoinErrAuth, Reason: "no"},
		{Type: MsgPing, Seq: 5, Time: 123456789},
		{Type: MsgPong, Seq: 5, Time: -1, Value: 1 << 40},
		{Type: MsgAck, Flow: 3, Value: 99},
		{Type: MsgCredit, Flow: 3, Value: 1 << 33},
		{Type: MsgSessionCredit, Value: 1 << 40},
		{Type: MsgRetire},
		{Type: MsgGoAway, Reason: "draining"},
		{Type: MsgReset, Flow: 8, Code: 1, Value: 1000},
		{Type: MsgClose, Code: 0, Reason: "bye"},
		{Type: MsgTier, Body: []byte{1, 2, 3}},
	}
	var stream []byte
	for i := range msgs {
		stream = AppendMsg(stream, &msgs[i])
	}
	for i := range msgs {
		var m Msg
		var err error
		stream, err = ParseMsg(stream, &m)
		if err != nil {
			t.Fatalf("%v: %v", msgs[i].Type, err)
		}
		if !reflect.DeepEqual(m, msgs[i]) {
			t.Fatalf("round trip: got %+v, want %+v", m, msgs[i])
		}
	}
	if len(stream) != 0 {
		t.Fatalf("%d bytes left", len(stream))
	}
}

func TestMsgRejects(t *testing.T) {
	ack := AppendMsg(nil, &Msg{Type: MsgAck, Flow: 1, Value: 2})
	bad := map[string][]byte{
		"short header":   {0x20, 0},
		"unknown type":   {0x7f, 0, 0},
		"truncated":      ack[:len(ack)-1],
		"trailing":       append(append([]byte{0x20, 0, 13}, ack[3:]...), 0),
		"too long":       {0x20, 0xff, 0xff},
		"body too short": {0x20, 0, 2, 0, 0},
	}
	for name, b := range bad {
		var m Msg
		if _, err := ParseMsg(b, &m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	// A NaN price is refused.
	j := AppendMsg(nil, &Msg{Type: MsgJoin, Path: PathInfo{PriceGB: 1}})
	i := bytes.Index(j, []byte{0x3f, 0xf0}) // float64 1.0
	j[i] = 0x7f
	j[i+1] = 0xf8
	var m Msg
	if _, err := ParseMsg(j, &m); !errors.Is(err, ErrMalformed) {
		t.Errorf("NaN price: %v", err)
	}
	// A CPU class or metered flag out of range is refused: the device
	// profile is the last 4 bytes of the body.
	for _, off := range []int{2, 1} {
		j = AppendMsg(nil, &Msg{Type: MsgJoin})
		j[len(j)-off] = 7
		if _, err := ParseMsg(j, &m); !errors.Is(err, ErrMalformed) {
			t.Errorf("device byte -%d = 7: %v", off, err)
		}
	}
}

func FuzzShardHeader(f *testing.F) {
	f.Add(AppendShardHeader(nil, &ShardHeader{K: 8, M: 2, Index: 3, ShardLen: 100, Flow: 1, Block: 2, Offset: 3, BlockLen: 800}))
	f.Add(AppendShardHeader(nil, &ShardHeader{K: 1, Flags: FlagFin}))
	f.Add(make([]byte, ShardHeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h ShardHeader
		if err := ParseShardHeader(b, &h); err != nil {
			return
		}
		// A header that parses re-encodes to the same bytes and obeys
		// the invariants the receiver relies on.
		if !bytes.Equal(AppendShardHeader(nil, &h), b[:ShardHeaderLen]) {
			t.Fatal("re-encoding differs")
		}
		if h.K == 0 || int(h.K)+int(h.M) > MaxShards || h.Index >= h.K+h.M || h.ShardLen > MaxShardSize ||
			int(h.ShardLen)*int(h.K) < int(h.BlockLen) {
			t.Fatalf("invariant broken: %+v", h)
		}
	})
}

func FuzzControlMsg(f *testing.F) {
	for _, m := range []Msg{
		{Type: MsgJoin, Token: "t", Path: PathInfo{Name: "a"}, FlowWindow: 1 << 20, SessionWindow: 1 << 22},
		{Type: MsgAck, Flow: 1, Value: 2}, {Type: MsgReset, Flow: 1}, {Type: MsgClose, Reason: "x"},
		{Type: MsgPing, Seq: 1},
	} {
		f.Add(AppendMsg(nil, &m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Msg
		rest, err := ParseMsg(b, &m)
		if err != nil {
			return
		}
		enc := AppendMsg(nil, &m)
		if !bytes.Equal(enc, b[:len(b)-len(rest)]) {
			t.Fatalf("re-encoding differs: %x vs %x", enc, b[:len(b)-len(rest)])
		}
	})
}

// A datagram parses back to what was appended, and garbage never panics
// or reads past its input.
func FuzzParseDatagram(f *testing.F) {
	f.Add(AppendDatagram(nil, 7, []byte{1, 192, 0, 2, 1, 0, 53}, []byte("query")))
	f.Add(AppendDatagram(nil, 1, []byte{3, 3, 'a', 'b', 'c', 1, 187}, nil))
	f.Add(AppendDatagram(nil, 1<<31, append([]byte{4}, make([]byte, 18)...), []byte{0}))
	f.Add([]byte{1, 0, 0, 0, 1, 3, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)]
		id, addr, payload, err := ParseDatagram(b)
		if err != nil {
			return
		}
		if got := AppendDatagram(nil, id, addr, payload); !bytes.Equal(got, b) {
			t.Fatalf("% x parsed and appended is % x", b, got)
		}
	})
}

func TestParseDatagram(t *testing.T) {
	for _, b := range [][]byte{nil, {1}, {2, 0, 0, 0, 1, 1, 1, 2, 3, 4, 0, 53}, {1, 0, 0, 0, 1, 9}, {1, 0, 0, 0, 1, 1, 1, 2}, {1, 0, 0, 0, 1, 3, 0, 0, 53}, {1, 0, 0, 0, 1, 3, 5, 'a', 0, 53}} {
		if _, _, _, err := ParseDatagram(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: %v, want malformed", b, err)
		}
	}
	id, addr, p, err := ParseDatagram(AppendDatagram(nil, 9, []byte{1, 10, 0, 0, 1, 0, 53}, []byte("hi")))
	if err != nil || id != 9 || !bytes.Equal(addr, []byte{1, 10, 0, 0, 1, 0, 53}) || string(p) != "hi" {
		t.Fatalf("%d % x %q %v", id, addr, p, err)
	}
	var m Msg
	for _, want := range []Msg{{Type: MsgUDPOpen, Flow: 3}, {Type: MsgUDPClose, Flow: 4, Code: 2}} {
		if rest, err := ParseMsg(AppendMsg(nil, &want), &m); err != nil || len(rest) != 0 || !reflect.DeepEqual(m, want) {
			t.Fatalf("%v: %+v %v", want.Type, m, err)
		}
	}
}

// A join's path name and price reach logs, labels, pages, the accounting
// database and its reports: a name that does not print or a price past
// MaxPriceGB is refused as malformed.
func TestJoinPathChecked(t *testing.T) {
	for _, c := range []struct {
		name  string
		price float64
		ok    bool
	}{{"lte", 3, true}, {"wi fi 2", 0, true}, {"ñandú", MaxPriceGB, true},
		{"", 1, false}, {"a\x00b", 1, false}, {"\xff\xfe", 1, false}, {"TOTAL\n", 1, false}, {"\x1b[31mred", 1, false},
		{strings.Repeat("x", MaxPathName+1), 1, false}, {"lte", 1e308, false}, {"lte", MaxPriceGB * 1.01, false}} {
		b := AppendMsg(nil, &Msg{Type: MsgJoin, Version: 1, Token: "t", Path: PathInfo{Name: c.name, PriceGB: c.price}})
		typ, n, err := ParseMsgHeader(b[:3])
		if err != nil {
			t.Fatal(err)
		}
		var m Msg
		err = ParseMsgBody(typ, b[3:3+n], &m)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Errorf("name %q price %v: %v", c.name, c.price, err)
		}
	}
}
