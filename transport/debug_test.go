package transport

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func dumpSession(name string, s *Session) string {
	st := s.Stats()
	out := fmt.Sprintf("%s: blocks sent %d recv %d shards sent %d recv %d dup %d drop %d resent %d decoded %d held %d\n", name,
		st.BlocksSent.Load(), st.BlocksReceived.Load(), st.ShardsSent.Load(), st.ShardsReceived.Load(), st.ShardsDuplicate.Load(), st.ShardsDropped.Load(), st.ShardsResent.Load(), st.BlocksDecoded.Load(), s.rxHeld.Load())
	s.mu.Lock()
	for id, f := range s.flows {
		f.mu.Lock()
		out += fmt.Sprintf("  flow %d: txNext %d txOff %d txLimit %d unacked %d fin %v/%v rxNext %d pending %d rxFin %v rxHigh %d rxLimit %d err %v\n", id, f.txNext, f.txOffset, f.txLimit, len(f.txBlocks), f.txFin, f.txFinAcked, f.rxNext, len(f.rxPending), f.rxFin, f.rxHigh, f.rxLimit, f.err)
		for n, rb := range f.rxPending {
			out += fmt.Sprintf("    pending %d: count %d k %d m %d done %v\n", n, rb.count, rb.hdr.K, rb.hdr.M, rb.done)
		}
		f.mu.Unlock()
	}
	s.mu.Unlock()
	for _, p := range s.Paths() {
		out += fmt.Sprintf("  path %s up %v queued %d rate %.0f srtt %v\n", p.info.Name, p.Up(), p.queued.Load(), p.Rate(), p.SRTT())
	}
	return out
}

func TestDebugEcho(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	pds := []PathDialer{dialerTo("a", ts.addr(), ts.pin), dialerTo("b", ts.addr(), ts.pin)}
	c := dialClient(t, Config{M: 2}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(8 * time.Second)
		fmt.Print(dumpSession("client", c.Session))
		ts.mu.Lock()
		for _, s := range ts.sessions {
			fmt.Print(dumpSession("server", s))
		}
		ts.mu.Unlock()
	}()
	f.SetReadDeadline(time.Now().Add(9 * time.Second))
	transfer(t, f, 8<<20, 1)
	f.Close()
}
