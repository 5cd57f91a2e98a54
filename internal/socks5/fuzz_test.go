package socks5

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func FuzzParseAddr(f *testing.F) {
	for _, b := range [][]byte{
		reqIPv4[3:], reqIPv6[3:], reqDomain[3:],
		cat(reqDomain[3:], []byte("trailing")),
		{0x03, 0x00, 0x00, 0x50},
		{0x03, 0xff, 'a'},
		{0x05, 1, 2, 3, 4, 0, 80},
		{0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 1},
		{},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, rest, err := ParseAddr(b)
		r := bytes.NewReader(b)
		ra, rerr := ReadAddr(r)
		if err != nil {
			if !bytes.Equal(rest, b) {
				t.Fatalf("ParseAddr(%x) failed but consumed input", b)
			}
			if rerr == nil {
				t.Fatalf("ReadAddr(%x) = %v, but ParseAddr failed: %v", b, ra, err)
			}
			return
		}
		if rerr != nil || ra != a || r.Len() != len(rest) {
			t.Fatalf("ReadAddr(%x) = %v, %v with %d left; ParseAddr = %v with %d left", b, ra, rerr, r.Len(), a, len(rest))
		}
		enc, err := AppendAddr(nil, a)
		if err != nil {
			t.Fatalf("AppendAddr(%#v) after ParseAddr(%x): %v", a, b, err)
		}
		if consumed := b[:len(b)-len(rest)]; !bytes.Equal(enc, consumed) {
			t.Fatalf("AppendAddr(%#v) = %x, parsed from %x", a, enc, consumed)
		}
		a2, rest2, err := ParseAddr(enc)
		if err != nil || a2 != a || len(rest2) != 0 {
			t.Fatalf("re-parse of %x = %#v, %x, %v; want %#v", enc, a2, rest2, err, a)
		}
	})
}

func FuzzHandshake(f *testing.F) {
	for _, tt := range handshakeCases {
		f.Add(tt.in, tt.creds != nil)
	}
	f.Fuzz(func(t *testing.T, in []byte, auth bool) {
		var creds *Credentials
		if auth {
			creds = testCreds
		}
		r := bytes.NewReader(in)
		c := &memConn{r: r}
		req, err := Handshake(c, creds)
		// The longest possible server output: a method selection, an
		// auth status and a reply with the 0.0.0.0:0 address.
		if c.w.Len() > 2+2+10 {
			t.Fatalf("server wrote %d bytes: %x", c.w.Len(), c.w.Bytes())
		}
		if err != nil {
			if len(in) == 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("empty input: %v", err)
			}
			return
		}
		if req.Cmd != CmdConnect {
			t.Fatalf("Handshake accepted command 0x%02x", req.Cmd)
		}
		if _, err := AppendAddr(nil, req.Dest); err != nil {
			t.Fatalf("Handshake returned unencodable %#v: %v", req.Dest, err)
		}
		if auth && !bytes.Contains(in, authMsg(testCreds.User, testCreds.Pass)) {
			t.Fatalf("Handshake authenticated %x without the credentials", in)
		}
	})
}

func FuzzConnect(f *testing.F) {
	okReply := cat([]byte{0x05, 0x00, 0x00}, reqIPv6[3:])
	f.Add(cat(selNoAuth, okReply), false)
	f.Add(cat(selUserPass, authOK, okReply), true)
	f.Add(cat(selNoAuth, []byte{0x05, 0x05, 0x00, 0x03, 0x00}), false)
	f.Add(cat(selUserPass, authFail), true)
	f.Add(selNone, false)
	f.Fuzz(func(t *testing.T, in []byte, auth bool) {
		var creds *Credentials
		if auth {
			creds = testCreds
		}
		c := &memConn{r: bytes.NewReader(in)}
		bound, err := Connect(c, creds, addrDomain)
		if err == nil {
			if _, err := AppendAddr(nil, bound); err != nil {
				t.Fatalf("Connect returned unencodable %#v: %v", bound, err)
			}
		}
	})
}

// FuzzUDPHeader: ParseUDPHeader never panics and never reads past its
// input (the fuzzer's slice is cut to its length, so a read past it
// panics); what it decodes encodes back to the same bytes, RSV aside, with
// the payload the datagram's own tail.
func FuzzUDPHeader(f *testing.F) {
	for _, b := range [][]byte{
		cat([]byte{0, 0, 0}, reqIPv4[3:], []byte("payload")),
		cat([]byte{0, 0, 0}, reqIPv6[3:]),
		cat([]byte{0, 0, 0}, reqDomain[3:], []byte{0xde, 0xad}),
		cat([]byte{0, 0, 3}, reqIPv4[3:]),
		{0xff, 0xff, 0, 0x01, 1, 2, 3, 4, 0, 80},
		{0, 0, 0, 0x03, 0x00, 0x00, 0x50},
		{0, 0, 0, 0x03, 0xff, 'a'},
		{0, 0, 0, 0x05, 1, 2, 3, 4, 0, 80},
		{0, 0},
		{},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)]
		h, payload, err := ParseUDPHeader(b)
		if err != nil {
			if payload != nil || h != (UDPHeader{}) {
				t.Fatalf("ParseUDPHeader(%x) failed (%v) but returned %+v, %x", b, err, h, payload)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrAddressType) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("ParseUDPHeader(%x): unexpected error %v", b, err)
			}
			return
		}
		hdrLen := len(b) - len(payload)
		if hdrLen < 3+1+2 || hdrLen > MaxUDPHeaderLen || (len(payload) > 0 && &payload[0] != &b[hdrLen]) {
			t.Fatalf("ParseUDPHeader(%x): header of %d bytes, payload %x not the datagram's tail", b, hdrLen, payload)
		}
		enc, err := AppendUDPHeader(nil, h)
		if err != nil {
			t.Fatalf("AppendUDPHeader(%+v) after ParseUDPHeader(%x): %v", h, b, err)
		}
		if want := cat([]byte{0, 0}, b[2:hdrLen]); !bytes.Equal(enc, want) {
			t.Fatalf("AppendUDPHeader(%+v) = %x, parsed from %x", h, enc, b[:hdrLen])
		}
		h2, p2, err := ParseUDPHeader(append(enc, payload...))
		if err != nil || h2 != h || !bytes.Equal(p2, payload) {
			t.Fatalf("re-parse of %x = %+v, %x, %v; want %+v, %x", enc, h2, p2, err, h, payload)
		}
	})
}
