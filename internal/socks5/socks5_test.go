package socks5

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memConn is a scripted client: reads come from r (which ends in EOF, so
// a server waiting for more input fails instead of hanging) and writes
// are collected in w.
type memConn struct {
	r io.Reader
	w bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var (
	testCreds = &Credentials{User: "alice", Pass: "s3cret"}

	greetNoAuth   = []byte{0x05, 0x01, 0x00}
	greetUserPass = []byte{0x05, 0x01, 0x02}
	selNoAuth     = []byte{0x05, 0x00}
	selUserPass   = []byte{0x05, 0x02}
	selNone       = []byte{0x05, 0xff}
	authOK        = []byte{0x01, 0x00}
	authFail      = []byte{0x01, 0x01}

	reqIPv4   = []byte{0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50}
	reqIPv6   = []byte{0x05, 0x01, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb}
	reqDomain = cat([]byte{0x05, 0x01, 0x00, 0x03, 11}, []byte("example.com"), []byte{0x01, 0xbb})

	addrIPv4   = Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 80}
	addrIPv6   = Addr{IP: netip.MustParseAddr("::1"), Port: 443}
	addrDomain = Addr{Name: "example.com", Port: 443}
)

func authMsg(user, pass string) []byte {
	return cat([]byte{0x01, byte(len(user))}, []byte(user), []byte{byte(len(pass))}, []byte(pass))
}

func reply(code Reply) []byte {
	return []byte{0x05, byte(code), 0x00, 0x01, 0, 0, 0, 0, 0, 0}
}

type handshakeCase struct {
	name    string
	creds   *Credentials
	in      []byte
	out     []byte // exact bytes the client must receive
	wantErr error
	want    Request
}

var handshakeCases = []handshakeCase{
	{name: "ipv4", in: cat(greetNoAuth, reqIPv4), out: selNoAuth,
		want: Request{Cmd: CmdConnect, Dest: addrIPv4}},
	{name: "ipv6", in: cat(greetNoAuth, reqIPv6), out: selNoAuth,
		want: Request{Cmd: CmdConnect, Dest: addrIPv6}},
	{name: "domain", in: cat(greetNoAuth, reqDomain), out: selNoAuth,
		want: Request{Cmd: CmdConnect, Dest: addrDomain}},
	{name: "several methods offered", in: cat([]byte{0x05, 0x03, 0x80, 0x02, 0x00}, reqIPv4), out: selNoAuth,
		want: Request{Cmd: CmdConnect, Dest: addrIPv4}},
	{name: "nonzero reserved byte tolerated", in: cat(greetNoAuth, []byte{0x05, 0x01, 0x7f}, reqIPv4[3:]), out: selNoAuth,
		want: Request{Cmd: CmdConnect, Dest: addrIPv4}},
	{name: "userpass ok", creds: testCreds,
		in:   cat(greetUserPass, authMsg("alice", "s3cret"), reqDomain),
		out:  cat(selUserPass, authOK),
		want: Request{Cmd: CmdConnect, Dest: addrDomain, User: "alice"}},
	{name: "userpass ok with no-auth also offered", creds: testCreds,
		in:   cat([]byte{0x05, 0x02, 0x00, 0x02}, authMsg("alice", "s3cret"), reqIPv4),
		out:  cat(selUserPass, authOK),
		want: Request{Cmd: CmdConnect, Dest: addrIPv4, User: "alice"}},
	{name: "any user: the username is a label", creds: &Credentials{AnyUser: true},
		in:   cat([]byte{0x05, 0x02, 0x00, 0x02}, authMsg("voip", "whatever"), reqIPv4),
		out:  cat(selUserPass, authOK),
		want: Request{Cmd: CmdConnect, Dest: addrIPv4, User: "voip"}},
	{name: "any user: no-auth when no username is offered", creds: &Credentials{AnyUser: true},
		in: cat(greetNoAuth, reqIPv4), out: selNoAuth,
		want: Request{Cmd: CmdConnect, Dest: addrIPv4}},
	{name: "userpass empty credentials ok", creds: &Credentials{},
		in:   cat(greetUserPass, authMsg("", ""), reqIPv4),
		out:  cat(selUserPass, authOK),
		want: Request{Cmd: CmdConnect, Dest: addrIPv4}},
	{name: "wrong password", creds: testCreds,
		in: cat(greetUserPass, authMsg("alice", "s3creT"), reqIPv4), out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
	{name: "wrong user", creds: testCreds,
		in: cat(greetUserPass, authMsg("alicf", "s3cret"), reqIPv4), out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
	{name: "password prefix", creds: testCreds,
		in: cat(greetUserPass, authMsg("alice", "s3cre"), reqIPv4), out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
	{name: "password with extra byte", creds: testCreds,
		in: cat(greetUserPass, authMsg("alice", "s3cret\x00"), reqIPv4), out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
	{name: "credentials swapped", creds: testCreds,
		in: cat(greetUserPass, authMsg("s3cret", "alice"), reqIPv4), out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
	{name: "empty credentials rejected", creds: testCreds,
		in: cat(greetUserPass, authMsg("", ""), reqIPv4), out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
	{name: "overlong configured password never matches", creds: &Credentials{User: "u", Pass: string(bytes.Repeat([]byte("p"), 256))},
		in:  cat(greetUserPass, authMsg("u", string(bytes.Repeat([]byte("p"), 255))), reqIPv4),
		out: cat(selUserPass, authFail), wantErr: ErrAuthFailed},
	{name: "wrong auth version", creds: testCreds,
		in: cat(greetUserPass, []byte{0x05}, authMsg("alice", "s3cret")[1:], reqIPv4), out: cat(selUserPass, authFail), wantErr: ErrProtocol},
	{name: "no-auth server, client offers userpass only",
		in: cat(greetUserPass, authMsg("alice", "s3cret"), reqIPv4), out: selNone, wantErr: ErrNoAcceptableMethod},
	{name: "userpass server, client offers no-auth only", creds: testCreds,
		in: cat(greetNoAuth, reqIPv4), out: selNone, wantErr: ErrNoAcceptableMethod},
	{name: "no methods", in: cat([]byte{0x05, 0x00}, reqIPv4), out: selNone, wantErr: ErrNoAcceptableMethod},
	{name: "gssapi only", in: cat([]byte{0x05, 0x01, 0x01}, reqIPv4), out: selNone, wantErr: ErrNoAcceptableMethod},
	{name: "bind", in: cat(greetNoAuth, []byte{0x05, CmdBind, 0x00}, reqIPv4[3:]),
		out: cat(selNoAuth, reply(CommandNotSupported)), wantErr: ErrCommandNotSupported,
		want: Request{Cmd: CmdBind, Dest: addrIPv4}},
	{name: "udp associate", in: cat(greetNoAuth, []byte{0x05, CmdUDPAssociate, 0x00}, reqIPv6[3:]),
		out: cat(selNoAuth, reply(CommandNotSupported)), wantErr: ErrCommandNotSupported,
		want: Request{Cmd: CmdUDPAssociate, Dest: addrIPv6}},
	{name: "unknown command", in: cat(greetNoAuth, []byte{0x05, 0x09, 0x00}, reqDomain[3:]),
		out: cat(selNoAuth, reply(CommandNotSupported)), wantErr: ErrCommandNotSupported,
		want: Request{Cmd: 0x09, Dest: addrDomain}},
	{name: "atyp 0x05", in: cat(greetNoAuth, []byte{0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80}),
		out: cat(selNoAuth, reply(AddressNotSupported)), wantErr: ErrAddressType},
	{name: "atyp 0x00", in: cat(greetNoAuth, []byte{0x05, 0x01, 0x00, 0x00}),
		out: cat(selNoAuth, reply(AddressNotSupported)), wantErr: ErrAddressType},
	{name: "empty domain name", in: cat(greetNoAuth, []byte{0x05, 0x01, 0x00, 0x03, 0x00, 0x00, 0x50}),
		out: cat(selNoAuth, reply(GeneralFailure)), wantErr: ErrProtocol},
	{name: "socks4 greeting", in: []byte{0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0x00}, out: nil, wantErr: ErrProtocol},
	{name: "http", in: []byte("GET / HTTP/1.1\r\n\r\n"), out: nil, wantErr: ErrProtocol},
	{name: "wrong request version", in: cat(greetNoAuth, []byte{0x04}, reqIPv4[1:]),
		out: cat(selNoAuth, reply(GeneralFailure)), wantErr: ErrProtocol},
}

func TestHandshake(t *testing.T) {
	for _, tt := range handshakeCases {
		t.Run(tt.name, func(t *testing.T) {
			// Bytes after the request belong to the relayed stream and must
			// be left unread.
			const payload = "early data"
			r := bytes.NewReader(cat(tt.in, []byte(payload)))
			c := &memConn{r: r}
			req, err := Handshake(c, tt.creds)
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Handshake error = %v, want %v", err, tt.wantErr)
			}
			if req != tt.want {
				t.Errorf("Handshake request = %+v, want %+v", req, tt.want)
			}
			if !bytes.Equal(c.w.Bytes(), tt.out) {
				t.Errorf("client received %x, want %x", c.w.Bytes(), tt.out)
			}
			if err == nil || errors.Is(err, ErrCommandNotSupported) {
				if rest, _ := io.ReadAll(r); string(rest) != payload {
					t.Errorf("left unread %q, want %q", rest, payload)
				}
			}
		})
	}
}

// TestHandshakeOneByteReads checks that short reads are handled.
func TestHandshakeOneByteReads(t *testing.T) {
	for _, tt := range handshakeCases {
		c := &memConn{r: iotest.OneByteReader(bytes.NewReader(tt.in))}
		req, err := Handshake(c, tt.creds)
		if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) || req != tt.want {
			t.Errorf("%s: Handshake = %+v, %v; want %+v, %v", tt.name, req, err, tt.want, tt.wantErr)
		}
		if !bytes.Equal(c.w.Bytes(), tt.out) {
			t.Errorf("%s: client received %x, want %x", tt.name, c.w.Bytes(), tt.out)
		}
	}
}

// TestHandshakeTruncated cuts every case at every byte boundary before
// the point where it completes.
func TestHandshakeTruncated(t *testing.T) {
	for _, tt := range handshakeCases {
		// How much of the input the full run consumes.
		r := bytes.NewReader(tt.in)
		var full memConn
		full.r = r
		_, fullErr := Handshake(&full, tt.creds)
		used := len(tt.in) - r.Len()
		for i := range used {
			c := &memConn{r: bytes.NewReader(tt.in[:i])}
			_, err := Handshake(c, tt.creds)
			if err == nil {
				t.Fatalf("%s cut at %d: Handshake succeeded", tt.name, i)
			}
			if fullErr == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s cut at %d: error %v, want io.ErrUnexpectedEOF", tt.name, i, err)
			}
			// A cut input stops the exchange; it never provokes a reply the
			// full input would not have.
			if !bytes.HasPrefix(full.w.Bytes(), c.w.Bytes()) {
				t.Errorf("%s cut at %d: client received %x, not a prefix of %x", tt.name, i, c.w.Bytes(), full.w.Bytes())
			}
		}
	}
}

func TestHandshakeEmptyInput(t *testing.T) {
	c := &memConn{r: bytes.NewReader(nil)}
	if _, err := Handshake(c, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Handshake error = %v, want io.ErrUnexpectedEOF", err)
	}
	if c.w.Len() != 0 {
		t.Errorf("client received %x, want nothing", c.w.Bytes())
	}
}

type errWriter struct {
	io.Reader
	err error
}

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestHandshakeWriteError(t *testing.T) {
	werr := errors.New("write failed")
	_, err := Handshake(errWriter{bytes.NewReader(cat(greetNoAuth, reqIPv4)), werr}, nil)
	if !errors.Is(err, werr) {
		t.Errorf("Handshake error = %v, want %v", err, werr)
	}
	_, err = Handshake(errWriter{bytes.NewReader(cat(greetUserPass, authMsg("alice", "s3cret"), reqIPv4)), werr}, testCreds)
	if !errors.Is(err, werr) {
		t.Errorf("Handshake error = %v, want %v", err, werr)
	}
}

func TestHandshakeAllocs(t *testing.T) {
	in := cat(greetUserPass, authMsg("alice", "s3cret"), reqIPv4)
	r := bytes.NewReader(in)
	c := &memConn{r: r}
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(in)
		c.w.Reset()
		if _, err := Handshake(c, testCreds); err != nil {
			t.Fatal(err)
		}
	})
	// One scratch buffer, which escapes only because conn is an interface.
	if allocs > 1 {
		t.Errorf("Handshake allocates %v times per run, want at most 1", allocs)
	}
}

func TestWriteReply(t *testing.T) {
	tests := []struct {
		code  Reply
		bound Addr
		want  []byte
	}{
		{Succeeded, Addr{}, reply(Succeeded)},
		{HostUnreachable, Addr{}, reply(HostUnreachable)},
		{Succeeded, Addr{IP: netip.MustParseAddr("10.1.2.3"), Port: 1080},
			[]byte{0x05, 0x00, 0x00, 0x01, 10, 1, 2, 3, 0x04, 0x38}},
		{Succeeded, addrIPv6, cat([]byte{0x05, 0x00}, reqIPv6[2:])},
		{Succeeded, addrDomain, cat([]byte{0x05, 0x00}, reqDomain[2:])},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := WriteReply(&b, tt.code, tt.bound); err != nil {
			t.Fatalf("WriteReply(%v, %v): %v", tt.code, tt.bound, err)
		}
		if !bytes.Equal(b.Bytes(), tt.want) {
			t.Errorf("WriteReply(%v, %v) wrote %x, want %x", tt.code, tt.bound, b.Bytes(), tt.want)
		}
	}
	var b bytes.Buffer
	if err := WriteReply(&b, Succeeded, Addr{Name: string(make([]byte, 256))}); err == nil || b.Len() != 0 {
		t.Errorf("WriteReply with invalid address: err %v, wrote %x", err, b.Bytes())
	}
}

// TestPipe runs Connect against Handshake over a synchronous pipe.
func TestPipe(t *testing.T) {
	bound := Addr{IP: netip.MustParseAddr("192.0.2.7"), Port: 40000}
	tests := []struct {
		name          string
		client        *Credentials
		server        *Credentials
		dest          Addr
		code          Reply
		wantClientErr error
		wantServerErr error
	}{
		{name: "no auth ipv4", dest: addrIPv4},
		{name: "no auth domain", dest: addrDomain},
		{name: "userpass ipv6", client: testCreds, server: testCreds, dest: addrIPv6},
		{name: "creds offered, server needs none", client: testCreds, dest: addrDomain},
		{name: "refused", dest: addrIPv4, code: ConnectionRefused, wantClientErr: &ReplyError{ConnectionRefused}},
		{name: "bad password", client: &Credentials{User: "alice", Pass: "x"}, server: testCreds, dest: addrIPv4,
			wantClientErr: ErrAuthFailed, wantServerErr: ErrAuthFailed},
		{name: "no acceptable method", server: testCreds, dest: addrIPv4,
			wantClientErr: ErrNoAcceptableMethod, wantServerErr: ErrNoAcceptableMethod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			deadline := time.Now().Add(5 * time.Second)
			cc.SetDeadline(deadline)
			sc.SetDeadline(deadline)
			type result struct {
				req Request
				err error
			}
			done := make(chan result, 1)
			go func() {
				defer sc.Close()
				req, err := Handshake(sc, tt.server)
				if err == nil {
					if tt.code == Succeeded {
						err = WriteReply(sc, Succeeded, bound)
					} else {
						err = WriteReply(sc, tt.code, Addr{})
					}
				}
				done <- result{req, err}
			}()
			got, err := Connect(cc, tt.client, tt.dest)
			res := <-done
			if tt.wantClientErr != nil {
				var re *ReplyError
				if want, ok := tt.wantClientErr.(*ReplyError); ok {
					if !errors.As(err, &re) || *re != *want {
						t.Errorf("Connect error = %v, want %v", err, want)
					}
				} else if !errors.Is(err, tt.wantClientErr) {
					t.Errorf("Connect error = %v, want %v", err, tt.wantClientErr)
				}
			} else if err != nil || got != bound {
				t.Errorf("Connect = %v, %v; want %v", got, err, bound)
			}
			if !errors.Is(res.err, tt.wantServerErr) || tt.wantServerErr == nil && res.err != nil {
				t.Errorf("Handshake error = %v, want %v", res.err, tt.wantServerErr)
			}
			if res.err == nil && (res.req.Cmd != CmdConnect || res.req.Dest != tt.dest) {
				t.Errorf("Handshake request = %+v, want CONNECT %v", res.req, tt.dest)
			}
		})
	}
}

func TestConnectScripted(t *testing.T) {
	okReply := cat([]byte{0x05, 0x00, 0x00}, reqIPv4[3:])
	tests := []struct {
		name    string
		creds   *Credentials
		dest    Addr
		server  []byte
		sent    []byte
		want    Addr
		wantErr error
		anyErr  bool
	}{
		{name: "ok", dest: addrIPv4, server: cat(selNoAuth, okReply),
			sent: cat(greetNoAuth, reqIPv4), want: addrIPv4},
		{name: "auth ok", creds: testCreds, dest: addrDomain, server: cat(selUserPass, authOK, okReply),
			sent: cat([]byte{0x05, 0x02, 0x00, 0x02}, authMsg("alice", "s3cret"), reqDomain), want: addrIPv4},
		{name: "failure reply", dest: addrIPv4, server: cat(selNoAuth, []byte{0x05, 0x04, 0x00}, reqIPv4[3:]),
			sent: cat(greetNoAuth, reqIPv4), wantErr: &ReplyError{HostUnreachable}},
		{name: "failure reply with bad address", dest: addrIPv4, server: cat(selNoAuth, []byte{0x05, 0x04, 0x00, 0x09}),
			sent: cat(greetNoAuth, reqIPv4), wantErr: &ReplyError{HostUnreachable}},
		{name: "bad method version", dest: addrIPv4, server: []byte{0x04, 0x00},
			sent: greetNoAuth, wantErr: ErrProtocol},
		{name: "unoffered method", dest: addrIPv4, server: selUserPass,
			sent: greetNoAuth, wantErr: ErrProtocol},
		{name: "no acceptable method", dest: addrIPv4, server: selNone,
			sent: greetNoAuth, wantErr: ErrNoAcceptableMethod},
		{name: "bad auth version", creds: testCreds, dest: addrIPv4, server: cat(selUserPass, []byte{0x05, 0x00}),
			sent: cat([]byte{0x05, 0x02, 0x00, 0x02}, authMsg("alice", "s3cret")), wantErr: ErrProtocol},
		{name: "bad reply version", dest: addrIPv4, server: cat(selNoAuth, []byte{0x04, 0x00, 0x00}),
			sent: cat(greetNoAuth, reqIPv4), wantErr: ErrProtocol},
		{name: "bad reply atyp", dest: addrIPv4, server: cat(selNoAuth, []byte{0x05, 0x00, 0x00, 0x07}),
			sent: cat(greetNoAuth, reqIPv4), wantErr: ErrAddressType},
		{name: "truncated reply", dest: addrIPv4, server: cat(selNoAuth, okReply[:5]),
			sent: cat(greetNoAuth, reqIPv4), wantErr: io.ErrUnexpectedEOF},
		{name: "invalid dest", dest: Addr{}, wantErr: errNoIPOrName},
		{name: "long user", creds: &Credentials{User: string(make([]byte, 256))}, dest: addrIPv4, anyErr: true},
	}
	for _, tt := range tests {
		c := &memConn{r: bytes.NewReader(tt.server)}
		got, err := Connect(c, tt.creds, tt.dest)
		switch want := tt.wantErr.(type) {
		case nil:
			if tt.anyErr {
				if err == nil {
					t.Errorf("%s: Connect succeeded", tt.name)
				}
			} else if err != nil || got != tt.want {
				t.Errorf("%s: Connect = %v, %v; want %v", tt.name, got, err, tt.want)
			}
		case *ReplyError:
			var re *ReplyError
			if !errors.As(err, &re) || *re != *want {
				t.Errorf("%s: Connect error = %v, want %v", tt.name, err, want)
			}
		default:
			if !errors.Is(err, want) {
				t.Errorf("%s: Connect error = %v, want %v", tt.name, err, want)
			}
		}
		if !bytes.Equal(c.w.Bytes(), tt.sent) {
			t.Errorf("%s: Connect sent %x, want %x", tt.name, c.w.Bytes(), tt.sent)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestReplyForError(t *testing.T) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		err  error
		want Reply
	}{
		{nil, Succeeded},
		{opErr(syscall.ECONNREFUSED), ConnectionRefused},
		{fmt.Errorf("wrapped: %w", opErr(syscall.ECONNREFUSED)), ConnectionRefused},
		{opErr(syscall.ENETUNREACH), NetworkUnreachable},
		{opErr(syscall.EHOSTUNREACH), HostUnreachable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nx.example", IsNotFound: true}}, HostUnreachable},
		{&net.DNSError{Err: "no such host", Name: "nx.example", IsNotFound: true}, HostUnreachable},
		{&net.DNSError{Err: "i/o timeout", Name: "slow.example", IsTimeout: true}, TTLExpired},
		{&net.DNSError{Err: "server misbehaving", Name: "x.example", IsTemporary: true}, GeneralFailure},
		{opErr(syscall.ETIMEDOUT), TTLExpired},
		{context.DeadlineExceeded, TTLExpired},
		{&net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}, TTLExpired},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, TTLExpired},
		{timeoutErr{}, TTLExpired},
		{context.Canceled, GeneralFailure},
		{opErr(syscall.EACCES), GeneralFailure},
		{errors.New("something else"), GeneralFailure},
	}
	for _, tt := range tests {
		if got := ReplyForError(tt.err); got != tt.want {
			t.Errorf("ReplyForError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestReplyForErrorRealDial checks the mapping against a real refused
// connection on loopback rather than a constructed error.
func TestReplyForErrorRealDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback:", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		t.Skip("port was reused")
	}
	if got := ReplyForError(err); got != ConnectionRefused {
		t.Errorf("ReplyForError(%v) = %v, want %v", err, got, ConnectionRefused)
	}
}

func TestReplyString(t *testing.T) {
	for r := Reply(0); r <= AddressNotSupported; r++ {
		if s := r.String(); s == "" || s[:5] == "reply" {
			t.Errorf("Reply(%d).String() = %q", r, s)
		}
	}
	if got := Reply(0x2a).String(); got != "reply 0x2a" {
		t.Errorf("Reply(0x2a).String() = %q", got)
	}
	if got := (&ReplyError{ConnectionRefused}).Error(); got != "socks5: server replied: connection refused" {
		t.Errorf("ReplyError.Error() = %q", got)
	}
}
