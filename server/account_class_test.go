package server

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/internal/tier"
	"braid/transport"
	"braid/transport/wire"
)

// revenueOfClass runs a 1 MiB echo over a flow of class and returns what
// the accounting records billed: revenue and wire bytes.
func revenueOfClass(t *testing.T, class int) (rev float64, bytesBilled uint64) {
	sink := &memSink{}
	pol := &tier.Policy{Tiers: map[string]*tier.Tier{"gold": {Name: "gold", RevenueGB: 10, Classes: []tier.Class{{Name: "default"}}}},
		Tokens: map[string]string{"tok": "gold"}}
	srv, pin := startTestServer(t, Config{Policy: pol, AllowPrivate: true, AllowOwn: true,
		Accounting: sink, AccountingID: "c", AccountingInterval: 100 * time.Millisecond})
	dest := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pds := []transport.PathDialer{{Info: wire.PathInfo{Name: "a", PriceGB: 1},
		Dial: func(ctx context.Context) (*quic.Conn, error) {
			return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
		}}}
	cli, err := transport.Dial(ctx, transport.Config{Policy: "roundrobin"}, "tok", pds)
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return len(srv.Sessions()) == 1 }) {
		t.Fatal("no session")
	}
	addr, _ := socks5.AppendAddr(nil, socks5.AddrFromAddrPort(dest))
	f, err := cli.OpenFlowClass(ctx, addr, class)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 1<<20)
	go func() { f.Write(payload); f.CloseWrite() }()
	got, _ := io.ReadAll(f)
	if len(got) != len(payload) {
		t.Fatalf("echo %d", len(got))
	}
	cli.Close()
	eventually(10*time.Second, func() bool { return len(srv.Sessions()) == 0 })
	time.Sleep(200 * time.Millisecond)
	for _, r := range sink.all() {
		rev += r.RevenueUSD
		bytesBilled += r.BytesUp + r.BytesDown
	}
	return
}

// A flow opened with a class the tier does not have is billed as the
// default class, not left out of every reading: it must not ride free.
func TestUnknownClassBilled(t *testing.T) {
	rev0, b0 := revenueOfClass(t, 0)
	rev7, b7 := revenueOfClass(t, 7)
	t.Logf("class 0: revenue %.6f USD for %d wire bytes; class 7: %.6f USD for %d", rev0, b0, rev7, b7)
	if rev0 <= 0 || rev7 < rev0/2 {
		t.Fatalf("class 7 earned %.6f USD where class 0 earned %.6f for the same echo", rev7, rev0)
	}
}
