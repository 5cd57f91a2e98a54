package wire

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzParseCodedDatagram(f *testing.F) {
	f.Add(AppendCodedDatagram(nil, 7, 1, 2, 1234, 9, []byte{1, 192, 0, 2, 1, 0, 53}, []byte("voice")))
	f.Add(append(AppendParityHeader(nil, 7, 2, 2, 1, 0), 0, 3, 'a', 'b', 'c'))
	f.Add([]byte{3, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)]
		if g, i, c, unit, err := ParseCodedDatagram(b); err == nil {
			sent, id, addr, payload, err := ParseUnit(unit)
			if err != nil {
				t.Fatalf("a parsed datagram's unit: %v", err)
			}
			if got := AppendCodedDatagram(nil, g, i, c, sent, id, addr, payload); !bytes.Equal(got, b) {
				t.Fatalf("% x parsed and appended is % x", b, got)
			}
		}
		if g, i, k, m, c, shard, err := ParseParity(b); err == nil {
			if i < k || int(k)+int(m) > DatagramMaxShards || m == 0 {
				t.Fatalf("parity %d of k=%d m=%d accepted", i, k, m)
			}
			if got := append(AppendParityHeader(nil, g, i, k, m, c), shard...); !bytes.Equal(got, b) {
				t.Fatalf("% x parsed and appended is % x", b, got)
			}
			if u, err := UnpadUnit(shard); err == nil && len(u) > len(shard)-2 {
				t.Fatalf("unit of %d bytes from a shard of %d", len(u), len(shard))
			}
		}
	})
}

func TestParseCodedDatagram(t *testing.T) {
	addr := []byte{1, 10, 0, 0, 1, 0, 53}
	b := AppendCodedDatagram(nil, 1<<31, 3, 1, 77, 9, addr, []byte("hi"))
	g, i, c, unit, err := ParseCodedDatagram(b)
	if err != nil || g != 1<<31 || i != 3 || c != 1 {
		t.Fatalf("%d %d %d %v", g, i, c, err)
	}
	sent, id, a, p, err := ParseUnit(unit)
	if err != nil || sent != 77 || id != 9 || !bytes.Equal(a, addr) || string(p) != "hi" {
		t.Fatalf("%d %d % x %q %v", sent, id, a, p, err)
	}
	shard := make([]byte, 2+len(unit)+5)
	PadUnit(shard, unit)
	if u, err := UnpadUnit(shard); err != nil || !bytes.Equal(u, unit) {
		t.Fatalf("unpad: % x %v", u, err)
	}
	for _, bad := range [][]byte{
		nil, {2}, b[:7], b[:14], // short
		AppendCodedDatagram(nil, 1, 8, 0, 0, 0, addr, nil),                        // position past the group
		AppendCodedDatagram(nil, 1, 0, 0, 0, 0, []byte{9, 1, 2, 3, 4, 5, 6}, nil), // address type
	} {
		if _, _, _, _, err := ParseCodedDatagram(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: %v, want malformed", bad, err)
		}
	}
	for _, bad := range [][]byte{
		nil, {3, 0, 0, 0, 1, 1, 1, 1, 0, 0}, // no shard length
		append(AppendParityHeader(nil, 1, 0, 1, 1, 0), 0, 0), // a data position
		append(AppendParityHeader(nil, 1, 2, 2, 0, 0), 0, 0), // m = 0
		append(AppendParityHeader(nil, 1, 7, 3, 5, 0), 0, 0), // m > 4
		append(AppendParityHeader(nil, 1, 8, 6, 3, 0), 0, 0), // k+m > 8
		append(AppendParityHeader(nil, 1, 1, 0, 1, 0), 0, 0), // k = 0
	} {
		if _, _, _, _, _, _, err := ParseParity(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: %v, want malformed", bad, err)
		}
	}
	if _, err := UnpadUnit([]byte{0, 9, 1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a shard claiming more than it holds: %v", err)
	}
}
