package bench

import (
	"strings"
	"testing"
	"time"

	"braid/bench/emu"
)

// The figures of one direction from a known pattern of arrivals: a lost
// datagram, a late one, and a gap.
func TestUDPMetrics(t *testing.T) {
	w := &Workload{Kind: "udp", RatePerS: 50, DatagramBytes: 160}
	sc := &Scenario{Duration: 200 * time.Millisecond}
	r := newUDPRec(w, sc)
	ms := time.Millisecond
	for seq := range 10 {
		at := time.Duration(seq) * 20 * ms
		r.sentAt[seq] = at
		switch seq {
		case 3: // lost on the way up
		case 6: // late: 45 ms instead of 10
			r.up.arrive(uint32(seq), at, at+45*ms)
			r.down.arrive(uint32(seq), at+45*ms, at+55*ms)
		default:
			r.up.arrive(uint32(seq), at, at+10*ms)
			r.down.arrive(uint32(seq), at+10*ms, at+20*ms)
		}
	}
	r.up.arrive(2, 0, time.Second) // a duplicate: ignored
	res := udpMetrics(r, 0, sc.Duration)
	up, down := res.Up, res.Down
	if up.Sent != 10 || up.Received != 9 || *up.DeliveredFraction != 0.9 {
		t.Errorf("up: %+v", up)
	}
	if down.Sent != 9 || down.Received != 9 || *down.DeliveredFraction != 1 {
		t.Errorf("down counts only echoes of what came up: %+v", down)
	}
	if *up.LatencyP50Ms != 10 || *up.LatencyP99Ms != 45 {
		t.Errorf("up latency p50 %v p99 %v", *up.LatencyP50Ms, *up.LatencyP99Ms)
	}
	// Consecutive received: seven steps of 0 and the two around seq 6,
	// 35 ms each: 70/8.
	if got := *up.JitterMs; got < 8.74 || got > 8.76 {
		t.Errorf("up jitter %v, want 8.75", got)
	}
	// Arrivals at 10, 30, 50, 90 (seq 3 lost), ..., seq 6 at 165 after
	// seq 5 at 110 and before seq 7 at 150: the longest gap is 40 ms.
	if *up.LongestGapMs != 40 {
		t.Errorf("up longest gap %v", *up.LongestGapMs)
	}
	lim := udpLimit(&Scenario{Duration: 20 * time.Second, Warmup: 2 * time.Second,
		Paths: []Path{{Up: linkDelay(10 * ms), Down: linkDelay(12 * ms)}, {Up: linkDelay(20 * ms), Down: linkDelay(5 * ms)}}}, w)
	if *lim.Up.LatencyP99Ms != 10 || *lim.Down.LatencyP99Ms != 5 || lim.Up.Sent != 900 || *lim.Up.LongestGapMs != 20 {
		t.Errorf("limit %+v", lim)
	}
}

func TestUDPWorkloadFile(t *testing.T) {
	base := "name = 'u'\nsystems = ['limit']\n[[paths]]\nname = 'a'\nrate_mbps = 10\nrtt_ms = 20\n[[workloads]]\ntype = 'udp'\n"
	sc, err := Parse("u.toml", []byte(base+"rate_per_s = 50\ndatagram_bytes = 200\n"), LoadOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if w := sc.Workloads[0]; w.Kind != "udp" || w.RatePerS != 50 || w.DatagramBytes != 200 {
		t.Fatalf("%+v", w)
	}
	for _, c := range []struct{ extra, want string }{
		{"", "rate_per_s"},
		{"rate_per_s = 50\ndatagram_bytes = 4\n", "datagram_bytes"},
		{"rate_per_s = 50\ndatagram_bytes = 9000\n", "datagram_bytes"},
		{"rate_per_s = 50\nflows = 2\n", "flows"},
	} {
		if _, err := Parse("u.toml", []byte(base+c.extra), LoadOptions{}, false); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %s", c.extra, err, c.want)
		}
	}
}

func linkDelay(d time.Duration) emu.Link { return emu.Link{RateBps: 10e6, Delay: d} }
