package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"braid/bench/emu"
)

func TestEchoTwoPaths(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	pds := []PathDialer{dialerTo("a", ts.addr(), ts.pin), dialerTo("b", ts.addr(), ts.pin)}
	c := dialClient(t, Config{M: 2}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, f, 8<<20, 1)
	f.Close()
}

var _ = emu.Link{}

// TestAddRemovePath adds a path to a running session and removes the
// first one in the middle of a transfer, as hot-plug does.
func TestAddRemovePath(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	c := dialClient(t, Config{M: 1}, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	if err := c.AddPath(dialerTo("b", ts.addr(), ts.pin)); err != nil {
		t.Fatal(err)
	}
	if err := c.AddPath(dialerTo("b", ts.addr(), ts.pin)); err == nil {
		t.Fatal("a second path b was accepted")
	}
	if !eventually(5*time.Second, func() bool { return len(c.Paths()) == 2 && c.Paths()[1].Up() }) {
		t.Fatal("path b never came up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := transferInBackground(t, ctx, c, 16<<20, 3)
	time.Sleep(50 * time.Millisecond)
	if err := c.RemovePath("a"); err != nil {
		t.Fatal(err)
	}
	<-done
	if n := len(c.Paths()); n != 1 || c.Paths()[0].Name() != "b" {
		t.Fatalf("paths after removing a: %d", n)
	}
	if err := c.RemovePath("a"); err == nil {
		t.Fatal("removing a twice succeeded")
	}
}

// A client that closes its session ends it at the concentrator at once,
// not after the grace period.
func TestCloseReachesPeer(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	c := dialClient(t, Config{}, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	var srv *Session
	for deadline := time.Now().Add(5 * time.Second); srv == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, s := range ts.list() {
			srv = s
		}
	}
	if srv == nil {
		t.Fatal("no session at the concentrator")
	}
	c.Close()
	select {
	case <-srv.Done():
		if err := srv.Err(); !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("concentrator's session ended with %v", err)
		}
	case <-time.After(10 * time.Second): // the grace period is 30 s
		t.Fatal("the concentrator's session outlived its client's close")
	}
}
