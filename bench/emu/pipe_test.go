package emu

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// sinkRec records what a Pipe delivers, and when.
type sinkRec struct {
	mu   sync.Mutex
	pkts [][]byte
	at   []time.Time
	fail bool
}

func (s *sinkRec) deliver(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("sink refused")
	}
	s.pkts = append(s.pkts, bytes.Clone(b))
	s.at = append(s.at, time.Now())
	return nil
}

func (s *sinkRec) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pkts)
}

func waitCount(t *testing.T, s *sinkRec, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d packets", s.count(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPipeDelayOverheadAndOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	var s sinkRec
	p := NewPipe(Link{Delay: 30 * time.Millisecond}, 1, 28, s.deliver)
	defer p.Close()
	start := time.Now()
	for i := range 10 {
		b := bytes.Repeat([]byte{byte(i)}, 100)
		p.Send(b)
		b[0] = 0xff // the Pipe keeps its own copy
	}
	waitCount(t, &s, 10)
	for i, b := range s.pkts {
		if len(b) != 100 || b[0] != byte(i) {
			t.Fatalf("packet %d: %d bytes starting %d, want 100 bytes of %d", i, len(b), b[0], i)
		}
		if d := s.at[i].Sub(start); d < 30*time.Millisecond {
			t.Fatalf("packet %d delivered after %v, before the 30 ms delay", i, d)
		}
	}
	st := p.Stats()
	if st.PacketsIn != 10 || st.Delivered != 10 || st.BytesIn != 720 || st.DeliveredBytes != 720 {
		t.Fatalf("stats %+v: want 10 packets in and delivered, 720 bytes each way (100-28 per packet)", st)
	}
}

// The rate limit charges each packet without its overhead: 100 packets of
// 1028 bytes at 800 kbit/s take about 1 s (100 KB), not 1.03 s.
func TestPipeRateChargesWithoutOverhead(t *testing.T) {
	defer goleak.VerifyNone(t)
	var s sinkRec
	p := NewPipe(Link{RateBps: 800e3, QueueBytes: 1 << 20}, 1, 28, s.deliver)
	defer p.Close()
	start := time.Now()
	for range 100 {
		p.Send(make([]byte, 1028))
	}
	waitCount(t, &s, 100)
	took := s.at[99].Sub(start)
	if took < 950*time.Millisecond {
		t.Fatalf("100 KB at 800 kbit/s delivered in %v: the rate limit did not hold", took)
	}
	if got := p.Stats().DeliveredBytes; got != 100*1000 {
		t.Fatalf("delivered bytes %d, want 100000", got)
	}
}

func TestPipeLossBrokenAndSinkErrors(t *testing.T) {
	defer goleak.VerifyNone(t)
	var s sinkRec
	p := NewPipe(Link{Loss: 1}, 1, 0, s.deliver)
	for range 50 {
		p.Send([]byte("x"))
	}
	if st := p.Stats(); st.DroppedLoss != 50 {
		t.Fatalf("loss 1: %+v, want 50 dropped by loss", st)
	}
	p.SetLink(Link{})
	p.SetBroken(true)
	p.Send([]byte("y"))
	if st := p.Stats(); st.DroppedBroken != 1 {
		t.Fatalf("broken: %+v, want 1 dropped while broken", st)
	}
	p.SetBroken(false)
	s.mu.Lock()
	s.fail = true
	s.mu.Unlock()
	p.Send([]byte("z"))
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().DroppedOther != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("a refused delivery was not counted: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if st := p.Stats(); st.Delivered != 0 {
		t.Fatalf("a refused delivery counted as delivered: %+v", st)
	}
	// Empty and oversized packets are dropped, not queued; Send after
	// Close is dropped too, and Close is idempotent.
	p.Send(nil)
	p.Send(make([]byte, maxDatagram+1))
	p.Close()
	p.Close()
	p.Send([]byte("late"))
	if st := p.Stats(); st.DroppedOther != 4 {
		t.Fatalf("after close: %+v, want 4 dropped other", st)
	}
	if s.count() != 0 {
		t.Fatalf("%d packets reached the sink", s.count())
	}
}
