package transport

import "testing"

// TestFlowLookupAllocs: finding a received shard's flow allocates nothing
// and takes no lock (the hot path of every shard, ack and credit); ids
// above 255 too, which an interface conversion would box.
func TestFlowLookupAllocs(t *testing.T) {
	var ft flowTable
	ft.mu.Lock()
	ft.addLocked(&Flow{id: 1000})
	ft.mu.Unlock()
	id := uint32(1000)
	if n := testing.AllocsPerRun(1000, func() {
		if ft.get(id) == nil {
			t.Fatal("flow 1000 not found")
		}
	}); n != 0 {
		t.Fatalf("a flow lookup allocates %v times", n)
	}
	if ft.get(1001) != nil || ft.count() != 1 {
		t.Fatal("the table holds what it was not given")
	}
}
