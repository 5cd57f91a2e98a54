//go:build linux

package ifwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The Linux interface source and change notifications speak rtnetlink
// directly through golang.org/x/sys/unix: three dumps (links, addresses,
// routes) and one multicast subscription need a few hundred lines, not a
// netlink library.

var ne = binary.NativeEndian

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an
// attribute type (linux/netlink.h).
const nlaTypeMask = 0x3fff

// errDumpInterrupted: the kernel flagged a dump as inconsistent
// (NLM_F_DUMP_INTR) because the tables changed while it ran.
var errDumpInterrupted = errors.New("ifwatch: netlink dump interrupted by a concurrent change")

func platformMedium(name string) string { return guessMedium(name) }

// systemLinks lists the links, addresses and routes of the calling
// thread's network namespace, retrying dumps the kernel marks as
// interrupted.
func systemLinks() ([]rawLink, error) {
	var err error
	for range 5 {
		var links []rawLink
		links, err = dumpLinks()
		if !errors.Is(err, errDumpInterrupted) {
			return links, err
		}
	}
	return nil, err
}

func dumpLinks() ([]rawLink, error) {
	c, err := openNetlink()
	if err != nil {
		return nil, err
	}
	defer c.close()

	linkMsgs, err := c.dump(unix.RTM_GETLINK, unix.SizeofIfInfomsg)
	if err != nil {
		return nil, fmt.Errorf("ifwatch: list links: %w", err)
	}
	addrMsgs, err := c.dump(unix.RTM_GETADDR, unix.SizeofIfAddrmsg)
	if err != nil {
		return nil, fmt.Errorf("ifwatch: list addresses: %w", err)
	}
	routeMsgs, err := c.dump(unix.RTM_GETROUTE, unix.SizeofRtMsg)
	if err != nil {
		return nil, fmt.Errorf("ifwatch: list routes: %w", err)
	}

	var links []rawLink
	byIndex := make(map[int]int) // ifindex -> position in links
	for _, m := range linkMsgs {
		if l, ok := parseLink(m); ok {
			byIndex[l.Index] = len(links)
			links = append(links, l)
		}
	}
	for _, m := range addrMsgs {
		if idx, p, ok := parseAddr(m); ok {
			if i, ok := byIndex[idx]; ok {
				links[i].Addrs = append(links[i].Addrs, p)
			}
		}
	}
	for _, m := range routeMsgs {
		oifs, isDefault, ok := parseRoute(m)
		if !ok {
			continue
		}
		for _, idx := range oifs {
			if i, ok := byIndex[idx]; ok {
				links[i].HasRoute = true
				if isDefault {
					links[i].HasDefaultRoute = true
				}
			}
		}
	}
	return links, nil
}

// nlMsg is one netlink message: its type, flags and payload.
type nlMsg struct {
	typ   uint16
	flags uint16
	seq   uint32
	pid   uint32
	data  []byte
}

// nlConn is a NETLINK_ROUTE socket for request/dump exchanges.
type nlConn struct {
	fd  int
	pid uint32 // our port id
	seq uint32
}

func openNetlink() (*nlConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("ifwatch: netlink socket: %w", err)
	}
	c := &nlConn{fd: fd, seq: uint32(time.Now().UnixNano())}
	// The kernel answers dumps at once; a timeout only guards against a
	// broken netlink implementation hanging List forever.
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ifwatch: netlink bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ifwatch: netlink getsockname: %w", err)
	}
	if nl, ok := sa.(*unix.SockaddrNetlink); ok {
		c.pid = nl.Pid
	}
	return c, nil
}

func (c *nlConn) close() { unix.Close(c.fd) }

