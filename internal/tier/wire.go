package tier

import (
	"braid/internal/wirebuf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"braid/scheduler"
)

// Wire form of a Tier, version 1: what the concentrator pushes to a client
// in one control message. All integers are big-endian; a float64 is its
// IEEE 754 bits as a uint64 and must be finite with the sign bit clear;
// a string is a 1-byte length then that many bytes.
//
//	version       uint8    1
//	name          string   1 to 64 bytes, printable ASCII, no spaces
//	revenue       float64  USD per GB
//	classes       uint8    1 to 16, then per class:
//	  name          string   class 0: "default"; others unique, same rule as tier names
//	  min_goodput   float64  bytes per second; 0: none
//	  p99_latency   int64    nanoseconds, >= 0; 0: none
//	  residual_loss float64  fraction of blocks, < 1; 0: none
//	  survive       uint8    0 to 7
//	  max_cost      float64  USD per GB; 0: none
//	  ports         uint8    0 to 32 (0 in class 0), then per range:
//	    lo            uint16   1 to hi
//	    hi            uint16   lo to 65535
//	  users         uint8    0 to 32 (0 in class 0), then per user:
//	    user          string   1 to 255 bytes
//
// Class 1 and later lists at least one port range or user.
//
// Version 2 is version 1 with the real-time terms of every class after
// the last class, in class order:
//
//	deadline      int64    nanoseconds, >= 0; 0: none
//	max_jitter    int64    nanoseconds, >= 0; 0: none
//
// AppendBinary writes version 1 when no class has a real-time term, so a
// client of protocol version 4, which reads only version 1, is sent what
// it reads; AppendBinaryV1 drops the terms for such a client. The whole
// encoding is at most MaxEncoded (1000) bytes, and nothing follows it.

// wireVersion is the first byte of the wire form, as written when a
// class has a real-time term.
const wireVersion = 2

// ErrMalformed is wrapped by every error ParseBinary returns.
var ErrMalformed = errors.New("malformed tier")

// errTooBig is AppendBinary's error for a tier over MaxEncoded bytes.
var errTooBig = fmt.Errorf("tier encodes to more than %d bytes", MaxEncoded)

// encodedLen is the size of t's wire form; t has passed check.
func (t *Tier) encodedLen() int {
	n := 1 + 1 + len(t.Name) + 8 + 1
	for i := range t.Classes {
		c := &t.Classes[i]
		n += 1 + len(c.Name) + 8 + 8 + 8 + 1 + 8 + 1 + 4*len(c.Ports) + 1
		for _, u := range c.Users {
			n += 1 + len(u)
		}
	}
	if t.realtime() {
		n += 16 * len(t.Classes)
	}
	return n
}

// realtime says whether some class has a real-time term (version 2).
func (t *Tier) realtime() bool {
	for i := range t.Classes {
		if s := &t.Classes[i].SLA; s.Deadline != 0 || s.MaxJitter != 0 {
			return true
		}
	}
	return false
}

// AppendBinaryV1 is AppendBinary in version 1, the real-time terms left
// out: for a peer that reads no other.
func (t *Tier) AppendBinaryV1(b []byte) ([]byte, error) {
	c := *t
	c.Classes = make([]Class, len(t.Classes))
	copy(c.Classes, t.Classes)
	for i := range c.Classes {
		c.Classes[i].SLA.Deadline, c.Classes[i].SLA.MaxJitter = 0, 0
	}
	return c.AppendBinary(b)
}

