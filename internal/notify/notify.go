// Package notify wakes goroutines that wait on channels: Signal wakes the
// one waiter of a channel of capacity one, Broadcast wakes every waiter at
// once.
package notify

import (
	"sync"
	"sync/atomic"
)

// Signal wakes ch's receiver unless a wake-up is pending already: a send
// that never blocks. ch has capacity one, so wake-ups that come while one
// is pending coalesce into it, and the receiver, once woken, looks at
// everything that changed.
func Signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Broadcast wakes every waiter at once: a waiter takes the current
// channel (Wait) and the next Fire closes it. To miss no Fire, a waiter
// takes the channel before it checks whether it must wait, or under the
// same lock as the Fire that follows the change it waits for. Firing with
// nobody waiting costs an atomic load. The zero value is ready; it is safe
// for concurrent use.
type Broadcast struct {
	armed atomic.Bool // someone holds ch
	mu    sync.Mutex
	ch    chan struct{}
}

// Wait returns a channel closed by the next Fire.
func (b *Broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	b.armed.Store(true)
	return b.ch
}

// Fire wakes everyone waiting.
func (b *Broadcast) Fire() {
	if !b.armed.Load() {
		return
	}
	b.mu.Lock()
	if b.armed.Swap(false) {
		close(b.ch)
		b.ch = nil
	}
	b.mu.Unlock()
}
