package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"braid/internal/socks5"
	"braid/internal/status"
)

// udpEcho answers every datagram with "re:" and the datagram.
func udpEcho(t *testing.T) *net.UDPConn {
	t.Helper()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			uc.WriteToUDPAddrPort(append([]byte("re:"), buf[:n]...), from)
		}
	}()
	return uc
}

// associate opens a UDP association on w's proxy: its TCP control
// connection, the application's UDP socket, and the relay to send to
// (checked to be on loopback). The test's cleanup closes both sockets.
func associate(t *testing.T, w *world) (net.Conn, *net.UDPConn, netip.AddrPort) {
	t.Helper()
	ctl, err := net.Dial("tcp", w.cli.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	ctl.SetDeadline(time.Now().Add(20 * time.Second))
	relay, err := socks5.Associate(ctl, nil, socks5.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if !relay.IP.IsLoopback() || relay.Port == 0 {
		t.Fatalf("relay address %v", relay)
	}
	app, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return ctl, app, netip.AddrPortFrom(relay.IP, relay.Port)
}

// A DNS-like exchange through SOCKS5 UDP ASSOCIATE: requests go out over
// the paths to a UDP service, answers come back with the service's
// address in their header; the association ends with its TCP connection.
func TestUDPAssociate(t *testing.T) {
	w := newWorld(t, options{links: threeLinks()[:2]})
	echo := udpEcho(t)
	svc := echo.LocalAddr().(*net.UDPAddr).AddrPort()

	ctl, app, to := associate(t, w)
	query := func(i int) ([]byte, error) {
		b, _ := socks5.AppendUDPHeader(nil, socks5.UDPHeader{Addr: socks5.Addr{IP: svc.Addr(), Port: svc.Port()}})
		b = append(b, fmt.Sprintf("query %d %s", i, bytes.Repeat([]byte{'q'}, i%900))...)
		_, err := app.WriteToUDPAddrPort(b, to)
		return b, err
	}
	buf := make([]byte, 64<<10)
	answered := 0
	for i := range 100 {
		if _, err := query(i); err != nil {
			t.Fatal(err)
		}
		app.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := app.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue // lost: UDP may lose
		}
		if from.Port() != to.Port() {
			t.Fatalf("answer from %v, not the relay %v", from, to)
		}
		h, payload, err := socks5.ParseUDPHeader(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if h.Frag != 0 || h.Addr.IP != svc.Addr() || h.Addr.Port != svc.Port() {
			t.Fatalf("answer header %+v, want from %v", h, svc)
		}
		want := fmt.Sprintf("re:query %d %s", i, bytes.Repeat([]byte{'q'}, i%900))
		if string(payload) != want {
			t.Fatalf("answer %d: %q", i, payload[:min(len(payload), 40)])
		}
		answered++
	}
	if answered < 95 {
		t.Fatalf("%d of 100 queries answered", answered)
	}

	// A fragment is dropped, not forwarded.
	frag, _ := socks5.AppendUDPHeader(nil, socks5.UDPHeader{Frag: 1, Addr: socks5.Addr{IP: svc.Addr(), Port: svc.Port()}})
	app.WriteToUDPAddrPort(append(frag, "x"...), to)
	app.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, _, err := app.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatal("a fragment was answered")
	}

	// Closing the TCP connection ends the association: no more answers.
	ctl.Close()
	time.Sleep(300 * time.Millisecond)
	query(1)
	app.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := app.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("answered after the association ended: %q", buf[:min(n, 40)])
	}
}

// Without --allow-private, a datagram to a loopback or private address,
// given as an address or as a name that resolves to one, never leaves the
// concentrator: it is dropped and counted as refused.
func TestUDPRefusedDestination(t *testing.T) {
	w := newWorld(t, options{links: threeLinks()[:1], private: true})
	echo := udpEcho(t)
	svc := echo.LocalAddr().(*net.UDPAddr).AddrPort()
	var heard atomic.Int64
	// A second listener beside the echo counts what reaches it.
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFromUDP(buf); err != nil {
				return
			}
			heard.Add(1)
		}
	}()
	sinkPort := uint16(sink.LocalAddr().(*net.UDPAddr).Port)

	_, app, to := associate(t, w)
	dests := []socks5.Addr{
		{IP: svc.Addr(), Port: svc.Port()},
		{IP: netip.MustParseAddr("127.0.0.1"), Port: sinkPort},
		{Name: "localhost", Port: sinkPort},
	}
	const each = 10
	for _, d := range dests {
		for i := range each {
			b, _ := socks5.AppendUDPHeader(nil, socks5.UDPHeader{Addr: d})
			if _, err := app.WriteToUDPAddrPort(append(b, fmt.Sprintf("to %v %d", d, i)...), to); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := uint64(len(dests) * each)
	deadline := time.Now().Add(10 * time.Second)
	for w.srv.UDPDrops().Refused < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d := w.srv.UDPDrops(); d.Refused != want {
		t.Fatalf("drops %+v, want %d refused", d, want)
	}
	// The status page says so, in its document and its table.
	doc := w.srv.Status()
	if u := doc.UDPDropped; u == nil || u.Refused != want || u.Total() != want {
		t.Fatalf("status udp_dropped %+v, want %d refused", u, want)
	}
	var table strings.Builder
	status.WriteServer(&table, &doc)
	if line := fmt.Sprintf("%d refused", want); !strings.Contains(table.String(), line) {
		t.Fatalf("status table lacks %q:\n%s", line, table.String())
	}
	app.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := app.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
		t.Fatalf("a refused datagram was answered: %d bytes", n)
	}
	if n := heard.Load(); n != 0 {
		t.Fatalf("%d refused datagrams reached the local listener", n)
	}
}
