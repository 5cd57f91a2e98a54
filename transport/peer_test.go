package transport

import (
	"braid/transport/wire"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/quic-go/quic-go"
)

// rawJoin opens a connection to ts and joins a new session by hand, so a
// test can then misbehave as a peer.
func rawJoin(t *testing.T, ts *testServer) (*quic.Conn, *quic.Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := dialerTo("raw", ts.addr(), ts.pin).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write(wire.AppendMsg(nil, &wire.Msg{Type: wire.MsgJoin, Version: wire.Version, Token: "tok", Path: wire.PathInfo{Name: "raw"},
		FlowWindow: 1 << 20, SessionWindow: 1 << 22}))
	var ok wire.Msg
	ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := readMsg(ctrl, &ok); err != nil || ok.Type != wire.MsgJoinOK {
		t.Fatalf("join: %v %v", ok.Type, err)
	}
	return qc, ctrl
}

func sendShard(t *testing.T, qc *quic.Conn, h wire.ShardHeader, payload []byte) {
	st, err := qc.OpenUniStream()
	if err != nil {
		return // the peer closed the connection already: what a misbehaving case may want
	}
	st.Write(append(wire.AppendShardHeader(nil, &h), payload...))
}

func TestMalformedFromPeer(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	open := wire.ShardHeader{Flags: wire.FlagOpen, K: 1, ShardLen: 7, Flow: 1, BlockLen: 7}
	dest := []byte{1, 127, 0, 0, 1, 0, 80}
	cases := map[string]func(qc *quic.Conn, ctrl *quic.Stream){
		"garbage shard header": func(qc *quic.Conn, _ *quic.Stream) {
			st, _ := qc.OpenUniStream()
			st.Write([]byte("this is not a shard header, not at all"))
		},
		"garbage control message": func(_ *quic.Conn, ctrl *quic.Stream) {
			ctrl.Write([]byte{0x7f, 0, 0})
		},
		"second join": func(_ *quic.Conn, ctrl *quic.Stream) {
			ctrl.Write(wire.AppendMsg(nil, &wire.Msg{Type: wire.MsgJoin, Version: wire.Version}))
		},
		"window overrun": func(qc *quic.Conn, _ *quic.Stream) {
			sendShard(t, qc, open, dest)
			time.Sleep(100 * time.Millisecond) // streams are not ordered among themselves
			sendShard(t, qc, wire.ShardHeader{K: 1, ShardLen: 10, Flow: 1, Block: 1, Offset: 1 << 30, BlockLen: 10}, make([]byte, 10))
		},
		"shard headers disagree": func(qc *quic.Conn, _ *quic.Stream) {
			sendShard(t, qc, open, dest)
			time.Sleep(100 * time.Millisecond)
			sendShard(t, qc, wire.ShardHeader{K: 2, ShardLen: 5, Flow: 1, Block: 1, BlockLen: 10}, make([]byte, 5))
			time.Sleep(50 * time.Millisecond)
			sendShard(t, qc, wire.ShardHeader{K: 2, Index: 1, ShardLen: 5, Flow: 1, Block: 1, BlockLen: 9}, make([]byte, 5))
		},
		"ack of a block never sent": func(qc *quic.Conn, ctrl *quic.Stream) {
			sendShard(t, qc, open, dest)
			time.Sleep(100 * time.Millisecond)
			ctrl.Write(wire.AppendMsg(nil, &wire.Msg{Type: wire.MsgAck, Flow: 1, Value: 1000}))
		},
		"compressed garbage": func(qc *quic.Conn, _ *quic.Stream) {
			sendShard(t, qc, open, dest)
			time.Sleep(100 * time.Millisecond)
			sendShard(t, qc, wire.ShardHeader{Flags: wire.FlagS2, K: 1, ShardLen: 10, Flow: 1, Block: 1, BlockLen: 10}, []byte("not s2 at all"[:10]))
		},
		"compressed block decoding past the window": func(qc *quic.Conn, _ *quic.Stream) {
			sendShard(t, qc, open, dest)
			time.Sleep(100 * time.Millisecond)
			// 300 KiB of zeros compress to a few bytes: the block claims
			// little but decodes past the 256 KiB initial window.
			big := s2.Encode(nil, make([]byte, 300<<10))
			sendShard(t, qc, wire.ShardHeader{Flags: wire.FlagS2, K: 1, ShardLen: uint32(len(big)), Flow: 1, Block: 1,
				BlockLen: uint32(len(big))}, big)
		},
		"truncated shard": func(qc *quic.Conn, _ *quic.Stream) {
			st, _ := qc.OpenUniStream()
			h := wire.ShardHeader{K: 1, ShardLen: 100, Flow: 1, BlockLen: 100}
			st.Write(wire.AppendShardHeader(nil, &h)[:20])
			st.Close()
		},
	}
	var protoErrs uint64 // all sessions' SessionStats.ProtocolErrors so far
	for name, misbehave := range cases {
		t.Run(name, func(t *testing.T) {
			qc, ctrl := rawJoin(t, ts)
			defer qc.CloseWithError(0, "")
			misbehave(qc, ctrl)
			select {
			case <-qc.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the concentrator kept a connection that broke the protocol")
			}
			var ae *quic.ApplicationError
			if err := context.Cause(qc.Context()); !errors.As(err, &ae) || !ae.Remote || ae.ErrorCode != 1 {
				t.Fatalf("closed with %v, want the peer's protocol-error close", err)
			}
			// The concentrator's session counted it, once.
			var n uint64
			for _, s := range ts.list() {
				n += s.Stats().ProtocolErrors.Load()
			}
			if n != protoErrs+1 {
				t.Errorf("protocol errors counted %d, want %d", n, protoErrs+1)
			}
			protoErrs = n
		})
	}
	// The concentrator goes on serving well-behaved clients.
	c := dialClient(t, Config{}, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, f, 1<<20, 2)
}
