//go:build linux

package ifwatch

import (
	"cmp"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// TestListHost lists the interfaces of the namespace the test runs in and
// checks the result is well formed.
func TestListHost(t *testing.T) {
	ifs, err := List()
	if err != nil {
		t.Skipf("skipping: netlink unavailable here: %v", err)
	}
	t.Logf("usable interfaces: %+v", ifs)
	if !slices.IsSortedFunc(ifs, func(a, b Interface) int { return cmp.Compare(a.Name, b.Name) }) {
		t.Errorf("not sorted by name: %+v", ifs)
	}
	for _, i := range ifs {
		if i.Name == "lo" {
			t.Errorf("loopback listed: %+v", i)
		}
		if i.Index <= 0 || len(i.Addrs) == 0 {
			t.Errorf("bad interface: %+v", i)
		}
		for _, p := range i.Addrs {
			if !p.Addr().IsGlobalUnicast() {
				t.Errorf("%s: non-global address %v", i.Name, p)
			}
		}
		switch i.Medium {
		case MediumEthernet, MediumWiFi, MediumCellular, MediumOther:
		default:
			t.Errorf("%s: bad medium %q", i.Name, i.Medium)
		}
	}
}

// TestWatchHostStops runs a real netlink watch and checks that cancelling
// it closes the channel and leaves no goroutine behind.
func TestWatchHostStops(t *testing.T) {
	if _, err := List(); err != nil {
		t.Skipf("skipping: netlink unavailable here: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ch)
	drain(t, cancel, ch)
	goleak.VerifyNone(t)
}

// TestNetlinkSubscribe checks the subscription socket opens and closes
// promptly while a reader is blocked on it.
func TestNetlinkSubscribe(t *testing.T) {
	wk, err := platformWaker()
	if err != nil {
		t.Skipf("skipping: no rtnetlink subscription here: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- wk.run(func() {}) }()
	time.Sleep(50 * time.Millisecond)
	if err := wk.close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("run returned nil after close")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("run still blocked 2 s after close")
	}
}

// nlBuilder assembles netlink messages for the parser tests.
type nlBuilder struct{ b []byte }

func (n *nlBuilder) attr(typ uint16, v []byte) {
	l := unix.SizeofRtAttr + len(v)
	n.b = binary.NativeEndian.AppendUint16(n.b, uint16(l))
	n.b = binary.NativeEndian.AppendUint16(n.b, typ)
	n.b = append(n.b, v...)
	for len(n.b)%4 != 0 {
		n.b = append(n.b, 0)
	}
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func routeMsg(family, dstLen, table, rtype byte, build func(*nlBuilder)) nlMsg {
	n := &nlBuilder{b: []byte{family, dstLen, 0, 0, table, 0, 0, rtype, 0, 0, 0, 0}}
	build(n)
	return nlMsg{typ: unix.RTM_NEWROUTE, data: n.b}
}

func TestParseRoute(t *testing.T) {
	v4 := func(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
	v6 := func(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }

	// Multipath default route in a policy table (id > 255).
	var nh []byte
	for _, idx := range []uint32{3, 4} {
		nh = binary.NativeEndian.AppendUint16(nh, unix.SizeofRtNexthop)
		nh = append(nh, 0, 0)
		nh = binary.NativeEndian.AppendUint32(nh, idx)
	}
	m := routeMsg(unix.AF_INET, 0, unix.RT_TABLE_UNSPEC, unix.RTN_UNICAST, func(n *nlBuilder) {
		n.attr(unix.RTA_TABLE, u32(1021))
		n.attr(unix.RTA_MULTIPATH, nh)
	})
	oifs, def, ok := parseRoute(m)
	if !ok || !def || !slices.Equal(oifs, []int{3, 4}) {
		t.Errorf("multipath default: %v %v %v", oifs, def, ok)
	}

	// Prefix route.
	m = routeMsg(unix.AF_INET, 24, unix.RT_TABLE_MAIN, unix.RTN_UNICAST, func(n *nlBuilder) {
		n.attr(unix.RTA_DST, v4("192.0.2.0"))
		n.attr(unix.RTA_OIF, u32(2))
	})
	if oifs, def, ok := parseRoute(m); !ok || def || !slices.Equal(oifs, []int{2}) {
		t.Errorf("prefix route: %v %v %v", oifs, def, ok)
	}

	// Routes that do not count.
	for name, m := range map[string]nlMsg{
		"local table": routeMsg(unix.AF_INET, 32, unix.RT_TABLE_LOCAL, unix.RTN_LOCAL, func(n *nlBuilder) {
			n.attr(unix.RTA_DST, v4("192.0.2.1"))
			n.attr(unix.RTA_OIF, u32(2))
		}),
		"link-local": routeMsg(unix.AF_INET6, 64, unix.RT_TABLE_MAIN, unix.RTN_UNICAST, func(n *nlBuilder) {
			n.attr(unix.RTA_DST, v6("fe80::"))
			n.attr(unix.RTA_OIF, u32(2))
		}),
		"unreachable": routeMsg(unix.AF_INET6, 0, unix.RT_TABLE_MAIN, unix.RTN_UNREACHABLE, func(n *nlBuilder) {
			n.attr(unix.RTA_OIF, u32(1))
		}),
		"mpls": routeMsg(unix.AF_MPLS, 20, unix.RT_TABLE_MAIN, unix.RTN_UNICAST, func(n *nlBuilder) {
			n.attr(unix.RTA_OIF, u32(2))
		}),
	} {
		if oifs, _, ok := parseRoute(m); ok {
			t.Errorf("%s: counted, oifs %v", name, oifs)
		}
	}
}

func TestParseAddr(t *testing.T) {
	addrMsg := func(family, plen, flags byte, index uint32, build func(*nlBuilder)) nlMsg {
		n := &nlBuilder{b: append([]byte{family, plen, flags, 0}, u32(index)...)}
		build(n)
		return nlMsg{typ: unix.RTM_NEWADDR, data: n.b}
	}
	// Point-to-point IPv4: IFA_LOCAL is ours, IFA_ADDRESS the peer's.
	m := addrMsg(unix.AF_INET, 32, 0, 5, func(n *nlBuilder) {
		n.attr(unix.IFA_ADDRESS, []byte{10, 0, 0, 2})
		n.attr(unix.IFA_LOCAL, []byte{10, 0, 0, 1})
	})
	if idx, p, ok := parseAddr(m); !ok || idx != 5 || p != pfx("10.0.0.1/32") {
		t.Errorf("ptp: %v %v %v", idx, p, ok)
	}
	six := netip.MustParseAddr("2001:db8::1").As16()
	m = addrMsg(unix.AF_INET6, 64, 0, 6, func(n *nlBuilder) { n.attr(unix.IFA_ADDRESS, six[:]) })
	if idx, p, ok := parseAddr(m); !ok || idx != 6 || p != pfx("2001:db8::1/64") {
		t.Errorf("v6: %v %v %v", idx, p, ok)
	}
	// Tentative, by the header flags or by IFA_FLAGS.
	m = addrMsg(unix.AF_INET6, 64, unix.IFA_F_TENTATIVE, 6, func(n *nlBuilder) { n.attr(unix.IFA_ADDRESS, six[:]) })
	if _, _, ok := parseAddr(m); ok {
		t.Error("tentative address kept")
	}
	m = addrMsg(unix.AF_INET6, 64, 0, 6, func(n *nlBuilder) {
		n.attr(unix.IFA_ADDRESS, six[:])
		n.attr(unix.IFA_FLAGS, u32(unix.IFA_F_DADFAILED))
	})
	if _, _, ok := parseAddr(m); ok {
		t.Error("DAD-failed address kept")
	}
}

// TestParseGarbage feeds random bytes to the parsers: they must not panic.
func TestParseGarbage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(80))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		if r.IntN(2) == 0 && len(b) >= 4 {
			binary.NativeEndian.PutUint32(b, uint32(len(b)-r.IntN(4)))
		}
		msgs, _ := parseMessages(b)
		for _, typ := range []uint16{unix.RTM_NEWLINK, unix.RTM_NEWADDR, unix.RTM_NEWROUTE} {
			m := nlMsg{typ: typ, data: b}
			parseLink(m)
			parseAddr(m)
			parseRoute(m)
		}
		_ = msgs
	}
}
