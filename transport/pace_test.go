package transport

import (
	"braid/transport/pathmon"
	"context"
	"io"
	"testing"
	"time"
)

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
			secs := float64(n) / (1e6 * pathmon.Share)
			least := time.Duration(secs*float64(time.Second)) - 50*time.Millisecond
			if took < least {
				t.Fatalf("1 MiB %s a path paced at %.0f kB/s in %v, want at least %v",
					name, 1e3*pathmon.Share, took, least)
			}
			if r := c.Paths()[0].Rate(); r > 1e6*pathmon.Share {
				t.Fatalf("client's path rate estimate %.0f bytes/s over its pace %.0f", r, 1e6*pathmon.Share)
			}
		})
	}
}
