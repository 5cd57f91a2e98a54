package server

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"braid/transport"
	"braid/transport/wire"
)

// Drain refuses new sessions, tells every client GOAWAY (new flows fail
// with ErrGoingAway, for a new session to take), lets a live flow finish
// and then closes the concentrator.
func TestDrain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo destination that half-closes after EOF
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	srv, pin := startTestServer(t, Config{Tokens: []string{"t"}, AllowPrivate: true, AllowOwn: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, ln.Addr().String())
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := joinSession(ctx, srv.Addr().String(), pin, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dest := []byte{1, 192, 0, 2, 1, 0, 80}
	f, err := c.OpenFlow(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() { drained <- srv.Drain(ctx) }()
	select {
	case <-c.GoingAway():
	case <-time.After(5 * time.Second):
		t.Fatal("no GOAWAY reached the client")
	}
	if _, err := c.OpenFlow(ctx, dest); !errors.Is(err, transport.ErrGoingAway) {
		t.Fatalf("a new flow on a draining session: %v, want ErrGoingAway", err)
	}
	var je *transport.JoinError
	if _, err := joinSession(ctx, srv.Addr().String(), pin, "t"); !errors.As(err, &je) || je.Code != wire.JoinErrShutdown {
		t.Fatalf("a new session while draining: %v, want a shutdown refusal", err)
	}
	// The live flow goes on.
	msg := []byte("still here")
	if _, err := f.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(f, got); err != nil || string(got) != string(msg) {
		t.Fatalf("live flow during drain: %q, %v", got, err)
	}
	select {
	case err := <-drained:
		t.Fatalf("drain ended (%v) while a flow was live", err)
	default:
	}
	f.CloseWrite()
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, f); err != nil {
		t.Fatalf("live flow's end: %v", err)
	}
	f.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not end once the last flow had")
	}
}
