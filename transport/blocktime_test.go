package transport

import (
	"context"
	"testing"
	"time"
)

func TestBlockTimesP99(t *testing.T) {
	var s Session
	if d, n := s.BlockAckP99(0); d != 0 || n != 0 {
		t.Errorf("before any block: %v over %d", d, n)
	}
	for i := 1; i <= 100; i++ {
		s.blockTimes.observe(1, time.Duration(i)*time.Millisecond)
	}
	if d, n := s.BlockAckP99(1); d != 99*time.Millisecond || n != 100 {
		t.Errorf("1..100 ms: p99 %v over %d, want 99ms over 100", d, n)
	}
	// The window keeps the last 128: 300 blocks of 1 ms push the slow ones out.
	for range 300 {
		s.blockTimes.observe(1, time.Millisecond)
	}
	if d, n := s.BlockAckP99(1); d != time.Millisecond || n != blockTimeWindow {
		t.Errorf("after 300 of 1 ms: p99 %v over %d", d, n)
	}
	if d, n := s.BlockAckP99(0); d != 0 || n != 0 {
		t.Errorf("another class: %v over %d", d, n)
	}
	s.blockTimes.observe(99, time.Second) // out of range: ignored
	if _, n := s.BlockAckP99(99); n != 0 {
		t.Error("a class out of range counted")
	}
}

// A live flow's blocks are timed from first send to acknowledgement.
func TestBlockTimesLive(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	c := dialClient(t, Config{}, []PathDialer{dialerTo("a", ts.addr(), ts.pin)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, f, 1<<20, 2)
	d, n := c.BlockAckP99(0)
	if n == 0 || d <= 0 || d > 10*time.Second {
		t.Errorf("after 1 MiB: p99 %v over %d blocks", d, n)
	}
}