// dump sends a dump request of type typ for all address families (the
// request body is a zeroed family header of bodyLen bytes) and returns
// every reply message.
func (c *nlConn) dump(typ uint16, bodyLen int) ([]nlMsg, error) {
	c.seq++
	req := make([]byte, unix.SizeofNlMsghdr+bodyLen)
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], typ)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], c.seq)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto", err)
	}

	buf := make([]byte, 1<<16)
	var out []nlMsg
	interrupted := false
	for {
		n, _, rflags, from, err := unix.Recvmsg(c.fd, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("recvmsg", err)
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return nil, errors.New("netlink message truncated")
		}
		if nl, ok := from.(*unix.SockaddrNetlink); ok && nl.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := parseMessages(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.seq != c.seq || (m.pid != 0 && m.pid != c.pid) {
				continue
			}
			if m.flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.typ {
			case unix.NLMSG_DONE:
				if len(m.data) >= 4 {
					if e := int32(ne.Uint32(m.data)); e < 0 {
						return nil, syscall.Errno(-e)
					}
				}
				if interrupted {
					return nil, errDumpInterrupted
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.data) < 4 {
					return nil, errors.New("short netlink error message")
				}
				if e := int32(ne.Uint32(m.data)); e < 0 {
					return nil, syscall.Errno(-e)
				}
			case unix.NLMSG_NOOP, unix.NLMSG_OVERRUN:
			default:
				m.data = append([]byte(nil), m.data...) // buf is reused
				out = append(out, m)
			}
		}
	}
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// parseMessages splits a datagram into netlink messages. The payloads
// alias b.
func parseMessages(b []byte) ([]nlMsg, error) {
	var out []nlMsg
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return nil, fmt.Errorf("malformed netlink message (length %d of %d)", l, len(b))
		}
		out = append(out, nlMsg{
			typ:   ne.Uint16(b[4:]),
			flags: ne.Uint16(b[6:]),
			seq:   ne.Uint32(b[8:]),
			pid:   ne.Uint32(b[12:]),
			data:  b[unix.SizeofNlMsghdr:l],
		})
		b = b[min(nlAlign(l), len(b)):]
	}
	return out, nil
}

// forAttrs calls fn for each route attribute in b, with the nested and
// byte-order flags stripped from the type.
func forAttrs(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b[0:]))
		typ := ne.Uint16(b[2:]) & nlaTypeMask
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(typ, b[unix.SizeofRtAttr:l])
		b = b[min(nlAlign(l), len(b)):]
	}
}

// parseLink decodes an RTM_NEWLINK message (struct ifinfomsg + attributes).
func parseLink(m nlMsg) (rawLink, bool) {
	if m.typ != unix.RTM_NEWLINK || len(m.data) < unix.SizeofIfInfomsg {
		return rawLink{}, false
	}
	d := m.data
	flags := ne.Uint32(d[8:])
	l := rawLink{
		Index:    int(int32(ne.Uint32(d[4:]))),
		Up:       flags&unix.IFF_UP != 0,
		Running:  flags&unix.IFF_RUNNING != 0,
		Loopback: flags&unix.IFF_LOOPBACK != 0,
	}
	forAttrs(d[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
		if typ == unix.IFLA_IFNAME {
			l.Name = cString(v)
		}
	})
	return l, l.Name != ""
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// parseAddr decodes an RTM_NEWADDR message (struct ifaddrmsg +
// attributes). Tentative and DAD-failed addresses are skipped: nothing
// can bind to them.
func parseAddr(m nlMsg) (index int, p netip.Prefix, ok bool) {
	if m.typ != unix.RTM_NEWADDR || len(m.data) < unix.SizeofIfAddrmsg {
		return 0, netip.Prefix{}, false
	}
	d := m.data
	family, plen := d[0], int(d[1])
	flags := uint32(d[2])
	index = int(ne.Uint32(d[4:]))
	var local, address []byte
	forAttrs(d[unix.SizeofIfAddrmsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.IFA_LOCAL:
			local = v
		case unix.IFA_ADDRESS:
			address = v
		case unix.IFA_FLAGS:
			if len(v) >= 4 {
				flags = ne.Uint32(v)
			}
		}
	})
	if flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
		return 0, netip.Prefix{}, false
	}
	// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
	// on point-to-point links, and the only one IPv6 sends.
	raw := local
	if raw == nil {
		raw = address
	}
	var a netip.Addr
	switch {
	case family == unix.AF_INET && len(raw) == 4:
		a = netip.AddrFrom4([4]byte(raw))
	case family == unix.AF_INET6 && len(raw) == 16:
		a = netip.AddrFrom16([16]byte(raw))
	default:
		return 0, netip.Prefix{}, false
	}
	if plen > a.BitLen() {
		return 0, netip.Prefix{}, false
	}
	return index, netip.PrefixFrom(a, plen), true
}

