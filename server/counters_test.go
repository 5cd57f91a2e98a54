package server

import (
	"context"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/pki"
	"braid/transport"
	"braid/transport/wire"
)

// TestUnreadableJoinCounted: a connection whose first stream carries no
// join counts as unreadable, under no refusal reason, and opens nothing.
func TestUnreadableJoinCounted(t *testing.T) {
	srv, pin := startTestServer(t, Config{Tokens: []string{"a"}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A message header of a type no version has, and a body.
	if _, err := st.Write([]byte{0xff, 0, 4, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return srv.Counters().UnreadableJoins == 1 }) {
		t.Fatalf("unreadable joins %d, want 1", srv.Counters().UnreadableJoins)
	}
	c := srv.Counters()
	for r, n := range c.JoinsRefused {
		if n != 0 {
			t.Errorf("%d joins refused for %s, want none", n, r)
		}
	}
	if c.SessionsOpened != 0 {
		t.Errorf("%d sessions opened, want 0", c.SessionsOpened)
	}
	// A good join after it opens a session and counts it.
	cl, err := joinSession(ctx, srv.Addr().String(), pin, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The concentrator counts the session just after it answers the join.
	eventually(5*time.Second, func() bool { return srv.Counters().SessionsOpened == 1 })
	if c := srv.Counters(); c.SessionsOpened != 1 || c.UnreadableJoins != 1 {
		t.Errorf("after a good join: %d opened, %d unreadable; want 1, 1", c.SessionsOpened, c.UnreadableJoins)
	}
}
