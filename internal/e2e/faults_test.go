package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/transport"
)

// stallClock is a connection that remembers the longest gap between two
// reads that returned bytes: how long the application saw nothing.
type stallClock struct {
	net.Conn
	last    atomic.Int64 // ns since the epoch of the last read with bytes
	longest atomic.Int64
}

func (c *stallClock) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		now := time.Now().UnixNano()
		if prev := c.last.Swap(now); prev != 0 && now-prev > c.longest.Load() {
			c.longest.Store(now - prev)
		}
	}
	return n, err
}

func (c *stallClock) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// fault is one column of the fault matrix: it plays on a world's relays
// until stop closes.
type fault struct {
	name  string
	links []emu.Link
	play  func(w *world, stop <-chan struct{})
}

// every calls f every d until stop closes.
func every(d time.Duration, stop <-chan struct{}, f func(i int)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
			f(i)
		}
	}
}

func twoLinks() []emu.Link {
	l := emu.Link{RateBps: 20e6, Delay: 10 * time.Millisecond}
	return []emu.Link{l, l}
}

// TestFaultMatrix runs hash-checked echo transfers (both ways at once)
// over two emulated paths while each fault plays, and checks that no byte
// is lost or corrupted while one path lives. It logs each case's time and
// the longest stall an application saw.
func TestFaultMatrix(t *testing.T) {
	lossy := emu.Link{RateBps: 20e6, Delay: 10 * time.Millisecond, Loss: 0.3}
	clean := twoLinks()[0]
	faults := []fault{
		{name: "none", play: func(*world, <-chan struct{}) {}},
		{name: "path death", play: func(w *world, stop <-chan struct{}) {
			time.Sleep(300 * time.Millisecond)
			w.relays[0].SetBroken(true)
		}},
		{name: "1 Hz flapping, one path", play: func(w *world, stop <-chan struct{}) {
			every(500*time.Millisecond, stop, func(i int) { w.relays[0].SetBroken(i%2 == 0) })
			w.relays[0].SetBroken(false)
		}},
		{name: "client side drops 1 s in 2", play: func(w *world, stop <-chan struct{}) {
			// Only the client's packets are lost: what a dying uplink does.
			every(time.Second, stop, func(i int) {
				up := clean
				if i%2 == 0 {
					up.Loss = 1
				}
				w.relays[0].SetLinks(up, clean)
			})
		}},
		{name: "concentrator side drops 1 s in 2", play: func(w *world, stop <-chan struct{}) {
			every(time.Second, stop, func(i int) {
				down := clean
				if i%2 == 0 {
					down.Loss = 1
				}
				w.relays[0].SetLinks(clean, down)
			})
		}},
		{name: "30% loss bursts", play: func(w *world, stop <-chan struct{}) {
			every(500*time.Millisecond, stop, func(i int) {
				if i%2 == 0 {
					w.relays[0].SetLinks(lossy, lossy)
				} else {
					w.relays[0].SetLinks(clean, clean)
				}
			})
		}},
		{name: "NAT rebinding every 2 s", play: func(w *world, stop <-chan struct{}) {
			every(2*time.Second, stop, func(i int) { w.relays[i%2].Rebind() })
		}},
	}
	for _, fc := range faults {
		t.Run(fc.name, func(t *testing.T) {
			links := fc.links
			if links == nil {
				links = twoLinks()
			}
			w := newWorld(t, options{links: links})
			stop := make(chan struct{})
			var played sync.WaitGroup
			played.Add(1)
			go func() {
				defer played.Done()
				fc.play(w, stop)
			}()
			start := time.Now()
			longest := runTransfers(t, w, 4, 4<<20)
			close(stop)
			played.Wait()
			t.Logf("%s: 4 echo transfers of 4 MiB in %v, longest stall %v", fc.name,
				time.Since(start).Round(time.Millisecond), longest.Round(time.Millisecond))
		})
	}
}

// runTransfers runs n concurrent echo transfers of size bytes and returns
// the longest stall any of them saw.
func runTransfers(t *testing.T, w *world, n, size int) time.Duration {
	t.Helper()
	var wg sync.WaitGroup
	var worst atomic.Int64
	errs := make(chan error, n)
	for i := range n {
		conn, err := w.dialSOCKS(t, w.dest.addr())
		if err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			sc := &stallClock{Conn: conn}
			if err := echoCheckConn(sc, size, uint64(i+11)); err != nil {
				errs <- err
			}
			if l := sc.longest.Load(); l > worst.Load() {
				worst.Store(l)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return time.Duration(worst.Load())
}

// Every path down for 20 s, less than the grace period: the session and
// its flows wait, and every byte arrives once the paths come back.
func TestAllPathsDown20s(t *testing.T) {
	w := newWorld(t, options{links: twoLinks(), transport: transport.Config{Grace: 40 * time.Second}})
	go func() {
		time.Sleep(500 * time.Millisecond)
		w.relays[0].SetBroken(true)
		w.relays[1].SetBroken(true)
		time.Sleep(20 * time.Second)
		w.relays[0].SetBroken(false)
		w.relays[1].SetBroken(false)
	}()
	start := time.Now()
	longest := runTransfers(t, w, 2, 8<<20)
	t.Logf("2 echo transfers of 8 MiB across a 20 s outage of every path: %v, longest stall %v",
		time.Since(start).Round(time.Millisecond), longest.Round(time.Millisecond))
	if longest < 15*time.Second {
		t.Fatalf("longest stall %v: the outage did not happen during the transfers", longest)
	}
}
