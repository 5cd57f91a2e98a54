package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/accounting"
	"braid/internal/cmdtest"
	"braid/internal/pgtest"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/transport"
	"braid/transport/wire"
)

// TestAccountingDatabaseGone: the concentrator writes to a real
// PostgreSQL that stops while a session runs. Flows go on; the writer
// says so once, counts its failed batches and drops past its queue; when
// the database is back the kept records are written.
func TestAccountingDatabaseGone(t *testing.T) {
	pg := pgtest.Start(t)
	var logs cmdtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w, err := accounting.NewWriter(context.Background(), accounting.Config{DSN: pg.DSN(), Interval: 100 * time.Millisecond,
		QueueLen: 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	srv, pin := startTestServer(t, Config{Tokens: []string{"tok"}, AllowPrivate: true, AllowOwn: true,
		Accounting: w, AccountingID: "c1", AccountingInterval: 50 * time.Millisecond, Logger: log})
	dest := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pd := transport.PathDialer{Info: wire.PathInfo{Name: "a", PriceGB: 1}, Dial: func(ctx context.Context) (*quic.Conn, error) {
		return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
	}}
	cli, err := transport.Dial(ctx, transport.Config{}, "tok", []transport.PathDialer{pd})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	addr, _ := socks5.AppendAddr(nil, socks5.AddrFromAddrPort(dest))
	echo := func() {
		t.Helper()
		f, err := cli.OpenFlow(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		payload := bytes.Repeat([]byte("x"), 1<<20)
		go func() {
			f.Write(payload)
			f.CloseWrite()
		}()
		got, err := io.ReadAll(f)
		if err != nil || len(got) != len(payload) {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
	}
	echo()
	if !eventually(10*time.Second, func() bool { return w.Stats().Written > 0 }) {
		t.Fatalf("nothing written: %+v", w.Stats())
	}
	pg.Stop()
	start := time.Now()
	for range 3 {
		echo() // the data path goes on
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("three 1 MiB echoes with the database gone took %v", time.Since(start))
	if !eventually(10*time.Second, func() bool { st := w.Stats(); return st.FailedBatches >= 3 && st.Dropped > 0 }) {
		t.Errorf("stats %+v: want failed batches and drops counted", w.Stats())
	}
	if n := strings.Count(logs.String(), "accounting database write failed"); n != 1 {
		t.Errorf("%d lines about the failure, want 1:\n%s", n, logs.String())
	}
	written := w.Stats().Written
	pg.Start()
	if !eventually(20*time.Second, func() bool { return w.Stats().Written > written }) {
		t.Errorf("nothing written after the database came back: %+v", w.Stats())
	}
	if !strings.Contains(logs.String(), "accounting database writes again") {
		t.Errorf("no line about the database coming back:\n%s", logs.String())
	}
}
