package socks5

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestAddrString(t *testing.T) {
	tests := []struct {
		a    Addr
		want string
	}{
		{Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 80}, "1.2.3.4:80"},
		{Addr{IP: netip.MustParseAddr("::1"), Port: 80}, "[::1]:80"},
		{Addr{Name: "example.com", Port: 443}, "example.com:443"},
		{Addr{}, "invalid"},
		{Addr{IP: netip.MustParseAddr("1.2.3.4"), Name: "x", Port: 1}, "invalid"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.a, got, tt.want)
		}
	}
}

func TestAddrRoundTrip(t *testing.T) {
	tests := []struct {
		a   Addr
		enc []byte
	}{
		{Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 80},
			[]byte{0x01, 1, 2, 3, 4, 0x00, 0x50}},
		{Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 443},
			[]byte{0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb}},
		// A mapped address stays IPv6 so that decoding is the identity.
		{Addr{IP: netip.MustParseAddr("::ffff:1.2.3.4"), Port: 1},
			[]byte{0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 1}},
		{Addr{Name: "example.com", Port: 65535},
			append(append([]byte{0x03, 11}, "example.com"...), 0xff, 0xff)},
		// Names are opaque: an IP literal sent as a name stays a name.
		{Addr{Name: "10.0.0.1", Port: 22},
			append(append([]byte{0x03, 8}, "10.0.0.1"...), 0, 22)},
		{Addr{Name: strings.Repeat("a", 255), Port: 0},
			append(append([]byte{0x03, 255}, strings.Repeat("a", 255)...), 0, 0)},
	}
	for _, tt := range tests {
		prefix := []byte("pre")
		got, err := AppendAddr(prefix, tt.a)
		if err != nil {
			t.Fatalf("AppendAddr(%v): %v", tt.a, err)
		}
		if !bytes.Equal(got[3:], tt.enc) || string(got[:3]) != "pre" {
			t.Errorf("AppendAddr(%v) = %x, want pre+%x", tt.a, got, tt.enc)
		}
		in := append(bytes.Clone(tt.enc), "rest"...)
		a, rest, err := ParseAddr(in)
		if err != nil || a != tt.a || string(rest) != "rest" {
			t.Errorf("ParseAddr(%x) = %v, %q, %v; want %v, \"rest\"", in, a, rest, err, tt.a)
		}
		r := bytes.NewReader(in)
		a, err = ReadAddr(r)
		if err != nil || a != tt.a || r.Len() != len("rest") {
			t.Errorf("ReadAddr(%x) = %v, %v with %d left; want %v with 4 left", in, a, err, r.Len(), tt.a)
		}
	}
}

func TestAppendAddrErrors(t *testing.T) {
	tests := []Addr{
		{},
		{Port: 80},
		{Name: strings.Repeat("a", 256), Port: 80},
		{IP: netip.MustParseAddr("1.2.3.4"), Name: "example.com", Port: 80},
		{IP: netip.MustParseAddr("fe80::1%eth0"), Port: 80},
	}
	for _, a := range tests {
		b, err := AppendAddr([]byte("x"), a)
		if err == nil {
			t.Errorf("AppendAddr(%#v) succeeded with %x", a, b)
		}
		if string(b) != "x" {
			t.Errorf("AppendAddr(%#v) modified b on error: %x", a, b)
		}
	}
}

func TestParseAddrErrors(t *testing.T) {
	tests := []struct {
		in   []byte
		want error
	}{
		{nil, io.ErrUnexpectedEOF},
		{[]byte{0x01}, io.ErrUnexpectedEOF},
		{[]byte{0x01, 1, 2, 3, 4, 0}, io.ErrUnexpectedEOF},
		{[]byte{0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, io.ErrUnexpectedEOF},
		{[]byte{0x03}, io.ErrUnexpectedEOF},
		{[]byte{0x03, 3, 'a', 'b', 'c', 0}, io.ErrUnexpectedEOF},
		{[]byte{0x03, 3, 'a'}, io.ErrUnexpectedEOF},
		{[]byte{0x03, 0, 0, 80}, ErrProtocol},
		{[]byte{0x00, 1, 2, 3, 4, 0, 80}, ErrAddressType},
		{[]byte{0x02, 1, 2, 3, 4, 0, 80}, ErrAddressType},
		{[]byte{0x05, 1, 2, 3, 4, 0, 80}, ErrAddressType},
		{[]byte{0xff}, ErrAddressType},
	}
	for _, tt := range tests {
		_, rest, err := ParseAddr(tt.in)
		if !errors.Is(err, tt.want) {
			t.Errorf("ParseAddr(%x) error = %v, want %v", tt.in, err, tt.want)
		}
		if !bytes.Equal(rest, tt.in) {
			t.Errorf("ParseAddr(%x) rest = %x, want the input unchanged", tt.in, rest)
		}
		_, err = ReadAddr(bytes.NewReader(tt.in))
		if !errors.Is(err, tt.want) {
			t.Errorf("ReadAddr(%x) error = %v, want %v", tt.in, err, tt.want)
		}
	}
}

func TestAddrFromAddrPort(t *testing.T) {
	ap := netip.MustParseAddrPort("[::1]:8080")
	if got, want := AddrFromAddrPort(ap), (Addr{IP: ap.Addr(), Port: 8080}); got != want {
		t.Errorf("AddrFromAddrPort(%v) = %v, want %v", ap, got, want)
	}
}
