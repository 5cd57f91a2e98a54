package socks5

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestUDPHeaderRoundTrip(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		name string
		h    UDPHeader
		wire []byte // header bytes, payload excluded
	}{
		{"ipv4", UDPHeader{Addr: addrIPv4}, []byte{0, 0, 0, 0x01, 127, 0, 0, 1, 0x00, 0x50}},
		{"ipv6", UDPHeader{Addr: addrIPv6}, cat([]byte{0, 0, 0}, reqIPv6[3:])},
		{"domain", UDPHeader{Addr: addrDomain}, cat([]byte{0, 0, 0}, reqDomain[3:])},
		{"longest name", UDPHeader{Addr: Addr{Name: long, Port: 53}},
			cat([]byte{0, 0, 0, 0x03, 255}, []byte(long), []byte{0, 53})},
		{"ipv4-mapped stays ipv6", UDPHeader{Addr: Addr{IP: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 1}},
			cat([]byte{0, 0, 0, 0x04}, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), []byte{0, 1})},
		{"fragment", UDPHeader{Frag: 0x81, Addr: addrIPv4}, []byte{0, 0, 0x81, 0x01, 127, 0, 0, 1, 0x00, 0x50}},
		{"unspecified", UDPHeader{Addr: Addr{IP: netip.IPv4Unspecified()}}, []byte{0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wire) > MaxUDPHeaderLen {
				t.Fatalf("header of %d bytes, MaxUDPHeaderLen %d", len(tt.wire), MaxUDPHeaderLen)
			}
			prefix := []byte("pre")
			b, err := AppendUDPHeader(prefix, tt.h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b[len(prefix):], tt.wire) || string(b[:len(prefix)]) != "pre" {
				t.Fatalf("AppendUDPHeader = %x, want pre + %x", b, tt.wire)
			}
			for _, payload := range []string{"", "x", "hello, datagram"} {
				dgram := append(append([]byte(nil), tt.wire...), payload...)
				h, got, err := ParseUDPHeader(dgram)
				if err != nil {
					t.Fatalf("ParseUDPHeader(%x): %v", dgram, err)
				}
				if h != tt.h || string(got) != payload {
					t.Fatalf("ParseUDPHeader = %+v, %q; want %+v, %q", h, got, tt.h, payload)
				}
				// The payload is the datagram's own tail, not a copy.
				if len(got) > 0 && &got[0] != &dgram[len(tt.wire)] {
					t.Fatal("payload was copied")
				}
			}
		})
	}
}

func TestUDPHeaderRSVTolerated(t *testing.T) {
	h, payload, err := ParseUDPHeader([]byte{0xff, 0x01, 0, 0x01, 10, 0, 0, 1, 0, 53, 'q'})
	want := UDPHeader{Addr: Addr{IP: netip.MustParseAddr("10.0.0.1"), Port: 53}}
	if err != nil || h != want || string(payload) != "q" {
		t.Fatalf("ParseUDPHeader with RSV set = %+v, %q, %v", h, payload, err)
	}
}

func TestParseUDPHeaderErrors(t *testing.T) {
	good := cat([]byte{0, 0, 0}, reqDomain[3:])
	for i := range len(good) {
		h, payload, err := ParseUDPHeader(good[:i])
		if !errors.Is(err, io.ErrUnexpectedEOF) || h != (UDPHeader{}) || payload != nil {
			t.Errorf("cut at %d: %+v, %x, %v; want io.ErrUnexpectedEOF", i, h, payload, err)
		}
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.ErrUnexpectedEOF},
		{"atyp 0x00", []byte{0, 0, 0, 0x00, 1, 2, 3, 4, 0, 80}, ErrAddressType},
		{"atyp 0x05", []byte{0, 0, 0, 0x05, 1, 2, 3, 4, 0, 80}, ErrAddressType},
		{"empty name", []byte{0, 0, 0, 0x03, 0, 0, 80, 'x'}, ErrProtocol},
		{"name longer than the datagram", cat([]byte{0, 0, 0, 0x03, 200}, []byte("short"), []byte{0, 80}), io.ErrUnexpectedEOF},
		{"ipv6 cut in the port", cat([]byte{0, 0, 0}, reqIPv6[3:len(reqIPv6)-1]), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		h, payload, err := ParseUDPHeader(tt.in)
		if !errors.Is(err, tt.want) || h != (UDPHeader{}) || payload != nil {
			t.Errorf("%s: %+v, %x, %v; want %v", tt.name, h, payload, err, tt.want)
		}
	}
}

func TestAppendUDPHeaderErrors(t *testing.T) {
	for _, a := range []Addr{
		{},
		{Name: strings.Repeat("a", 256), Port: 1},
		{IP: netip.MustParseAddr("fe80::1%eth0"), Port: 1},
		{IP: netip.MustParseAddr("10.0.0.1"), Name: "x", Port: 1},
	} {
		b, err := AppendUDPHeader([]byte("keep"), UDPHeader{Addr: a})
		if err == nil || string(b) != "keep" {
			t.Errorf("AppendUDPHeader(%#v) = %q, %v; want an error and b untouched", a, b, err)
		}
	}
}

