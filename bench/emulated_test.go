package bench

import (
	"context"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/transport"
)

func hetero() []PathSpec {
	return []PathSpec{
		{Name: "a", Link: emu.Link{RateBps: 40e6, Delay: 10 * time.Millisecond}},
		{Name: "b", Link: emu.Link{RateBps: 20e6, Delay: 25 * time.Millisecond}},
		{Name: "c", Link: emu.Link{RateBps: 10e6, Delay: 60 * time.Millisecond}},
	}
}

// BenchmarkHetero downloads over three unequal emulated paths (40, 20 and
// 10 Mbit/s; 20, 50 and 120 ms RTT) and reports goodput and efficiency
// against the 70 Mbit/s sum.
//
//	go test -run x -bench Hetero -benchtime 1x ./bench/
func BenchmarkHetero(b *testing.B) {
	for _, fec := range []struct {
		name string
		m    int
	}{{"m0", 0}, {"m2", 2}} {
		b.Run(fec.name, func(b *testing.B) {
			var sum float64
			for range b.N {
				gp, per, _, err := Download(context.Background(), hetero(), transport.Config{M: fec.m}, 2*time.Second, 8*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				sum += gp
				b.Logf("goodput %.1f Mbit/s, path bytes %v", gp/1e6, per)
			}
			b.ReportMetric(sum/float64(b.N)/1e6, "Mbit/s")
			b.ReportMetric(sum/float64(b.N)/70e6, "efficiency")
		})
	}
}

// BenchmarkLossy downloads over three paths with 1% random loss each (30,
// 20 and 10 Mbit/s; 20, 40 and 80 ms RTT), with one and with four QUIC
// connections per path, with packet coding and without, and reports
// efficiency against the 60 Mbit/s sum.
//
//	go test -run x -bench Lossy -benchtime 1x ./bench/
func BenchmarkLossy(b *testing.B) {
	for _, c := range []struct {
		name  string
		conns int
		plain bool
	}{{"conns1", 1, false}, {"conns1-uncoded", 1, true}, {"conns4", 4, false}, {"conns4-uncoded", 4, true}} {
		conns := c.conns
		b.Run(c.name, func(b *testing.B) {
			paths := []PathSpec{
				{Name: "a", Link: emu.Link{RateBps: 30e6, Delay: 10 * time.Millisecond, Loss: 0.01}, Conns: conns},
				{Name: "b", Link: emu.Link{RateBps: 20e6, Delay: 20 * time.Millisecond, Loss: 0.01}, Conns: conns},
				{Name: "c", Link: emu.Link{RateBps: 10e6, Delay: 40 * time.Millisecond, Loss: 0.01}, Conns: conns},
			}
			var sum float64
			for range b.N {
				gp, per, st, err := Download(context.Background(), paths, transport.Config{NoPacketCoding: c.plain}, 2*time.Second, 8*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				sum += gp
				b.Logf("goodput %.1f Mbit/s, path bytes %v", gp/1e6, per)
				for _, p := range st {
					b.Logf("  %s: quic-go loss %.2f%%, link loss %.2f%%, parity %d of %d data packets, cwnd %d", p.Name, p.Loss*100,
						p.LinkLoss*100, p.ParityPackets, p.DataPackets, p.CwndBytes)
				}
			}
			b.ReportMetric(sum/float64(b.N)/1e6, "Mbit/s")
			b.ReportMetric(sum/float64(b.N)/60e6, "efficiency")
		})
	}
}
