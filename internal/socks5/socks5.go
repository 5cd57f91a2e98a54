// Package socks5 implements the SOCKS5 protocol (RFC 1928) with
// username/password authentication (RFC 1929): the server-side handshake
// of braid's local proxy, a minimal client for tests and tools, the
// header of UDP ASSOCIATE datagrams (udp.go), and the ATYP|ADDR|PORT
// address codec that braid's wire protocol reuses to carry a flow's
// destination.
//
// Domain names are never resolved here; they travel verbatim to the far
// end.
package socks5

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// Version is the first byte of every SOCKS5 client message: a proxy
// that serves other protocols on the same port tells SOCKS5 by it.
const Version = 0x05

const version = Version

// Authentication methods (RFC 1928 section 3).
const (
	methodNoAuth       = 0x00
	methodUserPass     = 0x02
	methodNoAcceptable = 0xFF
)

// RFC 1929 sub-negotiation version and status bytes.
const (
	authVersion = 0x01
	authSuccess = 0x00
	authFailure = 0x01
)

// Reply is a SOCKS5 reply code (RFC 1928 section 6).
type Reply byte

// Reply codes.
const (
	// Succeeded means the request was granted.
	Succeeded Reply = 0x00
	// GeneralFailure is a failure with no more specific code.
	GeneralFailure Reply = 0x01
	// NotAllowed means policy forbids the connection.
	NotAllowed Reply = 0x02
	// NetworkUnreachable means the destination network is unreachable.
	NetworkUnreachable Reply = 0x03
	// HostUnreachable means the destination host is unreachable or its name does not exist.
	HostUnreachable Reply = 0x04
	// ConnectionRefused means the destination refused the connection.
	ConnectionRefused Reply = 0x05
	// TTLExpired means the connection attempt timed out.
	TTLExpired Reply = 0x06
	// CommandNotSupported means a command other than CONNECT.
	CommandNotSupported Reply = 0x07
	// AddressNotSupported means an unknown address type.
	AddressNotSupported Reply = 0x08
)

// String returns the RFC 1928 description of r.
func (r Reply) String() string {
	switch r {
	case Succeeded:
		return "succeeded"
	case GeneralFailure:
		return "general SOCKS server failure"
	case NotAllowed:
		return "connection not allowed by ruleset"
	case NetworkUnreachable:
		return "network unreachable"
	case HostUnreachable:
		return "host unreachable"
	case ConnectionRefused:
		return "connection refused"
	case TTLExpired:
		return "TTL expired"
	case CommandNotSupported:
		return "command not supported"
	case AddressNotSupported:
		return "address type not supported"
	default:
		return "reply 0x" + strconv.FormatUint(uint64(r), 16)
	}
}

// Commands (RFC 1928 section 4).
const (
	// CmdConnect asks for a TCP connection to the destination.
	CmdConnect byte = 0x01
	// CmdBind asks for a listening socket; braid does not support it.
	CmdBind byte = 0x02
	// CmdUDPAssociate asks for UDP relaying (HandshakeAssociate accepts
	// it; Handshake refuses it).
	CmdUDPAssociate byte = 0x03
)

var (
	// ErrProtocol is wrapped by errors for malformed or unexpected protocol messages.
	ErrProtocol = errors.New("socks5: protocol error")
	// ErrNoAcceptableMethod means the peers share no authentication method.
	ErrNoAcceptableMethod = errors.New("socks5: no acceptable authentication method")
	// ErrAuthFailed means the username/password sub-negotiation failed.
	ErrAuthFailed = errors.New("socks5: authentication failed")
	// ErrCommandNotSupported means the client asked for a command the
	// server does not take.
	ErrCommandNotSupported = errors.New("socks5: command not supported")
	// ErrAddressType means an unknown ATYP byte.
	ErrAddressType = errors.New("socks5: address type not supported")
)

// Credentials are an RFC 1929 username and password. A nil *Credentials
// means no authentication.
type Credentials struct {
	User, Pass string
	// AnyUser accepts every username and password, as a label of the
	// application (braid classes traffic by it), and no-auth from
	// clients that offer no username. User and Pass are then ignored.
	AnyUser bool
}

// Request is a parsed client request.
type Request struct {
	Cmd  byte
	Dest Addr
	// User is the username the client authenticated with, if any.
	User string
}

// ReplyError is a non-success reply received by Connect.
type ReplyError struct {
	Code Reply
}