// AppendBinary appends t's wire form to b. It fails, returning b
// unchanged, when t breaks a rule of the wire form (the error is a
// *fielderr.Error naming the Go field) or encodes to more than MaxEncoded
// bytes. A Tier from the policy file's parser (internal/policyfile) always
// encodes.
func (t *Tier) AppendBinary(b []byte) ([]byte, error) {
	if err := t.check(); err != nil {
		return b, fmt.Errorf("encode tier: %w", err)
	}
	if n := t.encodedLen(); n > MaxEncoded {
		return b, fmt.Errorf("%w (%d)", errTooBig, n)
	}
	rt := t.realtime()
	if rt {
		b = append(b, wireVersion)
	} else {
		b = append(b, 1)
	}
	b = appendString(b, t.Name)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(t.RevenueGB))
	b = append(b, byte(len(t.Classes)))
	for i := range t.Classes {
		c := &t.Classes[i]
		b = appendString(b, c.Name)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.SLA.MinGoodput))
		b = binary.BigEndian.AppendUint64(b, uint64(c.SLA.P99Latency))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.SLA.ResidualLoss))
		b = append(b, byte(c.SLA.Survive))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.SLA.MaxCostGB))
		b = append(b, byte(len(c.Ports)))
		for _, r := range c.Ports {
			b = binary.BigEndian.AppendUint16(b, r.Lo)
			b = binary.BigEndian.AppendUint16(b, r.Hi)
		}
		b = append(b, byte(len(c.Users)))
		for _, u := range c.Users {
			b = appendString(b, u)
		}
	}
	if rt {
		for i := range t.Classes {
			b = binary.BigEndian.AppendUint64(b, uint64(t.Classes[i].SLA.Deadline))
			b = binary.BigEndian.AppendUint64(b, uint64(t.Classes[i].SLA.MaxJitter))
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// ParseBinary decodes a Tier's wire form, which must fill b exactly. It
// does not retain b. Every error wraps ErrMalformed; a Tier it returns
// obeys the same rules as one from the policy file and re-encodes to b.
func ParseBinary(b []byte) (*Tier, error) {
	if len(b) > MaxEncoded {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxEncoded)
	}
	r := wirebuf.NewReader(b)
	v := r.U8()
	if !r.Short() && v != 1 && v != wireVersion {
		return nil, fmt.Errorf("%w: version %d, want 1 or %d", ErrMalformed, v, wireVersion)
	}
	t := &Tier{Name: r.Str(), RevenueGB: r.F64()}
	n := int(r.U8())
	if !r.Short() && (n == 0 || n > MaxClasses) {
		return nil, fmt.Errorf("%w: %d classes, want 1 to %d", ErrMalformed, n, MaxClasses)
	}
	for i := 0; i < n && !r.Short(); i++ {
		c := Class{Name: r.Str()}
		c.SLA = scheduler.SLA{
			MinGoodput:   r.F64(),
			P99Latency:   time.Duration(r.U64()),
			ResidualLoss: r.F64(),
			Survive:      int(r.U8()),
			MaxCostGB:    r.F64(),
		}
		np := int(r.U8())
		if np > MaxPortRanges {
			return nil, fmt.Errorf("%w: class %d has %d port ranges, at most %d", ErrMalformed, i, np, MaxPortRanges)
		}
		for j := 0; j < np && !r.Short(); j++ {
			c.Ports = append(c.Ports, PortRange{r.U16(), r.U16()})
		}
		nu := int(r.U8())
		if nu > MaxUsers {
			return nil, fmt.Errorf("%w: class %d has %d users, at most %d", ErrMalformed, i, nu, MaxUsers)
		}
		for j := 0; j < nu && !r.Short(); j++ {
			c.Users = append(c.Users, r.Str())
		}
		t.Classes = append(t.Classes, c)
	}
	if v == wireVersion {
		for i := range t.Classes {
			if r.Short() {
				break
			}
			t.Classes[i].SLA.Deadline = time.Duration(r.U64())
			t.Classes[i].SLA.MaxJitter = time.Duration(r.U64())
		}
		if !r.Short() && !t.realtime() {
			// Version 1 says this; one tier has one encoding.
			return nil, fmt.Errorf("%w: version %d without real-time terms", ErrMalformed, v)
		}
	}
	if r.Short() {
		return nil, fmt.Errorf("%w: truncated (%d bytes)", ErrMalformed, len(b))
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, r.Len())
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return t, nil
}
