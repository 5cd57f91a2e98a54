package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/metrics"
	"braid/internal/pki"
	"braid/server"
	"braid/transport"
	"braid/transport/wire"
)

// BenchmarkScrapeLive is the target measured end to end at the
// concentrator: a scrape of 1000 sessions of 4 paths, each read from a
// live session (status.Describe, Held, Stats: what metricsServerSource does for
// every session) and then encoded and gzipped by the handler. One real
// session of four loopback paths is read 1000 times under 1000 names:
// running 4000 QUIC connections would measure their probing, not the
// scrape.
func BenchmarkScrapeLive(b *testing.B) {
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		b.Fatal(err)
	}
	pin, _ := pki.ParsePin(pinStr)
	srv, err := server.Start(server.Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"t"}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var pds []transport.PathDialer
	for i := range 4 {
		pds = append(pds, transport.PathDialer{Info: wire.PathInfo{Name: fmt.Sprintf("p%d", i), PriceGB: float64(i)},
			Dial: func(ctx context.Context) (*quic.Conn, error) {
				return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
			}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Config{Policy: "bestvalue"}, "t", pds)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var live *transport.Session
	for live == nil || len(live.Paths()) < 4 {
		if ctx.Err() != nil {
			b.Fatal("the session's four paths did not join")
		}
		time.Sleep(50 * time.Millisecond)
		if ss := srv.Sessions(); len(ss) == 1 {
			live = ss[0]
		}
	}
	base := metricsServerSource(srv)
	src := metrics.SourceFunc(func() metrics.Snapshot {
		snap := base.Snapshot()
		now := time.Now()
		snap.Sessions = snap.Sessions[:0]
		var u transport.Usage
		for i := range 1000 {
			s := metricsSession(live, now, &u)
			s.ID = fmt.Sprintf("%016x", i)
			snap.Sessions = append(snap.Sessions, s)
		}
		return snap
	})
	// read: the snapshot alone, what reading live sessions costs before
	// any encoding (BenchmarkScrapeGzip in internal/metrics is the
	// encoding alone); scrape: both, over HTTP as Prometheus asks.
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n := len(src.Snapshot().Sessions); n != 1000 {
				b.Fatal(n)
			}
		}
	})
	b.Run("scrape", func(b *testing.B) {
		h := metrics.Handler(src, "")
		req := httptest.NewRequest("GET", "http://127.0.0.1/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		b.ReportAllocs()
		var n int
		c0 := cpuTime()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatal(w.Code)
			}
			n = w.Body.Len()
		}
		b.ReportMetric(float64(n), "bytes/scrape")
		// The live session's own probing runs meanwhile: a little on top.
		b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/scrape")
	})
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
