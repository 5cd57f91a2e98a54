package pktfec

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"braid/internal/pki"

	"github.com/quic-go/quic-go"
)

// The queue's writes keep every packet whole and in order, whatever runs
// of sizes and peers it is cut into: equal sizes to one peer go out as
// one segmented write, a shorter packet ends a run, another peer starts
// one. Read back through a plain socket and through a Conn's GRO reads.
func TestOutQueueRuns(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			src := listen(t)
			a, b := listen(t), listen(t)
			q := newOutQueue(src)
			defer q.close()
			sizes := []int{1200, 1200, 1200, 700, 1200, 1200, 9, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 1462, 100}
			type sent struct {
				to *net.UDPConn
				b  []byte
			}
			var want []sent
			for i, n := range sizes {
				to := a
				if i%17 == 16 {
					to = b
				}
				p := bytes.Repeat([]byte{byte(i)}, n)
				p[0] = byte(n)
				hdr := []byte{0xa0, byte(i)}
				if err := q.put(nil, to.LocalAddr().(*net.UDPAddr).AddrPort(), hdr, p[2:]); err != nil {
					t.Fatal(err)
				}
				want = append(want, sent{to, append(hdr, p[2:]...)})
			}
			readers := map[*net.UDPConn]*inBatch{a: {udp: a}, b: {udp: b}}
			if gro {
				readers[a], readers[b] = newInBatch(a), newInBatch(b)
				if runtime.GOOS == "linux" && !readers[a].gro {
					t.Log("UDP_GRO unavailable here: plain reads")
				}
			}
			for _, r := range []*net.UDPConn{a, b} {
				r.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 2048)
				for i, w := range want {
					if w.to != r {
						continue
					}
					n, _, err := readers[r].next(buf)
					if err != nil {
						t.Fatalf("packet %d: %v", i, err)
					}
					if !bytes.Equal(buf[:n], w.b) {
						t.Fatalf("packet %d: got %d bytes starting % x, want %d starting % x", i, n, buf[:min(n, 4)], len(w.b), w.b[:4])
					}
				}
			}
			if gsoSupported(src) && q.segments.Load() <= q.writes.Load() {
				t.Errorf("%d packets in %d writes: nothing went out segmented", q.segments.Load(), q.writes.Load())
			}
		})
	}
}

// A QUIC transfer between two coding Conns on loopback, with nothing in
// between: both ends batch (segmented writes, GRO reads where the kernel
// has them), and the bytes arrive intact.
func TestQUICBatched(t *testing.T) {
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := pki.ParsePin(pinStr)
	sc, cc := New(listen(t), Config{}), New(listen(t), Config{})
	defer sc.Close()
	defer cc.Close()
	str, ctr := &quic.Transport{Conn: sc}, &quic.Transport{Conn: cc}
	defer str.Close()
	defer ctr.Close()
	ln, err := str.Listen(pki.ServerTLS(cert, "t"), &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, _ := ln.Accept(ctx)
		accepted <- c
	}()
	cli, err := ctr.Dial(ctx, sc.LocalAddr(), pki.ClientTLS(pin, "t"), &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("no connection accepted")
	}
	cc.Enable(sc.LocalAddr())
	sc.Enable(srv.RemoteAddr())
	p := &quicPair{cli: cli, srv: srv, cconn: cc, sconn: sc}
	sent, got := p.upload(t, 16<<20)
	if sent != got {
		t.Fatal("upload arrived corrupted")
	}
	st := cc.Stats()
	if st.Packets < 16<<20/1500 {
		t.Fatalf("client coded %d packets for 16 MiB", st.Packets)
	}
	if gsoSupported(cc.UDP()) && st.Packets <= st.Writes {
		t.Errorf("client: %d packets in %d writes, none segmented", st.Packets, st.Writes)
	}
	t.Logf("client: %d packets in %d writes", st.Packets, st.Writes)
}
