package transport

import "testing"

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	if w.fresh(0) {
		t.Fatal("id 0 is never fresh")
	}
	w.mark(5)
	if !w.fresh(3) || w.fresh(5) || !w.fresh(6) {
		t.Fatal("out-of-order ids below the top must stay fresh until marked")
	}
	w.mark(3)
	if w.fresh(3) {
		t.Fatal("3 was marked")
	}
	w.mark(5 + replayBits)
	if w.fresh(4) {
		t.Fatal("ids far below the window count as seen")
	}
	if !w.fresh(5 + replayBits - 200) {
		t.Fatal("an unmarked id inside the window is fresh")
	}
	w.mark(1 << 30) // a jump clears the window
	if !w.fresh(1<<30-5) || w.fresh(1<<30) {
		t.Fatal("after a jump")
	}
}
