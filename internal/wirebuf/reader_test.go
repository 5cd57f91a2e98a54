package wirebuf

import (
	"math"
	"testing"
)

func TestReader(t *testing.T) {
	b := []byte{7, 0x01, 0x02, 0, 0, 0, 3, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i', 9, 8, 5}
	r := NewReader(b)
	if v := r.U8(); v != 7 {
		t.Fatalf("U8 %d", v)
	}
	if v := r.U16(); v != 0x0102 {
		t.Fatalf("U16 %#x", v)
	}
	if v := r.U32(); v != 3 {
		t.Fatalf("U32 %d", v)
	}
	if v := r.F64(); v != 1 {
		t.Fatalf("F64 %v", v)
	}
	if v := r.Str(); v != "hi" {
		t.Fatalf("Str %q", v)
	}
	var two [2]byte
	r.Copy(two[:])
	if two != [2]byte{9, 8} || r.Len() != 1 || r.Short() {
		t.Fatalf("Copy %v, %d left, short %v", two, r.Len(), r.Short())
	}
	if rest := r.Rest(); len(rest) != 1 || rest[0] != 5 || r.Len() != 0 {
		t.Fatalf("Rest %v", rest)
	}
	// Past the end: zeros, short, and it stays short.
	if v := r.U64(); v != 0 || !r.Short() {
		t.Fatalf("U64 past the end: %d, short %v", v, r.Short())
	}
	r = NewReader([]byte{0, 0, 0, 0, 0, 0, 0xf0, 0x7f})
	if v := r.U64(); math.Float64frombits(v) == 0 || r.Short() {
		t.Fatalf("U64 %#x", v)
	}
	// A string longer than what is left is short, not a panic.
	r = NewReader([]byte{5, 'a'})
	if s := r.Str(); s != "" || !r.Short() {
		t.Fatalf("truncated Str %q, short %v", s, r.Short())
	}
}
