package transport

import (
	"context"
	"testing"
	"time"

	"braid/bench/emu"
)

// upAgainAfter breaks path 0's link for outage while a transfer runs over
// both paths, and returns how long after the link came back path 0 was up.
func upAgainAfter(t *testing.T, cfg Config, outage time.Duration) time.Duration {
	ts := newTestServer(t, Config{}, nil)
	link := emu.Link{RateBps: 20e6, Delay: 10 * time.Millisecond}
	pds, relays := relayPaths(t, ts, link, link)
	c := dialClient(t, cfg, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := transferInBackground(t, ctx, c, 12<<20, 7)
	time.Sleep(500 * time.Millisecond)
	relays[0].SetBroken(true)
	time.Sleep(outage)
	relays[0].SetBroken(false)
	back := time.Now()
	p := c.Paths()[0]
	for !p.Up() && time.Since(back) < 20*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	up := time.Since(back)
	<-done
	return up
}

// A link outage on a path costs that path about its length plus the
// hold-down: the client closes a connection that stays silent past
// RedialAfter and dials a fresh one, instead of waiting on quic-go's
// backed-off retransmissions or its idle timeout.
func TestOutageRedials(t *testing.T) {
	for _, outage := range []time.Duration{time.Second, 3 * time.Second} {
		up := upAgainAfter(t, Config{}, outage)
		t.Logf("outage %v: path up %v after the link came back", outage, up.Round(time.Millisecond))
		// quic-go alone, waiting out its backed-off retransmissions,
		// takes longer than the outage itself.
		if up > 2500*time.Millisecond {
			t.Errorf("outage %v: path up only %v after the link came back", outage, up)
		}
	}
}

// Every path dies for longer than RedialAfter in the middle of an echoed
// transfer, twice: the connections are closed and dialed afresh, and
// the flow resumes. The acknowledgements and credit sent on the dead
// connections are lost with them: the fresh connections must carry them
// again, or a sender waiting for credit waits for ever.
func TestAllPathsOutageResumes(t *testing.T) {
	ts := newTestServer(t, Config{}, nil)
	link := emu.Link{RateBps: 20e6, Delay: 10 * time.Millisecond}
	pds, relays := relayPaths(t, ts, link, link)
	c := dialClient(t, Config{Grace: 30 * time.Second}, pds)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := transferInBackground(t, ctx, c, 24<<20, 9)
	for round := range 2 {
		time.Sleep(700 * time.Millisecond)
		for _, r := range relays {
			r.SetBroken(true)
		}
		time.Sleep(2500 * time.Millisecond)
		for _, r := range relays {
			r.SetBroken(false)
		}
		select {
		case <-done:
			t.Fatalf("the transfer ended by round %d: too short to cross both outages", round)
		default:
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		st := c.Stats()
		t.Errorf("the transfer did not resume within 30 s of the last outage (shards re-sent %d, overdue %d)",
			st.ShardsResent.Load(), st.ShardsOverdue.Load())
		c.Close()
		<-done
	}
}
