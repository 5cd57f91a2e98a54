package transport

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"braid/scheduler"
)

// BenchmarkIdleSessionCPU measures the CPU a bestvalue session with four
// paths and a two-class tier takes when it carries nothing: the
// re-planning every second (two classes, a sketch and a plan each) and
// the probes every 50 ms on every connection, at both ends, for 10 s of
// wall time per iteration. cpu-%-of-core is process CPU time over wall
// time, client and concentrator together: an upper bound on what the
// planner takes.
func BenchmarkIdleSessionCPU(b *testing.B) {
	ms := time.Millisecond
	terms := Terms{Tier: "bench", RevenueGB: 2, Classes: []ClassTerms{
		{Name: "default", SLA: scheduler.SLA{MinGoodput: 20e6 / 8, P99Latency: 500 * ms, Survive: 1}},
		{Name: "interactive", SLA: scheduler.SLA{MinGoodput: 1e6 / 8, P99Latency: 100 * ms}},
	}}
	ts := newTestServer(b, Config{}, nil)
	var pds []PathDialer
	for i, price := range []float64{0.1, 4, 1, 0.5} {
		pd := dialerTo(fmt.Sprintf("p%d", i), ts.addr(), ts.pin)
		pd.Info.PriceGB = price
		pd.Info.RateMbps = float64(10 * (i + 1))
		pds = append(pds, pd)
	}
	c, err := Dial(b.Context(), Config{Policy: "bestvalue", Terms: terms}, "tok", pds)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	time.Sleep(2 * time.Second) // every path up, first plans made
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	var used, wall time.Duration
	for range b.N {
		c0, w0 := cpu(), time.Now()
		time.Sleep(10 * time.Second)
		used += cpu() - c0
		wall += time.Since(w0)
	}
	b.ReportMetric(100*used.Seconds()/wall.Seconds(), "cpu-%-of-core")
	if ps := c.Plans(); len(ps) != 2 {
		b.Fatalf("%d class plans, want 2", len(ps))
	}
}