var (
	reqAssociate    = []byte{0x05, CmdUDPAssociate, 0x00, 0x01, 0, 0, 0, 0, 0, 0}
	reqAssociateAt  = []byte{0x05, CmdUDPAssociate, 0x00, 0x01, 127, 0, 0, 1, 0x30, 0x39}
	addrUnspecified = Addr{IP: netip.IPv4Unspecified()}
)

// TestHandshakeAssociate: HandshakeAssociate returns UDP ASSOCIATE
// requests and leaves the reply to the caller; CONNECT, authentication
// and refusals are Handshake's.
func TestHandshakeAssociate(t *testing.T) {
	tests := []struct {
		name    string
		creds   *Credentials
		in, out []byte
		want    Request
		wantErr error
	}{
		{name: "not known yet", in: cat(greetNoAuth, reqAssociate), out: selNoAuth,
			want: Request{Cmd: CmdUDPAssociate, Dest: addrUnspecified}},
		{name: "client address given", in: cat(greetNoAuth, reqAssociateAt), out: selNoAuth,
			want: Request{Cmd: CmdUDPAssociate, Dest: Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 12345}}},
		{name: "by name", in: cat(greetNoAuth, []byte{0x05, CmdUDPAssociate}, reqDomain[2:]), out: selNoAuth,
			want: Request{Cmd: CmdUDPAssociate, Dest: addrDomain}},
		{name: "with credentials", creds: testCreds, in: cat(greetUserPass, authMsg("alice", "s3cret"), reqAssociate),
			out: cat(selUserPass, authOK), want: Request{Cmd: CmdUDPAssociate, Dest: addrUnspecified, User: "alice"}},
		{name: "wrong credentials", creds: testCreds, in: cat(greetUserPass, authMsg("alice", "nope"), reqAssociate),
			out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
		{name: "connect still", in: cat(greetNoAuth, reqIPv4), out: selNoAuth,
			want: Request{Cmd: CmdConnect, Dest: addrIPv4}},
		{name: "bind refused", in: cat(greetNoAuth, []byte{0x05, CmdBind, 0x00}, reqIPv4[3:]),
			out: cat(selNoAuth, reply(CommandNotSupported)), wantErr: ErrCommandNotSupported,
			want: Request{Cmd: CmdBind, Dest: addrIPv4}},
		{name: "bad address type", in: cat(greetNoAuth, []byte{0x05, CmdUDPAssociate, 0x00, 0x07}),
			out: cat(selNoAuth, reply(AddressNotSupported)), wantErr: ErrAddressType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(cat(tt.in, []byte("after")))
			c := &memConn{r: r}
			req, err := HandshakeAssociate(c, tt.creds)
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) || req != tt.want {
				t.Fatalf("HandshakeAssociate = %+v, %v; want %+v, %v", req, err, tt.want, tt.wantErr)
			}
			if !bytes.Equal(c.w.Bytes(), tt.out) {
				t.Errorf("client received %x, want %x", c.w.Bytes(), tt.out)
			}
			if err == nil {
				if rest, _ := io.ReadAll(r); string(rest) != "after" {
					t.Errorf("left unread %q, want %q", rest, "after")
				}
			}
		})
	}
}

// TestAssociatePipe runs Associate against both server handshakes: the
// relay's address comes back from HandshakeAssociate's caller, and
// Handshake refuses the command.
func TestAssociatePipe(t *testing.T) {
	relayAddr := Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 40001}
	for _, udp := range []bool{true, false} {
		cli, srv := net.Pipe()
		cli.SetDeadline(time.Now().Add(5 * time.Second))
		srv.SetDeadline(time.Now().Add(5 * time.Second))
		done := make(chan error, 1)
		go func() {
			defer srv.Close()
			if !udp {
				_, err := Handshake(srv, testCreds)
				done <- err
				return
			}
			req, err := HandshakeAssociate(srv, testCreds)
			if err == nil && (req.Cmd != CmdUDPAssociate || req.Dest != addrUnspecified || req.User != "alice") {
				err = errors.New("unexpected request")
			}
			if err == nil {
				err = WriteReply(srv, Succeeded, relayAddr)
			}
			done <- err
		}()
		got, err := Associate(cli, testCreds, Addr{})
		serr := <-done
		cli.Close()
		var re *ReplyError
		switch {
		case udp && (err != nil || got != relayAddr || serr != nil):
			t.Errorf("Associate = %v, %v (server: %v); want %v", got, err, serr, relayAddr)
		case !udp && (!errors.As(err, &re) || re.Code != CommandNotSupported || !errors.Is(serr, ErrCommandNotSupported)):
			t.Errorf("Associate against Handshake: %v (server: %v); want reply %v", err, serr, CommandNotSupported)
		}
	}
}
