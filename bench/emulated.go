package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"braid/bench/emu"
	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/server"
	"braid/transport"
)

// PathSpec is one emulated path: its link, both directions alike.
type PathSpec struct {
	Name string
	Link emu.Link
	// Conns is the number of QUIC connections in the path's pool.
	Conns int
}

// Download pulls bytes from a destination through braid over emulated
// paths for d, and returns the goodput (after warm, excluded), the bytes
// each path's emulator delivered, and the concentrator's view of its paths
// at the end (what it sent: downloads).
func Download(ctx context.Context, paths []PathSpec, tcfg transport.Config, warm, d time.Duration) (goodput float64, perPath []uint64, stats []transport.PathStats, err error) {
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		return 0, nil, nil, err
	}
	pin, _ := pki.ParsePin(pinStr)
	srv, err := server.Start(server.Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"bench"},
		AllowPrivate: true, AllowOwn: true, Transport: tcfg})
	if err != nil {
		return 0, nil, nil, err
	}
	defer srv.Close()
	var pcs []client.PathConfig
	var relays []*emu.Relay
	for i, p := range paths {
		r, err := emu.NewRelay("127.0.0.1:0", srv.Addr(), p.Link, p.Link, int64(i+1))
		if err != nil {
			return 0, nil, nil, err
		}
		defer r.Close()
		relays = append(relays, r)
		pcs = append(pcs, client.PathConfig{Name: p.Name, Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")},
			Server: r.Addr().String(), Conns: p.Conns})
	}
	cli, err := client.Start(ctx, client.Config{Pin: pin, Token: "bench", SOCKS: "127.0.0.1:0", Paths: pcs, Transport: tcfg})
	if err != nil {
		return 0, nil, nil, err
	}
	defer cli.Close()
	// A source that writes until the reader goes away.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, nil, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", cli.SOCKSAddr().String())
	if err != nil {
		return 0, nil, nil, err
	}
	defer conn.Close()
	dest := ln.Addr().(*net.TCPAddr).AddrPort()
	if _, err := socks5.Connect(conn, nil, socks5.Addr{IP: dest.Addr(), Port: dest.Port()}); err != nil {
		return 0, nil, nil, err
	}
	buf := make([]byte, 64<<10)
	start := time.Now()
	var counted int64
	var t0 time.Time
	before := make([]uint64, len(relays))
	for time.Since(start) < warm+d {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil && err != io.EOF {
			return 0, nil, nil, fmt.Errorf("read: %w", err)
		}
		if t0.IsZero() && time.Since(start) >= warm {
			t0 = time.Now()
			for i, r := range relays {
				before[i] = r.Stats().Down.DeliveredBytes
			}
		} else if !t0.IsZero() {
			counted += int64(n)
		}
	}
	el := time.Since(t0)
	for i, r := range relays {
		perPath = append(perPath, r.Stats().Down.DeliveredBytes-before[i])
	}
	for _, s := range srv.Sessions() {
		for _, p := range s.Paths() {
			stats = append(stats, p.Stats())
		}
	}
	return float64(counted) * 8 / el.Seconds(), perPath, stats, nil
}
