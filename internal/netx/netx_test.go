package netx

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBindString(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		b    Bind
		want string
	}{
		{Bind{}, "any"},
		{Bind{IP: ip}, "192.0.2.1"},
		{Bind{Device: "eth1"}, "dev eth1"},
		{Bind{IP: ip, Device: "eth1"}, "192.0.2.1 dev eth1"},
	} {
		if got := tc.b.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.b, got, tc.want)
		}
	}
}

func TestListenUDPIP(t *testing.T) {
	for _, network := range []string{"udp", "udp4"} {
		c, err := ListenUDP(network, Bind{IP: netip.MustParseAddr("127.0.0.1")})
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		la := c.LocalAddr().(*net.UDPAddr).AddrPort()
		c.Close()
		if la.Addr().Unmap() != netip.MustParseAddr("127.0.0.1") || la.Port() == 0 {
			t.Errorf("%s: local address %v, want 127.0.0.1:<ephemeral>", network, la)
		}
	}
	// A v4-mapped address binds as plain IPv4.
	c, err := ListenUDP("udp", Bind{IP: netip.MustParseAddr("::ffff:127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr(); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("mapped bind: local address %v", got)
	}
	c.Close()
}

func TestListenUDPAny(t *testing.T) {
	c, err := ListenUDP("udp4", Bind{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if la := c.LocalAddr().(*net.UDPAddr); !la.IP.IsUnspecified() || la.Port == 0 {
		t.Errorf("local address %v, want unspecified with an ephemeral port", la)
	}
}

func TestListenUDPErrors(t *testing.T) {
	v4 := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		network string
		b       Bind
		want    string
	}{
		{"tcp", Bind{IP: v4}, `unsupported network "tcp"`},
		{"udp6", Bind{IP: v4}, "127.0.0.1"},
		{"udp4", Bind{IP: netip.MustParseAddr("::1")}, "::1"},
		// TEST-NET-1 is never assigned locally, so bind must fail.
		{"udp", Bind{IP: netip.MustParseAddr("192.0.2.1")}, "192.0.2.1"},
	} {
		c, err := ListenUDP(tc.network, tc.b)
		if err == nil {
			c.Close()
			t.Errorf("ListenUDP(%q, %v) succeeded", tc.network, tc.b)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ListenUDP(%q, %v) err = %v, want it to mention %q", tc.network, tc.b, err, tc.want)
		}
	}
}

// listenLo binds a socket to device "lo", skipping the test when the
// environment forbids SO_BINDTODEVICE rather than failing it.
func listenLo(t *testing.T, b Bind) *net.UDPConn {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("SO_BINDTODEVICE is Linux-only (GOOS=%s)", runtime.GOOS)
	}
	if !InterfaceExists("lo") {
		t.Skip(`no interface named "lo" in this network namespace`)
	}
	c, err := ListenUDP("udp4", b)
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("SO_BINDTODEVICE not permitted here (needs CAP_NET_RAW on kernels before 5.7): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListenUDPDeviceLo(t *testing.T) {
	c := listenLo(t, Bind{Device: "lo"})
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var dev string
	var gerr error
	if err := raw.Control(func(fd uintptr) { dev, gerr = getBindToDevice(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("read back SO_BINDTODEVICE: %v", gerr)
	}
	if dev != "lo" {
		t.Errorf("socket bound to device %q, want lo", dev)
	}

	c2 := listenLo(t, Bind{IP: netip.MustParseAddr("127.0.0.1"), Device: "lo"})
	defer c2.Close()
	if got := c2.LocalAddr().(*net.UDPAddr).AddrPort().Addr(); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("local address %v, want 127.0.0.1", got)
	}
}

func TestListenUDPMissingDevice(t *testing.T) {
	const dev = "braidnope0"
	if InterfaceExists(dev) {
		t.Skipf("interface %s unexpectedly exists", dev)
	}
	c, err := ListenUDP("udp4", Bind{Device: dev})
	if err == nil {
		c.Close()
		t.Fatalf("binding to nonexistent device %s succeeded", dev)
	}
	if !strings.Contains(err.Error(), dev) {
		t.Errorf("err = %v, want it to name %s", err, dev)
	}
}

func TestSendThroughLo(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx := listenLo(t, Bind{Device: "lo"})
	defer tx.Close()

	msg := []byte("braid over lo")
	if _, err := tx.WriteTo(msg, rx.LocalAddr()); err != nil {
		t.Fatalf("send via lo: %v", err)
	}
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, from, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if !bytes.Equal(buf[:n], msg) {
		t.Errorf("got %q, want %q", buf[:n], msg)
	}
	if want := tx.LocalAddr().(*net.UDPAddr).Port; int(from.Port()) != want {
		t.Errorf("packet came from port %d, want the lo-bound socket's %d", from.Port(), want)
	}
}

func TestInterfaceExists(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Skipf("cannot list interfaces: %v", err)
	}
	if !InterfaceExists(ifs[0].Name) {
		t.Errorf("InterfaceExists(%q) = false", ifs[0].Name)
	}
	if InterfaceExists("braidnope0") || InterfaceExists("") {
		t.Error("InterfaceExists true for a missing interface")
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.1:80": true, "localhost": true, "LocalHost:8080": true, "[::1]:9": true, "::1": true,
		"127.9.9.9": true, "": false, ":9100": false, "0.0.0.0:1": false, "10.0.0.1": false, "[::ffff:10.0.0.1]": false,
		"localhost.evil.example": false, "evil.example:80": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
