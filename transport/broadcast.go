package transport

import (
	"sync"
	"sync/atomic"
)

// broadcast wakes every waiter at once: a waiter takes the current channel
// (wait) after finding it must wait, and the next fire closes it. Firing
// with nobody waiting costs an atomic load. The zero value is ready; it is
// safe for concurrent use.
type broadcast struct {
	armed atomic.Bool // someone holds ch
	mu    sync.Mutex
	ch    chan struct{}
}

// wait returns a channel closed by the next fire.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	b.armed.Store(true)
	return b.ch
}

// fire wakes everyone waiting.
func (b *broadcast) fire() {
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
