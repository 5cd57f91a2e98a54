package e2e

import (
	"io"
	"testing"
	"time"
)

// pathBytes returns what each client path has sent and received.
func pathBytes(w *world) []uint64 {
	var out []uint64
	for _, p := range w.cli.Session().Paths() {
		out = append(out, p.BytesSent.Load()+p.BytesReceived.Load())
	}
	return out
}

// With prices on the paths and no scheduler named, braid fills the
// cheapest path first: traffic it can carry stays off the dear one, which
// takes only what the cheap one cannot.
func TestPricesCountByDefault(t *testing.T) {
	w := newWorld(t, options{links: twoLinks(), prices: []float64{0.1, 3}})
	if got := w.cli.Session(); got == nil {
		t.Fatal("no session")
	}
	conn, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Light: 64 KiB every 100 ms (about 5 Mbit/s each way, of the cheap
	// path's 20) for 3 s.
	before := pathBytes(w)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				errc <- err
				return
			}
		}
	}()
	chunk := make([]byte, 64<<10)
	for range 30 {
		if _, err := conn.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	after := pathBytes(w)
	cheap, dear := after[0]-before[0], after[1]-before[1]
	t.Logf("light load: cheap path %d B, dear path %d B", cheap, dear)
	if dear*10 > cheap {
		t.Fatalf("light load: the dear path carried %d B against the cheap one's %d", dear, cheap)
	}
	conn.Close()
	// Bulk: more than the cheap path carries; the dear one takes the rest.
	before = pathBytes(w)
	bulk, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer bulk.Close()
	if err := echoCheck(bulk, 16<<20, 5); err != nil {
		t.Fatal(err)
	}
	after = pathBytes(w)
	cheap, dear = after[0]-before[0], after[1]-before[1]
	t.Logf("bulk: cheap path %d B, dear path %d B", cheap, dear)
	if dear*5 < cheap {
		t.Fatalf("bulk: the dear path carried only %d B against the cheap one's %d: demand the cheap path cannot carry must overflow", dear, cheap)
	}
}
