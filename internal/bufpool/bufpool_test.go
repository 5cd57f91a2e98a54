package bufpool

import "testing"

func TestGetSizes(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 8 << 10, 64<<10 + 1, MaxSize} {
		b := Get(n)
		if len(b) != n {
			t.Fatalf("Get(%d): len %d", n, len(b))
		}
		if c := cap(b); c < n || c&(c-1) != 0 {
			t.Fatalf("Get(%d): cap %d is not a power of two >= n", n, c)
		}
		Put(b)
	}
	if b := Get(MaxSize + 1); len(b) != MaxSize+1 {
		t.Fatalf("oversized Get: len %d", len(b))
	}
}

func TestPutIgnoresForeignBuffers(t *testing.T) {
	Put(make([]byte, 1000)) // not a power of two: must be dropped, not panic
	Put(nil)
	b := Get(1000)
	if cap(b) != 1024 {
		t.Fatalf("cap %d, want 1024", cap(b))
	}
}

func TestReuseAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		b := Get(8 << 10)
		Put(b)
	})
	// sync.Pool may drop items across GC; one allocation per run at most.
	if allocs > 1 {
		t.Fatalf("%.1f allocs per Get/Put, want <= 1", allocs)
	}
}
