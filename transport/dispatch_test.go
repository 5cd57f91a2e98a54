package transport

import (
	"braid/transport/wire"
	"testing"
	"time"
)

// TestPickPathAllocs: choosing a path for a shard is on the hot path and
// must not allocate.
func TestPickPathAllocs(t *testing.T) {
	s, err := newSession(Config{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"a", "b", "c"} {
		p, err := s.path(wire.PathInfo{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		p.up.Store(true)
		p.srtt.Store(int64(20 * time.Millisecond))
	}
	if p := s.pickPath(8192, 0, 0, false); p == nil {
		t.Fatal("no path picked")
	}
	if n := testing.AllocsPerRun(1000, func() { s.pickPath(8192, 0, 0, false) }); n != 0 {
		t.Fatalf("pickPath allocates %.1f times per shard", n)
	}
	if n := testing.AllocsPerRun(1000, func() { s.coding(64<<10, 0) }); n != 0 {
		t.Fatalf("coding allocates %.1f times per block", n)
	}
}