// Error returns the description of the reply code.
func (e *ReplyError) Error() string {
	return "socks5: server replied: " + e.Code.String()
}

// handshakeBuf is the scratch space for a whole server handshake. Its
// largest use is RFC 1929 authentication: a zero-padded 255-byte slot
// each for username and password (padding makes the constant-time
// comparison length-independent) plus a byte for PLEN between them.
const handshakeBuf = 2*maxName + 1

// Handshake runs the server side of the SOCKS5 negotiation on conn:
// method selection (no-auth when creds is nil, otherwise
// username/password only), the RFC 1929 sub-negotiation, and the
// request. On success it returns a CONNECT request; the caller dials the
// destination and then calls WriteReply.
//
// Failures reply to the client where a reply still makes sense: 0xFF
// method selection and ErrNoAcceptableMethod; auth status 0x01 and
// ErrAuthFailed; CommandNotSupported and ErrCommandNotSupported (the
// parsed Request is returned too); AddressNotSupported and
// ErrAddressType; GeneralFailure and an error wrapping ErrProtocol for a
// malformed request. A wrong greeting version gets no reply, as the
// client does not speak SOCKS5. Truncated input yields an error wrapping
// io.ErrUnexpectedEOF. Every length in the protocol is one byte, so
// memory use is bounded whatever the client sends. Deadlines are the
// caller's business.
func Handshake(conn io.ReadWriter, creds *Credentials) (Request, error) {
	return handshake(conn, creds, false)
}

// HandshakeAssociate is Handshake for a server that relays UDP too: it
// also returns a UDP ASSOCIATE request (Cmd CmdUDPAssociate), whose Dest
// is the address the client says it will send its datagrams from
// (0.0.0.0:0 or [::]:0 when it does not know it yet, RFC 1928 section 7).
// The caller opens the relay socket and answers with WriteReply, the bound
// address being the relay's; the association lasts as long as conn. Any
// other command but CONNECT is refused as Handshake refuses it.
func HandshakeAssociate(conn io.ReadWriter, creds *Credentials) (Request, error) {
	return handshake(conn, creds, true)
}

