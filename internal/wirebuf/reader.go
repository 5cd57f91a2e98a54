// Package wirebuf reads the big-endian fields of braid's wire formats
// (transport's control messages, internal/tier's tier encoding) from a
// byte slice. A read past the end marks the reader short and yields
// zeros, so a parser reads every field and checks once at the end.
package wirebuf

import (
	"encoding/binary"
	"math"
)

// Reader consumes fields from the front of a byte slice it does not own.
type Reader struct {
	b     []byte
	short bool
}

// NewReader returns a Reader over b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Short reports whether a read ran past the end.
func (r *Reader) Short() bool { return r.short }

// Len returns the number of bytes not yet read.
func (r *Reader) Len() int { return len(r.b) }

// Take returns the next n bytes (a subslice), or nil and marks the
// reader short when fewer are left.
func (r *Reader) Take(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.short = true
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Rest returns every byte not yet read and consumes them.
func (r *Reader) Rest() []byte {
	v := r.b
	r.b = nil
	return v
}

// U8 reads one byte.
func (r *Reader) U8() uint8 {
	if v := r.Take(1); v != nil {
		return v[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (r *Reader) U16() uint16 {
	if v := r.Take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (r *Reader) U32() uint32 {
	if v := r.Take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (r *Reader) U64() uint64 {
	if v := r.Take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// F64 reads a float64 sent as its IEEE 754 bits in a big-endian uint64.
func (r *Reader) F64() float64 { return math.Float64frombits(r.U64()) }

// Str reads a string sent as a length byte and that many bytes.
func (r *Reader) Str() string {
	n := int(r.U8())
	return string(r.Take(n))
}

// Copy fills dst with the next len(dst) bytes.
func (r *Reader) Copy(dst []byte) {
	copy(dst, r.Take(len(dst)))
}
