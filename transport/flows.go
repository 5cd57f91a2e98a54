package transport

import (
	"sync"
	"sync/atomic"
)

// flowTable is a session's flows by id. A lookup (every received shard,
// every ack and credit) takes no lock: the flows live in a sync.Map, which
// is built for keys written once and read many times. A flow is added or
// removed under mu, which also orders additions with the session's end
// (close) and guards the ids: the last this side opened and those the
// peer opened.
type flowTable struct {
	m  sync.Map // uint32 -> *Flow
	n  atomic.Int64
	mu sync.Mutex
	// closed is set once the session ends: no flow is added after.
	closed bool
	last   uint32       // the last id this side opened (client)
	opened replayWindow // ids the peer has opened (concentrator)
}

// get returns flow id, or nil.
func (t *flowTable) get(id uint32) *Flow {
	if v, ok := t.m.Load(id); ok {
		return v.(*Flow)
	}
	return nil
}

// count is the number of flows.
func (t *flowTable) count() int { return int(t.n.Load()) }

// all returns the flows.
func (t *flowTable) all() []*Flow {
	out := make([]*Flow, 0, t.count())
	t.m.Range(func(_, v any) bool {
		out = append(out, v.(*Flow))
		return true
	})
	return out
}

// addLocked files f; the caller holds mu and checked closed and the limit.
func (t *flowTable) addLocked(f *Flow) {
	t.m.Store(f.id, f)
	t.n.Add(1)
}

// remove forgets f (not another flow that took its id).
func (t *flowTable) remove(f *Flow) {
	t.mu.Lock()
	if t.m.CompareAndDelete(f.id, f) {
		t.n.Add(-1)
	}
	t.mu.Unlock()
}

// close marks the table closed and returns its flows: a flow added
// before is among them, none is added after.
func (t *flowTable) close() []*Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return t.all()
}

// replayWindow remembers which flow ids the peer has opened, so a late
// duplicate of an open cannot reopen a flow that has ended. Ids are opened
// in increasing order but may arrive out of order across paths; an id more
// than the window below the highest seen counts as seen.
type replayWindow struct {
	top  uint32 // highest id marked
	bits [replayWords]uint64
}

const (
	replayWords = 64
	replayBits  = replayWords * 64
)

func (w *replayWindow) fresh(id uint32) bool { return id != 0 && !w.seen(id) }

func (w *replayWindow) seen(id uint32) bool {
	switch {
	case id == 0:
		return true
	case id > w.top:
		return false
	case w.top-id >= replayBits-64:
		// The oldest word is shared with the newest: count it as seen.
		return true
	}
	return w.bits[(id/64)%replayWords]&(1<<(id%64)) != 0
}

func (w *replayWindow) mark(id uint32) {
	if id > w.top {
		if id-w.top >= replayBits {
			w.bits = [replayWords]uint64{}
		} else {
			// Clear each word as the window slides onto it.
			for t := w.top + 1; t <= id; t++ {
				if t%64 == 0 {
					w.bits[(t/64)%replayWords] = 0
				}
			}
		}
		w.top = id
	}
	w.bits[(id/64)%replayWords] |= 1 << (id % 64)
}
