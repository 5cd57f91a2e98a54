package transport

import (
	"testing"
	"time"
)

func TestBroadcast(t *testing.T) {
	var b broadcast
	b.fire() // nobody waits: nothing to do
	w1, w2 := b.wait(), b.wait()
	if w1 != w2 {
		t.Fatal("two waiters before a fire got different channels")
	}
	select {
	case <-w1:
		t.Fatal("closed before fire")
	default:
	}
	b.fire()
	for _, w := range []<-chan struct{}{w1, w2} {
		select {
		case <-w:
		case <-time.After(time.Second):
			t.Fatal("fire did not wake a waiter")
		}
	}
	if w3 := b.wait(); w3 == w1 {
		t.Fatal("a waiter after the fire got the closed channel")
	}
}
