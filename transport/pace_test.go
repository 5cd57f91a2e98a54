package transport

import (
	"context"
	"io"
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
// that, whatever loopback could carry: uploads by the client, downloads by
// the concentrator (which learns the rate from the JOIN). Each direction is
// timed alone, so the other end's pacing cannot stand in for it.
func TestPacedPath(t *testing.T) {
	const n = 1 << 20
	for _, down := range []bool{false, true} {
		name := map[bool]string{false: "up", true: "down"}[down]
		t.Run(name, func(t *testing.T) {
			// The concentrator's side of the flow: it reads the upload, or
			// writes the download, then closes.
			handle := func(f *Flow) {
				if err := f.Accept(); err != nil {
					return
				}
				if down {
					f.Write(make([]byte, n))
					f.CloseWrite()
					io.Copy(io.Discard, f) // until the client's FIN
				} else {
					io.Copy(io.Discard, f) // the whole upload, then FIN
					f.CloseWrite()
				}
				f.Close()
			}
			ts := newTestServer(t, Config{}, handle)
			pd := dialerTo("a", ts.addr(), ts.pin)
			pd.Info.RateMbps = 8 // 1 MB/s nominal
			c := dialClient(t, Config{}, []PathDialer{pd})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var got int64
			if down {
				got, err = io.Copy(io.Discard, f)
				if err == nil {
					err = f.CloseWrite()
				}
			} else {
				var m int
				m, err = f.Write(make([]byte, n))
				got = int64(m)
				if err == nil {
					err = f.CloseWrite()
				}
				if err == nil {
					_, err = io.Copy(io.Discard, f) // until the concentrator has it all
				}
			}
			took := time.Since(start)
			f.Close()
			if err != nil || got != n {
				t.Fatalf("moved %d of %d bytes: %v", got, n, err)
			}
			// n bytes and their shard headers at no more than paceShare of
			// 1 MB/s, less the burst allowance and some slack.
			secs := float64(n) / (1e6 * paceShare)
			least := time.Duration(secs*float64(time.Second)) - 50*time.Millisecond
			if took < least {
				t.Fatalf("1 MiB %s a path paced at %.0f kB/s in %v, want at least %v",
					name, 1e3*paceShare, took, least)
			}
			if r := c.Paths()[0].Rate(); r > 1e6*paceShare {
				t.Fatalf("client's path rate estimate %.0f bytes/s over its pace %.0f", r, 1e6*paceShare)
			}
		})
	}
}

// TestPacerChargesParity: a coded path's shards are charged their parity,
// so shards and parity together keep to the rate.
func TestPacerChargesParity(t *testing.T) {
	p := &pacer{rate: 1e6}
	p.setParity(0.25) // M/K = 8/32
	p.spend(0, 8000)  // 10000 bytes on the wire: paid for at 10 ms
	if d := p.wait(0); d != 6*time.Millisecond {
		t.Fatalf("wait = %v, want 6ms (8000 bytes and 2000 of parity at 1 MB/s, less the 4 ms burst)", d)
	}
	if r := p.shardRate(); r != 0.8e6 {
		t.Fatalf("shard rate %v, want 0.8e6", r)
	}
	p.setParity(7) // a broken figure is clamped
	if r := p.shardRate(); r != 0.5e6 {
		t.Fatalf("shard rate with parity clamped to 1: %v, want 0.5e6", r)
	}
}
