package transport

import (
	"context"
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	ms := time.Millisecond
	p := &pacer{rate: 1e6} // 1 MB/s: 1000 bytes per ms
	if d := p.wait(0); d != 0 {
		t.Fatalf("fresh pacer waits %v", d)
	}
	p.spend(0, 10000) // paid for at 10 ms; the burst lets the next go at 6 ms
	if d := p.wait(0); d != 6*ms {
		t.Fatalf("wait after 10 ms of bytes = %v, want 6ms", d)
	}
	if d := p.wait(6 * ms); d != 0 {
		t.Fatalf("wait at 6 ms = %v, want 0", d)
	}
	p.spend(6*ms, 1000) // queued behind the first: paid for at 11 ms
	if d := p.wait(6 * ms); d != ms {
		t.Fatalf("wait = %v, want 1ms", d)
	}
	// An idle second earns no more than the burst.
	p.spend(time.Second, 20000)
	if d := p.wait(time.Second); d != 16*ms {
		t.Fatalf("after idle: wait = %v, want 16ms (no credit saved up)", d)
	}
	off := newPacer(0)
	off.spend(0, 1<<30)
	if d := off.wait(0); d != 0 {
		t.Fatalf("a path without a nominal rate is paced: wait %v", d)
	}
	if r := newPacer(8).rate; r != 1e6*paceShare {
		t.Fatalf("8 Mbit/s paces at %v bytes/s, want %v", r, 1e6*paceShare)
	}
}

// TestPacedPath: a path whose SPEC gives its rate is not sent faster than
// that, in either direction (the concentrator learns the rate from the
// JOIN), whatever loopback could carry; and its rate estimate, which
// dispatch reads, says so.
func TestPacedPath(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	pd := dialerTo("a", ts.addr(), ts.pin)
	pd.Info.RateMbps = 8 // 1 MB/s nominal
	c := dialClient(t, Config{}, []PathDialer{pd})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1 << 20
	start := time.Now()
	transfer(t, f, n, 3)
	took := time.Since(start)
	f.Close()
	// Each direction carries n bytes and their shard headers at no more
	// than paceShare of 1 MB/s; the burst allowance is a few ms.
	secs := float64(n) / (1e6 * paceShare)
	least := time.Duration(secs*float64(time.Second)) - 50*time.Millisecond
	if took < least {
		t.Fatalf("1 MiB echoed over a path paced at %.0f kB/s in %v, want at least %v",
			1e3*paceShare, took, least)
	}
	p := c.Paths()[0]
	if r := p.Rate(); r > 1e6*paceShare {
		t.Fatalf("path rate estimate %.0f bytes/s over its pace %.0f", r, 1e6*paceShare)
	}
	if sent := p.BytesSent.Load(); sent < n {
		t.Fatalf("path sent %d bytes, want at least %d", sent, n)
	}
}
