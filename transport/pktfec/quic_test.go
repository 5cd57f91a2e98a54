package pktfec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/internal/pki"

	"github.com/quic-go/quic-go"
)

// quicPair is one quic-go connection over an emulated path, both ends on
// sockets that are Conns when coded (and plain *net.UDPConn otherwise).
type quicPair struct {
	cli, srv     *quic.Conn
	cconn, sconn *Conn
	relay        *emu.Relay
	close        func()
}

func newQUICPair(tb testing.TB, link emu.Link, coded bool) *quicPair {
	tb.Helper()
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		tb.Fatal(err)
	}
	pin, _ := pki.ParsePin(pinStr)
	su, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	cu, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	p := &quicPair{}
	var spc, cpc net.PacketConn = su, cu
	if coded {
		p.sconn, p.cconn = New(su, Config{}), New(cu, Config{})
		spc, cpc = p.sconn, p.cconn
	}
	relay, err := emu.NewRelay("127.0.0.1:0", su.LocalAddr().(*net.UDPAddr), link, link, 1)
	if err != nil {
		tb.Fatal(err)
	}
	p.relay = relay
	str := &quic.Transport{Conn: spc}
	ln, err := str.Listen(pki.ServerTLS(cert, "t"), &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	ctr := &quic.Transport{Conn: cpc}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	p.cli, err = ctr.Dial(ctx, relay.Addr(), pki.ClientTLS(pin, "t"), &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	p.srv = <-accepted
	if p.srv == nil {
		tb.Fatal("no connection accepted")
	}
	if coded {
		// What a join does once both ends said they decode.
		p.cconn.Enable(relay.Addr())
		p.sconn.Enable(p.srv.RemoteAddr())
	}
	p.close = func() {
		p.cli.CloseWithError(0, "")
		p.srv.CloseWithError(0, "")
		ln.Close()
		ctr.Close()
		str.Close()
		relay.Close()
		cu.Close()
		su.Close()
	}
	tb.Cleanup(p.close)
	return p
}

// upload sends n random bytes client to server and returns them hashed on
// both sides.
func (p *quicPair) upload(tb testing.TB, n int) (sent, got [32]byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan [32]byte, 1)
	go func() {
		s, err := p.srv.AcceptStream(ctx)
		if err != nil {
			close(done)
			return
		}
		h := sha256.New()
		io.Copy(h, s)
		var sum [32]byte
		h.Sum(sum[:0])
		done <- sum
	}()
	s, err := p.cli.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for left := n; left > 0; left -= len(buf) {
		b := buf[:min(len(buf), left)]
		rng.Read(b)
		h.Write(b)
		if _, err := s.Write(b); err != nil {
			tb.Fatal(err)
		}
	}
	s.Close()
	h.Sum(sent[:0])
	got = <-done
	return sent, got
}

var lossyLink = emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond, Loss: 0.02, QueueBytes: 250_000}

// Over a path that loses 2% of packets at random, coding keeps most of
// the loss from quic-go: its own counters show a small part of what the
// link dropped, and the bytes arrive intact.
func TestQUICOverLossyPath(t *testing.T) {
	p := newQUICPair(t, lossyLink, true)
	sent, got := p.upload(t, 8<<20)
	if sent != got {
		t.Fatal("upload hash mismatch")
	}
	dropped := p.relay.Stats().Up.DroppedLoss
	lost := p.cli.ConnectionStats().PacketsLost
	st, _ := p.sconn.PeerStats(p.srv.RemoteAddr())
	cs, _ := p.cconn.PeerStats(p.relay.Addr())
	t.Logf("link dropped %d, quic-go counted %d lost; server rebuilt %d of %d expected; client sent %d parity for %d data (m %d)",
		dropped, lost, st.Repaired, st.Expected, cs.ParitySent, cs.DataSent, cs.M)
	if dropped < 50 {
		t.Fatalf("the link dropped only %d packets: no test", dropped)
	}
	if st.Repaired < dropped/2 {
		t.Errorf("rebuilt %d of %d dropped", st.Repaired, dropped)
	}
	if lost*4 > dropped {
		t.Errorf("quic-go counted %d lost of %d dropped: coding did not keep the loss away", lost, dropped)
	}
	if cs.ParitySent == 0 || cs.ParitySent > cs.DataSent/3 {
		t.Errorf("parity %d for %d data packets", cs.ParitySent, cs.DataSent)
	}
}

// Nothing of a Conn outlives Close: its timers are stopped and its
// buffers handed back.
func TestCloseLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	p := newPipe(t, Config{K: 8, fixedM: 2, GroupDelay: time.Hour})
	for i := range 3 {
		p.a.WriteTo(quicPacket(i), p.ra.LocalAddr())
	}
	p.collect(3, time.Second)
	p.close()
	if p.a.kept.Load() != 0 || p.b.kept.Load() != 0 {
		t.Errorf("kept bytes after close: %d %d", p.a.kept.Load(), p.b.kept.Load())
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after close, %d before", n, before)
	}
}

// The packets kept for repair stay within MaxKeptBytes however many
// packets come.
func TestKeptBound(t *testing.T) {
	p := newPipe(t, Config{K: 64, fixedM: 1, GroupDelay: time.Hour, MaxKeptBytes: 16 * readBufLen})
	for batch := range 10 {
		for i := range 20 {
			p.a.WriteTo(quicPacket(batch*20+i), p.ra.LocalAddr())
		}
		if got := p.collect(20, time.Second); len(got) != 20 {
			t.Fatalf("got %d of 20", len(got))
		}
		if k := p.b.kept.Load(); k > 16*readBufLen {
			t.Fatalf("kept %d bytes, bound %d", k, 16*readBufLen)
		}
	}
	if k := p.b.kept.Load(); k > 16*readBufLen || k == 0 {
		t.Fatalf("kept %d bytes, bound %d", k, 16*readBufLen)
	}
}

// BenchmarkQUICLossy moves 16 MB over the lossy path, plain and coded, and
// reports goodput and quic-go's counted losses.
func BenchmarkQUICLossy(b *testing.B) {
	for _, coded := range []bool{false, true} {
		name := "plain"
		if coded {
			name = "coded"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				p := newQUICPair(b, lossyLink, coded)
				start := time.Now()
				sent, got := p.upload(b, 16<<20)
				el := time.Since(start)
				if !bytes.Equal(sent[:], got[:]) {
					b.Fatal("hash mismatch")
				}
				b.ReportMetric(16<<20*8/el.Seconds()/1e6, "Mbit/s")
				b.ReportMetric(float64(p.cli.ConnectionStats().PacketsLost), "quic-lost")
				b.ReportMetric(float64(p.relay.Stats().Up.DroppedLoss), "link-lost")
				p.close()
				p.close = func() {}
			}
		})
	}
}
