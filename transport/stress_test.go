package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"braid/bench/emu"
)

// TestStressFlowsAndPaths: 200 flows at once, each echoing its own
// bytes, while one path breaks and heals and another is added and
// removed over and over. Every flow gets back exactly what it sent, and
// the race detector sees the split session's locks (the flow table, the
// send space, the paths) taken from every side at once.
func TestStressFlowsAndPaths(t *testing.T) {
	ts := newTestServer(t, Config{}, echo)
	link := emu.Link{RateBps: 200e6, Delay: 2 * time.Millisecond}
	pds, relays := relayPaths(t, ts, link, link, link)
	c := dialClient(t, Config{}, pds[:2])
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Add(2)
	go func() { // path a breaks and heals
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				relays[0].SetBroken(false)
				return
			case <-time.After(300 * time.Millisecond):
			}
			relays[0].SetBroken(i%2 == 0)
		}
	}()
	go func() { // path c comes and goes
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(400 * time.Millisecond):
			}
			if i%2 == 0 {
				if err := c.AddPath(pds[2]); err != nil {
					t.Errorf("add path c: %v", err)
				}
			} else if err := c.RemovePath("c"); err != nil {
				t.Errorf("remove path c: %v", err)
			}
		}
	}()

	const flows = 200
	errs := make(chan error, flows)
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoOnce(ctx, c, 16<<10+i*512, uint64(i))
		}()
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if failed++; failed <= 5 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d flows failed", failed, flows)
	}
	if n := c.NumFlows(); n != 0 {
		t.Fatalf("%d flows left in the client's table after all ended", n)
	}
}

// echoOnce opens a flow, writes n random bytes through the echo server
// and checks that the same bytes come back.
func echoOnce(ctx context.Context, c *Client, n int, seed uint64) error {
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		return fmt.Errorf("flow %d: open: %w", seed, err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, 1))
	want := make([]byte, n)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	werr := make(chan error, 1)
	go func() {
		for b := want; len(b) > 0; {
			k := min(len(b), 1+rng.IntN(8<<10))
			if _, err := f.Write(b[:k]); err != nil {
				werr <- err
				return
			}
			b = b[k:]
		}
		werr <- f.CloseWrite()
	}()
	got, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("flow %d: read after %d bytes: %w", seed, len(got), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("flow %d: write: %w", seed, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("flow %d: %d bytes back, want the %d sent", seed, len(got), n)
	}
	return nil
}
