package notify

import (
	"sync"
	"testing"
	"time"
)

// TestSignal: Signal never blocks, and signals while one is pending
// coalesce into it.
func TestSignal(t *testing.T) {
	ch := make(chan struct{}, 1)
	for range 3 {
		Signal(ch)
	}
	if len(ch) != 1 {
		t.Fatalf("%d wake-ups pending, want 1", len(ch))
	}
	<-ch
	Signal(ch)
	select {
	case <-ch:
	default:
		t.Fatal("no wake-up after the first was taken")
	}
	Signal(make(chan struct{})) // nobody receiving: dropped, not blocked
}

// TestBroadcast: a Fire wakes every waiter that took the channel before
// it, and none that takes it after.
func TestBroadcast(t *testing.T) {
	var b Broadcast
	b.Fire() // nobody waiting: nothing to do
	const n = 8
	var wg sync.WaitGroup
	taken := make(chan struct{}, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := b.Wait()
			taken <- struct{}{}
			<-ch
		}()
	}
	for range n {
		<-taken
	}
	b.Fire()
	wg.Wait()

	after := b.Wait()
	select {
	case <-after:
		t.Fatal("a channel taken after Fire is already closed")
	case <-time.After(10 * time.Millisecond):
	}
	b.Fire()
	<-after
}

// TestBroadcastIdleFire: firing with nobody waiting allocates nothing.
func TestBroadcastIdleFire(t *testing.T) {
	var b Broadcast
	if a := testing.AllocsPerRun(100, b.Fire); a != 0 {
		t.Fatalf("Fire with no waiter: %v allocations", a)
	}
}
