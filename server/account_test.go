package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/internal/usage"
	"braid/transport"
	"braid/transport/wire"
)

// memSink keeps records, for tests.
type memSink struct {
	mu   sync.Mutex
	recs []usage.Record
}

func (m *memSink) Add(r usage.Record) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
	return true
}

func (m *memSink) all() []usage.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]usage.Record(nil), m.recs...)
}

// echoServer echoes every connection on loopback.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestAccountingSession: a session over two priced paths echoes 2 MB; the
// collector's records, read several times while it runs and once as it
// ends, add up to exactly the session's wire bytes on each path, each at
// its path's price, under a tenant id that is not the token.
func TestAccountingSession(t *testing.T) {
	sink := &memSink{}
	srv, pin := startTestServer(t, Config{Tokens: []string{"secret-token"}, AllowPrivate: true, AllowOwn: true,
		Accounting: sink, AccountingID: "conc-1", AccountingInterval: 100 * time.Millisecond})
	dest := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prices := map[string]float64{"a": 1, "b": 3}
	var pds []transport.PathDialer
	for _, name := range []string{"a", "b"} {
		pds = append(pds, transport.PathDialer{Info: wire.PathInfo{Name: name, PriceGB: prices[name]},
			Dial: func(ctx context.Context) (*quic.Conn, error) {
				return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
			}})
	}
	cli, err := transport.Dial(ctx, transport.Config{Policy: "roundrobin"}, "secret-token", pds)
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return len(srv.Sessions()) == 1 && len(srv.Sessions()[0].Paths()) == 2 }) {
		t.Fatal("no session with two paths")
	}
	sess := srv.Sessions()[0]
	addr, _ := socks5.AppendAddr(nil, socks5.AddrFromAddrPort(dest))
	f, err := cli.OpenFlow(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("braid accounting "), 2<<20/17)
	go func() {
		f.Write(payload)
		f.CloseWrite()
	}()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	time.Sleep(300 * time.Millisecond) // a few readings in between
	cli.Close()
	if !eventually(10*time.Second, func() bool { return len(srv.Sessions()) == 0 }) {
		t.Fatal("session still open")
	}
	// The collector's last reading of the session is taken after it
	// closed; its counters do not move any more.
	var u transport.Usage
	sess.Usage(&u)
	recs := sink.all()
	if len(recs) < 3 {
		t.Fatalf("%d records, want several readings", len(recs))
	}
	up, down := map[string]uint64{}, map[string]uint64{}
	var revenue float64
	for _, r := range recs {
		if r.Tenant != usage.TenantID("secret-token") || strings.Contains(r.Tenant, "secret") {
			t.Errorf("tenant %q", r.Tenant)
		}
		if r.Concentrator != "conc-1" || r.Tier != usage.NoTier || r.Class != "default" {
			t.Errorf("record %+v", r)
		}
		if want := float64(r.BytesUp+r.BytesDown) * prices[r.Path] / 1e9; r.CostUSD != want || r.ProfitUSD != r.RevenueUSD-r.CostUSD {
			t.Errorf("record %+v: cost, want %g", r, want)
		}
		if !r.End.After(r.Start) {
			t.Errorf("record %+v: empty interval", r)
		}
		up[r.Path] += r.BytesUp
		down[r.Path] += r.BytesDown
		revenue += r.RevenueUSD
	}
	for _, p := range u.Paths {
		if up[p.Name] != p.WireReceived || down[p.Name] != p.WireSent {
			t.Errorf("path %s: records %d up %d down, the session's counters %d and %d",
				p.Name, up[p.Name], down[p.Name], p.WireReceived, p.WireSent)
		}
	}
	var allUp, allDown uint64
	for name := range prices {
		allUp, allDown = allUp+up[name], allDown+down[name]
	}
	if allUp < uint64(len(payload)) || allDown < uint64(len(payload)) || up["b"] < uint64(len(payload))/4 {
		t.Errorf("billed %v up, %v down for a %d-byte echo (round robin up)", up, down, len(payload))
	}
	if revenue != 0 {
		t.Errorf("revenue %g without a tier", revenue)
	}
	// Both ends count the same packets on loopback, within what was in
	// flight at the ends.
	var cu transport.Usage
	cli.Usage(&cu)
	for _, p := range cu.Paths {
		if d := float64(p.WireSent) - float64(up[p.Name]); d > 0.02*float64(p.WireSent) || -d > 0.02*float64(p.WireSent) {
			t.Errorf("path %s: the client sent %d, the concentrator billed %d up", p.Name, p.WireSent, up[p.Name])
		}
	}
}
