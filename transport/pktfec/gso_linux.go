package pktfec

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoSupported says whether the kernel segments UDP writes on udp
// (UDP_SEGMENT, Linux 4.18 and later). QUIC_GO_DISABLE_GSO=1 turns it off
// here as it does in quic-go.
func gsoSupported(udp *net.UDPConn) bool {
	return onSocket(udp, func(fd int) error {
		_, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		return err
	})
}

// onSocket runs fn on udp's descriptor and says whether it succeeded;
// false without running it when QUIC_GO_DISABLE_GSO=1.
func onSocket(udp *net.UDPConn, fn func(fd int) error) bool {
	if off, err := strconv.ParseBool(os.Getenv("QUIC_GO_DISABLE_GSO")); err == nil && off {
		return false
	}
	rc, err := udp.SyscallConn()
	if err != nil {
		return false
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return false
	}
	return ferr == nil
}

// writeSegments sends b to to as packets of size bytes (the last may be
// shorter), in one write the kernel segments. oob is the caller's scratch
// for the control message (segmentOOB).
func writeSegments(udp *net.UDPConn, oob []byte, b []byte, size int, to netip.AddrPort) error {
	h := (*unix.Cmsghdr)(unsafe.Pointer(unsafe.SliceData(oob)))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
	_, _, err := udp.WriteMsgUDPAddrPort(b, oob, to)
	return err
}

// segmentOOB returns scratch for writeSegments, aligned for a cmsghdr.
func segmentOOB() []byte {
	w := make([]uint64, (unix.CmsgSpace(2)+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), unix.CmsgSpace(2))
}

// isGSOError says a segmented write failed because the interface cannot
// segment (EIO: no transmit checksum offload).
func isGSOError(err error) bool { return err != nil && errors.Is(err, unix.EIO) }

// enableGRO asks the kernel to hand over datagrams of one sender that
// arrive together in one read (UDP_GRO, Linux 5.0 and later).
// QUIC_GO_DISABLE_GSO=1 turns it off too.
func enableGRO(udp *net.UDPConn) bool {
	return onSocket(udp, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	})
}

// groSize returns the segment size a UDP_GRO control message in oob
// gives, or 0 when there is none (the read brought one datagram).
func groSize(oob []byte) int {
	for len(oob) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(unsafe.SliceData(oob)))
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(oob) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):]))
		}
		oob = oob[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(oob)):]
	}
	return 0
}