func handshake(conn io.ReadWriter, creds *Credentials, udp bool) (Request, error) {
	var buf [handshakeBuf]byte

	// Greeting: VER NMETHODS METHODS...
	if err := readFull(conn, buf[:2]); err != nil {
		return Request{}, fmt.Errorf("socks5: reading greeting: %w", err)
	}
	if buf[0] != version {
		return Request{}, fmt.Errorf("%w: greeting version 0x%02x", ErrProtocol, buf[0])
	}
	methods := buf[:buf[1]]
	if err := readFull(conn, methods); err != nil {
		return Request{}, fmt.Errorf("socks5: reading methods: %w", err)
	}
	want := byte(methodNoAuth)
	if creds != nil {
		want = methodUserPass
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if creds != nil && creds.AnyUser && !offered {
		// No username offered: no-auth will do.
		want = methodNoAuth
		for _, m := range methods {
			offered = offered || m == want
		}
	}
	if !offered {
		buf[0], buf[1] = version, methodNoAcceptable
		_, _ = conn.Write(buf[:2])
		return Request{}, ErrNoAcceptableMethod
	}
	buf[0], buf[1] = version, want
	if _, err := conn.Write(buf[:2]); err != nil {
		return Request{}, fmt.Errorf("socks5: writing method selection: %w", err)
	}

	var user string
	if want == methodUserPass {
		u, err := serverAuth(conn, buf[:], creds)
		if err != nil {
			return Request{}, err
		}
		user = u
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT. RSV is ignored:
	// rejecting a nonzero reserved byte would buy nothing.
	if err := readFull(conn, buf[:3]); err != nil {
		return Request{}, fmt.Errorf("socks5: reading request: %w", err)
	}
	if buf[0] != version {
		_ = writeReply(conn, buf[:], GeneralFailure, Addr{})
		return Request{}, fmt.Errorf("%w: request version 0x%02x", ErrProtocol, buf[0])
	}
	req := Request{Cmd: buf[1], User: user}
	// The address is read even for commands that will be refused, so
	// the whole request is consumed: closing a TCP socket with unread
	// input sends RST, which can destroy the reply in flight.
	dest, err := readAddr(conn, buf[:])
	switch {
	case errors.Is(err, ErrAddressType):
		_ = writeReply(conn, buf[:], AddressNotSupported, Addr{})
		return Request{}, err
	case errors.Is(err, ErrProtocol):
		_ = writeReply(conn, buf[:], GeneralFailure, Addr{})
		return Request{}, err
	case err != nil:
		return Request{}, fmt.Errorf("socks5: reading request address: %w", err)
	}
	req.Dest = dest
	if req.Cmd != CmdConnect && !(udp && req.Cmd == CmdUDPAssociate) {
		_ = writeReply(conn, buf[:], CommandNotSupported, Addr{})
		return req, ErrCommandNotSupported
	}
	return req, nil
}

// serverAuth runs the RFC 1929 sub-negotiation: VER ULEN UNAME PLEN
// PASSWD, answered by VER STATUS, and returns the username.
func serverAuth(conn io.ReadWriter, buf []byte, creds *Credentials) (string, error) {
	user := buf[:maxName]
	plen := buf[maxName : maxName+1]
	pass := buf[maxName+1 : 2*maxName+1]

	if err := readFull(conn, user[:2]); err != nil {
		return "", fmt.Errorf("socks5: reading auth request: %w", err)
	}
	if user[0] != authVersion {
		v := user[0]
		user[0], user[1] = authVersion, authFailure
		_, _ = conn.Write(user[:2])
		return "", fmt.Errorf("%w: auth version 0x%02x", ErrProtocol, v)
	}
	ulen := int(user[1])
	if err := readFull(conn, user[:ulen]); err != nil {
		return "", fmt.Errorf("socks5: reading username: %w", err)
	}
	clear(user[ulen:])
	if err := readFull(conn, plen); err != nil {
		return "", fmt.Errorf("socks5: reading auth request: %w", err)
	}
	pl := int(plen[0])
	if err := readFull(conn, pass[:pl]); err != nil {
		return "", fmt.Errorf("socks5: reading password: %w", err)
	}
	clear(pass[pl:])

	ok := secretEqual(user, ulen, creds.User) & secretEqual(pass, pl, creds.Pass)
	name := creds.User
	if creds.AnyUser {
		ok = 1
		name = string(user[:ulen])
	}
	status := [2]byte{authVersion, authSuccess}
	if ok != 1 {
		status[1] = authFailure
	}
	copy(buf, status[:])
	if _, err := conn.Write(buf[:2]); err != nil && ok == 1 {
		return "", fmt.Errorf("socks5: writing auth status: %w", err)
	}
	if ok != 1 {
		return "", ErrAuthFailed
	}
	return name, nil
}

// secretEqual reports (as 1 or 0) whether got[:n] equals want, where got
// is a zero-padded maxName-byte slot. It compares the full slot so its
// timing depends on neither the secret's length nor where a mismatch
// occurs.
func secretEqual(got []byte, n int, want string) int {
	var w [maxName]byte
	copy(w[:], want)
	wantLen := len(want)
	if wantLen > maxName {
		// Cannot be sent in one-byte length; must never match.
		wantLen = maxName + 1
	}
	return subtle.ConstantTimeCompare(got[:maxName], w[:]) &
		subtle.ConstantTimeEq(int32(n), int32(wantLen))
}

// WriteReply writes a reply with the given code and bound address. The
// zero Addr is sent as 0.0.0.0:0, the customary value when there is no
// meaningful bound address.
func WriteReply(w io.Writer, code Reply, bound Addr) error {
	var buf [3 + maxAddrLen]byte
	return writeReply(w, buf[:], code, bound)
}

// writeReply is WriteReply with caller-provided scratch space.
func writeReply(w io.Writer, buf []byte, code Reply, bound Addr) error {
	if bound.IsZero() {
		buf = append(buf[:0], version, byte(code), 0x00, atypIPv4, 0, 0, 0, 0, 0, 0)
	} else {
		var err error
		buf, err = AppendAddr(append(buf[:0], version, byte(code), 0x00), bound)
		if err != nil {
			return err
		}
	}
	_, err := w.Write(buf)
	return err
}

// Connect performs the client side of the negotiation on conn and asks
// for a CONNECT to dest. With creds it offers both no-auth and
// username/password, letting the server choose. It returns the bound
// address from the server's reply; a non-success reply is returned as a
// *ReplyError.
func Connect(conn io.ReadWriter, creds *Credentials, dest Addr) (Addr, error) {
	return request(conn, creds, CmdConnect, dest)
}

// Associate performs the client side of the negotiation on conn and asks
// for a UDP ASSOCIATE, from is the address the client will send its
// datagrams from (the zero Addr: 0.0.0.0:0, not known yet). It returns the
// relay's address, where datagrams go with a UDPHeader in front; a
// non-success reply is returned as a *ReplyError. The association ends
// when conn closes.
func Associate(conn io.ReadWriter, creds *Credentials, from Addr) (Addr, error) {
	if from.IsZero() {
		from = Addr{IP: netip.IPv4Unspecified()}
	}
	return request(conn, creds, CmdUDPAssociate, from)
}

// request is the client side of the negotiation and one request.
func request(conn io.ReadWriter, creds *Credentials, cmd byte, dest Addr) (Addr, error) {
	var buf [3 + 2*maxName + 2]byte

	// Validate everything before sending anything.
	if _, err := AppendAddr(buf[:0], dest); err != nil {
		return Addr{}, err
	}
	if creds != nil && (len(creds.User) > maxName || len(creds.Pass) > maxName) {
		return Addr{}, errors.New("socks5: username or password longer than 255 bytes")
	}

	greeting := append(buf[:0], version, 1, methodNoAuth)
	if creds != nil {
		greeting = append(buf[:0], version, 2, methodNoAuth, methodUserPass)
	}
	if _, err := conn.Write(greeting); err != nil {
		return Addr{}, fmt.Errorf("socks5: writing greeting: %w", err)
	}
	if err := readFull(conn, buf[:2]); err != nil {
		return Addr{}, fmt.Errorf("socks5: reading method selection: %w", err)
	}
	switch {
	case buf[0] != version:
		return Addr{}, fmt.Errorf("%w: method selection version 0x%02x", ErrProtocol, buf[0])
	case buf[1] == methodNoAuth:
	case buf[1] == methodUserPass && creds != nil:
		if err := clientAuth(conn, buf[:], creds); err != nil {
			return Addr{}, err
		}
	case buf[1] == methodNoAcceptable:
		return Addr{}, ErrNoAcceptableMethod
	default:
		return Addr{}, fmt.Errorf("%w: server chose unoffered method 0x%02x", ErrProtocol, buf[1])
	}

	req, _ := AppendAddr(append(buf[:0], version, cmd, 0x00), dest)
	if _, err := conn.Write(req); err != nil {
		return Addr{}, fmt.Errorf("socks5: writing request: %w", err)
	}
	if err := readFull(conn, buf[:3]); err != nil {
		return Addr{}, fmt.Errorf("socks5: reading reply: %w", err)
	}
	if buf[0] != version {
		return Addr{}, fmt.Errorf("%w: reply version 0x%02x", ErrProtocol, buf[0])
	}
	code := Reply(buf[1])
	bound, err := readAddr(conn, buf[:])
	if code != Succeeded {
		// The failure reply's address carries no information, so a
		// malformed one must not hide the reply code.
		return Addr{}, &ReplyError{Code: code}
	}
	if err != nil {
		return Addr{}, fmt.Errorf("socks5: reading reply address: %w", err)
	}
	return bound, nil
}

// clientAuth runs the client side of RFC 1929; creds lengths are
// already validated.
func clientAuth(conn io.ReadWriter, buf []byte, creds *Credentials) error {
	msg := append(buf[:0], authVersion, byte(len(creds.User)))
	msg = append(msg, creds.User...)
	msg = append(msg, byte(len(creds.Pass)))
	msg = append(msg, creds.Pass...)
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("socks5: writing auth request: %w", err)
	}
	if err := readFull(conn, buf[:2]); err != nil {
		return fmt.Errorf("socks5: reading auth status: %w", err)
	}
	if buf[0] != authVersion {
		return fmt.Errorf("%w: auth status version 0x%02x", ErrProtocol, buf[0])
	}
	if buf[1] != authSuccess {
		return ErrAuthFailed
	}
	return nil
}

// ReplyForError maps an error from dialing the destination to the most
// informative reply code: connection refused, network or host
// unreachable, a name that does not exist (HostUnreachable), and
// timeouts (TTLExpired, the nearest RFC 1928 has). Anything else is
// GeneralFailure; nil is Succeeded.
func ReplyForError(err error) Reply {
	if err == nil {
		return Succeeded
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return NetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return HostUnreachable
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return HostUnreachable
	case errors.Is(err, context.DeadlineExceeded):
		return TTLExpired
	case errors.As(err, &netErr) && netErr.Timeout():
		return TTLExpired
	default:
		return GeneralFailure
	}
}
