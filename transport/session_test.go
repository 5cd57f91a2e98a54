package transport

import (
	"context"
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
