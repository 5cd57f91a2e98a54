// Package bench measures braid against baselines on emulated provider
// paths: it is braid-bench (cmd/braid-bench). A Scenario (scenario.go,
// shipped ones in scenarios/) names the paths, the workloads, the SLA and
// the systems; Run (run.go) sets each system up in turn over fresh
// emulators (system.go), drives the workloads (workload.go) and measures;
// Write puts out results.json, report.md and the plots (report.go,
// plot.go). docs/BENCH.md describes the format and every metric. bench/emu
// is the link emulator shared with the tests and the demo.
//
// This file holds the fixed-size loopback measurement: the CPU ceiling of the
// machine, braid's whole chain (SOCKS client -> braid client -> loopback
// QUIC paths -> concentrator -> destination) beside one raw quic-go stream
// moving the same bytes.
package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"

	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/server"
	"braid/transport"
)

// Result is one measured transfer.
type Result struct {
	System   string
	Bytes    int64
	Elapsed  time.Duration
	CPU      time.Duration // user+system CPU of this process during the run
	Goodput  float64       // bits/s
	CPUPerGB float64       // CPU seconds per 10^9 bytes delivered
}

func (r Result) String() string {
	return fmt.Sprintf("%-16s %8.1f Mbit/s %6.2f CPU-s/GB (%d bytes in %v)",
		r.System, r.Goodput/1e6, r.CPUPerGB, r.Bytes, r.Elapsed.Round(time.Millisecond))
}

func measure(system string, n int64, run func() error) (Result, error) {
	c0, t0 := cpuTime(), time.Now()
	if err := run(); err != nil {
		return Result{}, fmt.Errorf("%s: %w", system, err)
	}
	r := Result{System: system, Bytes: n, Elapsed: time.Since(t0), CPU: cpuTime() - c0}
	r.Goodput = float64(n) * 8 / r.Elapsed.Seconds()
	r.CPUPerGB = r.CPU.Seconds() / (float64(n) / 1e9)
	return r, nil
}

// sink is a TCP destination that reads and discards everything, then
// reports how much it read when the sender half-closes.
func sink() (net.Listener, error) {
	return listen(func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d", n)
	})
}

// listen serves each connection to a new loopback listener with handle,
// which the connection is closed after.
func listen(handle func(net.Conn)) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln, nil
}

// Braid sends n bytes upstream through a braid client with paths loopback
// paths to a concentrator and a discarding destination, and measures it.
func Braid(ctx context.Context, paths int, n int64, tcfg transport.Config) (Result, error) {
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		return Result{}, err
	}
	pin, _ := pki.ParsePin(pinStr)
	srv, err := server.Start(server.Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"bench"},
		AllowPrivate: true, AllowOwn: true, Transport: tcfg})
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()
	var pcs []client.PathConfig
	for i := range paths {
		pcs = append(pcs, client.PathConfig{Name: fmt.Sprintf("lo%d", i),
			Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")}})
	}
	cli, err := client.Start(ctx, client.Config{Server: srv.Addr().String(), Pin: pin, Token: "bench",
		SOCKS: "127.0.0.1:0", Paths: pcs, Transport: tcfg})
	if err != nil {
		return Result{}, err
	}
	defer cli.Close()
	ln, err := sink()
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	dest := ln.Addr().(*net.TCPAddr).AddrPort()
	return measure(fmt.Sprintf("braid %d path(s)", paths), n, func() error {
		conn, err := net.Dial("tcp", cli.SOCKSAddr().String())
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := socks5.Connect(conn, nil, socks5.Addr{IP: dest.Addr(), Port: dest.Port()}); err != nil {
			return err
		}
		return sendAndConfirm(conn, n, conn.(*net.TCPConn).CloseWrite)
	})
}

// sendAndConfirm writes n bytes, half-closes, and checks the peer's count.
func sendAndConfirm(w io.ReadWriter, n int64, closeWrite func() error) error {
	buf := make([]byte, 256<<10)
	for left := n; left > 0; {
		c := min(left, int64(len(buf)))
		if _, err := w.Write(buf[:c]); err != nil {
			return err
		}
		left -= c
	}
	if err := closeWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(w)
	if err != nil {
		return err
	}
	if string(got) != fmt.Sprint(n) {
		return fmt.Errorf("receiver counted %q bytes, want %d", got, n)
	}
	return nil
}

// TCPLegs sends n bytes through the two loopback TCP legs braid's SOCKS
// chain has at its ends (application -> relay -> destination), with a
// user-space copy between them and nothing else: what the chain costs before
// braid adds anything, to be added to RawQUIC's cost when braid is held
// against the two of them.
func TCPLegs(ctx context.Context, n int64) (Result, error) {
	dst, err := sink()
	if err != nil {
		return Result{}, err
	}
	defer dst.Close()
	ln, err := listen(func(c net.Conn) {
		var d net.Dialer
		up, err := d.DialContext(ctx, "tcp", dst.Addr().String())
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		// Plain reads and writes, as braid's relay makes: a TCP-to-TCP
		// io.Copy would splice in the kernel.
		go func() { io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{up}); close(done) }()
		io.Copy(struct{ io.Writer }{up}, struct{ io.Reader }{c})
		up.(*net.TCPConn).CloseWrite()
		<-done
	})
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	return measure("tcp legs", n, func() error {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer conn.Close()
		return sendAndConfirm(conn, n, conn.(*net.TCPConn).CloseWrite)
	})
}

// RawQUIC sends n bytes over one plain quic-go stream on loopback, with
// the same QUIC settings braid uses: the baseline braid is held against.
func RawQUIC(ctx context.Context, n int64) (Result, error) {
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
	go func() {
		for {
			qc, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				st, err := qc.AcceptStream(context.Background())
				if err != nil {
					return
				}
				m, _ := io.Copy(io.Discard, st)
				fmt.Fprintf(st, "%d", m)
				st.Close()
			}()
		}
	}()
	qc, err := quic.DialAddr(ctx, ln.Addr().String(), clientTLS(pin), transport.QUICConfig())
	if err != nil {
		return Result{}, err
	}
	defer qc.CloseWithError(0, "")
	return measure("quic-go stream", n, func() error {
		st, err := qc.OpenStreamSync(ctx)
		if err != nil {
			return err
		}
		return sendAndConfirm(st, n, st.Close)
	})
}

func clientTLS(pin [32]byte) *tls.Config { return pki.ClientTLS(pin, "bench") }