// parseRoute decodes an RTM_NEWROUTE message (struct rtmsg + attributes)
// and returns the output interfaces of a route that counts: IPv4 or IPv6,
// unicast, in any table but local, not towards a link-local or multicast
// destination.
func parseRoute(m nlMsg) (oifs []int, isDefault, ok bool) {
	if m.typ != unix.RTM_NEWROUTE || len(m.data) < unix.SizeofRtMsg {
		return nil, false, false
	}
	d := m.data
	family, dstLen, table, rtype := d[0], d[1], uint32(d[4]), d[7]
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return nil, false, false
	}
	var dst []byte
	forAttrs(d[unix.SizeofRtMsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				table = ne.Uint32(v)
			}
		case unix.RTA_DST:
			dst = v
		case unix.RTA_OIF:
			if len(v) >= 4 {
				oifs = append(oifs, int(ne.Uint32(v)))
			}
		case unix.RTA_MULTIPATH:
			// A sequence of struct rtnexthop, each followed by its own
			// attributes.
			for len(v) >= unix.SizeofRtNexthop {
				l := int(ne.Uint16(v[0:]))
				if l < unix.SizeofRtNexthop || l > len(v) {
					break
				}
				oifs = append(oifs, int(int32(ne.Uint32(v[4:]))))
				v = v[min(nlAlign(l), len(v)):]
			}
		}
	})
	if rtype != unix.RTN_UNICAST || table == unix.RT_TABLE_LOCAL {
		return nil, false, false
	}
	if a, ok := netip.AddrFromSlice(dst); ok && (a.IsLinkLocalUnicast() || a.IsMulticast()) {
		return nil, false, false
	}
	return oifs, dstLen == 0, len(oifs) > 0
}

// netlinkGroups are the rtnetlink multicast groups that wake the watcher.
// IPv6 routes are included as well as IPv4 ones, since an IPv6 default
// route (from router advertisements) counts too.
const netlinkGroups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR |
	unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE

// nlWaker is a non-blocking rtnetlink subscription socket wrapped in an
// *os.File, so reads park in the runtime poller and Close wakes them.
type nlWaker struct {
	f  *os.File
	rc syscall.RawConn
}

func platformWaker() (waker, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("ifwatch: netlink socket: %w", err)
	}
	// A larger queue makes overflow (ENOBUFS) rarer; it is harmless
	// anyway, since any wake re-lists everything.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: netlinkGroups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ifwatch: netlink subscribe: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &nlWaker{f: f, rc: rc}, nil
}

func (w *nlWaker) run(wake func()) error {
	buf := make([]byte, 1<<16)
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := w.rc.Read(func(fd uintptr) bool {
			for {
				n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN
				}
			}
		})
		if err != nil {
			return err // closed
		}
		switch {
		case rerr == nil:
			if nl, ok := from.(*unix.SockaddrNetlink); ok && nl.Pid != 0 {
				continue // only the kernel speaks on these groups
			}
			if n > 0 {
				wake()
			}
		case rerr == unix.ENOBUFS:
			// Notifications were lost; a full re-list catches up.
			wake()
		default:
			return os.NewSyscallError("recvfrom", rerr)
		}
	}
}

func (w *nlWaker) close() error { return w.f.Close() }
