package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/server"
	"braid/transport"
)

// UDP on loopback: datagrams of loopbackDatagram bytes offered for d, as
// fast as the sender can write them while at most offerWindow of them are
// on their way (sent and not yet counted at the far end), and what reached
// the far end in that time (and 200 ms after) counted: braid's whole UDP chain (the
// application's socket -> the SOCKS relay -> braid client -> QUIC
// datagrams -> concentrator -> the destination's socket) against one raw
// quic-go connection's datagrams with braid's QUIC settings. Goodput is
// delivered bytes over d; CPU is this process's.
//
// The window makes the sender a paced application rather than a flood:
// without it, writes to the SOCKS relay's socket have no back-pressure
// (quic-go's SendDatagram blocks when its queue is full, a UDP socket does
// not), so on a small machine the sender's writes took more than half
// the CPU (a profile of one run) from the chain it measures. Both runs use the same window.
const (
	loopbackDatagram = 1200
	offerWindow      = 128 // datagrams, 150 KB: under Linux's default 208 KB socket buffer
)

// arrivals counts the bytes that reached the far end and wakes a sender
// waiting on its window.
type arrivals struct {
	n    atomic.Int64
	wake chan struct{}
}

func newArrivals() *arrivals { return &arrivals{wake: make(chan struct{}, 1)} }

func (a *arrivals) add(n int) {
	a.n.Add(int64(n))
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// RawQUICDatagrams offers datagrams on one quic-go connection for d.
func RawQUICDatagrams(ctx context.Context, d time.Duration) (Result, error) {
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		return Result{}, err
	}
	pin, _ := pki.ParsePin(pinStr)
	ln, err := quic.ListenAddr("127.0.0.1:0", pki.ServerTLS(cert, "bench"), transport.QUICConfig())
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	got := newArrivals()
	go func() {
		qc, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		for {
			b, err := qc.ReceiveDatagram(context.Background())
			if err != nil {
				return
			}
			got.add(len(b))
		}
	}()
	qc, err := quic.DialAddr(ctx, ln.Addr().String(), clientTLS(pin), transport.QUICConfig())
	if err != nil {
		return Result{}, err
	}
	defer qc.CloseWithError(0, "")
	p := make([]byte, loopbackDatagram)
	return offer("quic-go datagrams", d, got, len(p), func() error {
		if err := qc.SendDatagram(p); err != nil {
			return fmt.Errorf("send datagram: %w", err)
		}
		return nil
	})
}

// BraidUDP offers datagrams through braid's UDP chain over paths
// loopback paths for d.
func BraidUDP(ctx context.Context, paths int, d time.Duration) (Result, error) {
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		return Result{}, err
	}
	pin, _ := pki.ParsePin(pinStr)
	srv, err := server.Start(server.Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"bench"},
		AllowPrivate: true, AllowOwn: true})
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()
	var pcs []client.PathConfig
	for i := range paths {
		pcs = append(pcs, client.PathConfig{Name: fmt.Sprintf("lo%d", i), Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")}})
	}
	cli, err := client.Start(ctx, client.Config{Server: srv.Addr().String(), Pin: pin, Token: "bench", SOCKS: "127.0.0.1:0", Paths: pcs})
	if err != nil {
		return Result{}, err
	}
	defer cli.Close()
	if _, err := cli.WaitSession(ctx); err != nil {
		return Result{}, err
	}
	dest, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return Result{}, err
	}
	defer dest.Close()
	got := newArrivals()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := dest.Read(buf)
			if err != nil {
				return
			}
			got.add(n)
		}
	}()
	conn, err := net.Dial("tcp", cli.SOCKSAddr().String())
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	relay, err := socks5.Associate(conn, nil, socks5.Addr{})
	if err != nil {
		return Result{}, err
	}
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(relay.IP, relay.Port)))
	if err != nil {
		return Result{}, err
	}
	defer uc.Close()
	da := dest.LocalAddr().(*net.UDPAddr).AddrPort()
	hdr, _ := socks5.AppendUDPHeader(nil, socks5.UDPHeader{Addr: socks5.Addr{IP: da.Addr(), Port: da.Port()}})
	p := append(hdr, make([]byte, loopbackDatagram)...)
	// A first datagram through, so the association is in place.
	if !waitUDP(ctx, uc, p, &got.n) {
		return Result{}, fmt.Errorf("braid udp: no datagram came through")
	}
	got.n.Store(0)
	return offer(fmt.Sprintf("braid udp %d path(s)", paths), d, got, loopbackDatagram, func() error {
		_, err := uc.Write(p)
		return err
	})
}

func waitUDP(ctx context.Context, uc *net.UDPConn, p []byte, got *atomic.Int64) bool {
	for range 50 {
		uc.Write(p)
		time.Sleep(20 * time.Millisecond)
		if got.Load() > 0 || ctx.Err() != nil {
			return got.Load() > 0
		}
	}
	return false
}

// offer calls send (a datagram of size payload bytes each time) for d,
// keeping at most offerWindow datagrams on their way, and counts what got
// says arrived by 200 ms after. A datagram counted nowhere within 5 ms
// is taken for lost: the window forgets it.
func offer(system string, d time.Duration, got *arrivals, size int, send func() error) (Result, error) {
	c0, t0 := cpuTime(), time.Now()
	var sent int64
	lost := time.NewTimer(time.Hour)
	defer lost.Stop()
	for time.Since(t0) < d {
		for sent-got.n.Load() > offerWindow*int64(size) {
			lost.Reset(5 * time.Millisecond)
			select {
			case <-got.wake:
			case <-lost.C:
				sent = got.n.Load()
			}
		}
		if err := send(); err != nil {
			return Result{}, fmt.Errorf("%s: %w", system, err)
		}
		sent += int64(size)
	}
	time.Sleep(200 * time.Millisecond)
	n := got.n.Load()
	r := Result{System: system, Bytes: n, Elapsed: d, CPU: cpuTime() - c0}
	r.Goodput = float64(n) * 8 / d.Seconds()
	if n > 0 {
		r.CPUPerGB = r.CPU.Seconds() / (float64(n) / 1e9)
	}
	return r, nil
}
