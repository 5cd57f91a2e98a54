package socks5

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Address types (RFC 1928 section 5).
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// maxName is the longest domain name the one-byte length field can carry.
const maxName = 255

// maxAddrLen is the longest ATYP|ADDR|PORT encoding (a 255-byte name).
const maxAddrLen = 1 + 1 + maxName + 2

var (
	// Prebuilt so that parse failures on hostile input cost no allocation.
	errTruncatedAddr = fmt.Errorf("socks5: truncated address: %w", io.ErrUnexpectedEOF)
	errEmptyName     = fmt.Errorf("%w: empty domain name", ErrProtocol)

	errBothIPAndName = errors.New("socks5: address has both IP and name")
	errNoIPOrName    = errors.New("socks5: address has neither IP nor name")
	errZone          = errors.New("socks5: zoned IPv6 address cannot be encoded")
	errNameTooLong   = errors.New("socks5: domain name longer than 255 bytes")
)

// Addr is a destination: either an IP or a domain name, plus a port.
// Exactly one of IP (valid) and Name (non-empty) is set in a usable Addr.
// Names are carried verbatim so that resolution happens at the far end.
type Addr struct {
	IP   netip.Addr
	Name string
	Port uint16
}

// AddrFromAddrPort returns the Addr for an IP address and port.
func AddrFromAddrPort(ap netip.AddrPort) Addr {
	return Addr{IP: ap.Addr(), Port: ap.Port()}
}

// IsZero reports whether a is the zero Addr.
func (a Addr) IsZero() bool {
	return !a.IP.IsValid() && a.Name == "" && a.Port == 0
}

// String returns a in host:port form: "1.2.3.4:80", "[::1]:80" or
// "example.com:443". The result is suitable for net.Dial.
func (a Addr) String() string {
	switch {
	case a.IP.IsValid() && a.Name == "":
		return netip.AddrPortFrom(a.IP, a.Port).String()
	case a.Name != "" && !a.IP.IsValid():
		return net.JoinHostPort(a.Name, strconv.Itoa(int(a.Port)))
	default:
		return "invalid"
	}
}

// AppendAddr appends the SOCKS5 encoding ATYP|ADDR|PORT of a to b: IPv4
// as 0x01, a domain name as 0x03 with a one-byte length, IPv6 as 0x04.
// An IPv4-mapped IPv6 address stays IPv6 so that decoding gives back the
// same Addr. It fails for an empty or over-long name, an Addr with both
// or neither of IP and Name, and a zoned IPv6 address (the zone is
// meaningless at the far end and cannot be encoded).
func AppendAddr(b []byte, a Addr) ([]byte, error) {
	switch {
	case a.IP.IsValid() && a.Name != "":
		return b, errBothIPAndName
	case a.IP.Is4():
		ip := a.IP.As4()
		b = append(b, atypIPv4)
		b = append(b, ip[:]...)
	case a.IP.Is6():
		if a.IP.Zone() != "" {
			return b, errZone
		}
		ip := a.IP.As16()
		b = append(b, atypIPv6)
		b = append(b, ip[:]...)
	case a.Name == "":
		return b, errNoIPOrName
	case len(a.Name) > maxName:
		return b, errNameTooLong
	default:
		b = append(b, atypDomain, byte(len(a.Name)))
		b = append(b, a.Name...)
	}
	return binary.BigEndian.AppendUint16(b, a.Port), nil
}

// ParseAddr parses ATYP|ADDR|PORT from the front of b and returns the
// remaining bytes. Truncated input yields an error wrapping
// io.ErrUnexpectedEOF, an unknown ATYP yields ErrAddressType and an empty
// name yields an error wrapping ErrProtocol.
func ParseAddr(b []byte) (Addr, []byte, error) {
	if len(b) < 1 {
		return Addr{}, b, errTruncatedAddr
	}
	var a Addr
	rest := b[1:]
	switch b[0] {
	case atypIPv4:
		if len(rest) < 4+2 {
			return Addr{}, b, errTruncatedAddr
		}
		a.IP = netip.AddrFrom4([4]byte(rest[:4]))
		rest = rest[4:]
	case atypIPv6:
		if len(rest) < 16+2 {
			return Addr{}, b, errTruncatedAddr
		}
		a.IP = netip.AddrFrom16([16]byte(rest[:16]))
		rest = rest[16:]
	case atypDomain:
		if len(rest) < 1 {
			return Addr{}, b, errTruncatedAddr
		}
		n := int(rest[0])
		if n == 0 {
			return Addr{}, b, errEmptyName
		}
		if len(rest) < 1+n+2 {
			return Addr{}, b, errTruncatedAddr
		}
		a.Name = string(rest[1 : 1+n])
		rest = rest[1+n:]
	default:
		return Addr{}, b, ErrAddressType
	}
	a.Port = binary.BigEndian.Uint16(rest)
	return a, rest[2:], nil
}

// ReadAddr reads the ATYP|ADDR|PORT encoding from r, consuming exactly
// the bytes of one address.
func ReadAddr(r io.Reader) (Addr, error) {
	var buf [maxAddrLen]byte
	return readAddr(r, buf[:])
}

// readAddr is ReadAddr with caller-provided scratch space (at least
// maxAddrLen bytes), so a handshake can use one buffer throughout. It
// reads the variable part only once its length is known, never past the
// address.
func readAddr(r io.Reader, buf []byte) (Addr, error) {
	if err := readFull(r, buf[:1]); err != nil {
		return Addr{}, err
	}
	var n int
	switch buf[0] {
	case atypIPv4:
		n = 1 + 4 + 2
	case atypIPv6:
		n = 1 + 16 + 2
	case atypDomain:
		if err := readFull(r, buf[1:2]); err != nil {
			return Addr{}, err
		}
		if buf[1] == 0 {
			return Addr{}, errEmptyName
		}
		n = 2 + int(buf[1]) + 2
	default:
		return Addr{}, ErrAddressType
	}
	start := 1
	if buf[0] == atypDomain {
		start = 2
	}
	if err := readFull(r, buf[start:n]); err != nil {
		return Addr{}, err
	}
	a, _, err := ParseAddr(buf[:n])
	return a, err
}

// readFull is io.ReadFull except that running out of input at any point,
// including before the first byte, is io.ErrUnexpectedEOF: every caller
// is mid-message, so a clean EOF is never expected.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
