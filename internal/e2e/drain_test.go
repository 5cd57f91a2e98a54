package e2e

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"braid/client"
	"braid/internal/netx"
	"braid/transport"
)

// A concentrator that drains (SIGTERM) sends its clients to the next one:
// new flows go to a new session there while a live flow finishes on the
// old one, and the old concentrator stops once it has.
func TestDrainMovesToNextServer(t *testing.T) {
	id := newIdentity(t)
	a := startServerAt(t, "127.0.0.1:0", id, transport.Config{})
	b := startServerAt(t, "127.0.0.1:0", id, transport.Config{})
	dest := newDestination(t, nil)
	cli, err := client.Start(context.Background(), client.Config{
		Server: a.Addr().String(), MoreServers: []string{b.Addr().String()}, Pin: id.pin, Token: "secret-token",
		SOCKS: "127.0.0.1:0", Logger: logger(t),
		Paths: []client.PathConfig{{Name: "p0", Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	w := &world{srv: a, cli: cli, dest: dest}
	live, err := w.dialSOCKS(t, dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if len(a.Sessions()) != 1 || len(b.Sessions()) != 0 {
		t.Fatalf("sessions at a, b: %d, %d; want the first concentrator's", len(a.Sessions()), len(b.Sessions()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(ctx) }()
	start := time.Now()
	for len(b.Sessions()) == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no session at the next concentrator 5 s into the drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("a session at the next concentrator %v into the drain", time.Since(start).Round(time.Millisecond))
	fresh, err := w.dialSOCKS(t, dest.addr())
	if err != nil {
		t.Fatalf("a new flow during the drain: %v", err)
	}
	defer fresh.Close()
	if err := echoCheck(fresh, 1<<20, 21); err != nil {
		t.Fatalf("new flow on the next concentrator: %v", err)
	}
	if err := echoCheck(live, 1<<20, 22); err != nil {
		t.Fatalf("live flow on the draining concentrator: %v", err)
	}
	live.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the draining concentrator outlived its last flow by 15 s")
	}
	if c, err := net.Dial("tcp", cli.SOCKSAddr().String()); err != nil {
		t.Fatalf("SOCKS port after the drain: %v", err)
	} else {
		c.Close()
	}
}
