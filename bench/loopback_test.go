package bench

import (
	"context"
	"sort"
	"testing"
	"time"

	"braid/transport"
)

// TestLoopbackSmoke checks that the measurement itself works: bytes go
// through and are counted. Speed is reported by the benchmark, not
// asserted.
func TestLoopbackSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Braid(ctx, 2, 4<<20, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != 4<<20 || r.Goodput <= 0 {
		t.Fatalf("result %+v", r)
	}
	if _, err := RawQUIC(ctx, 4<<20); err != nil {
		t.Fatal(err)
	}
	// UDP: datagrams cross the whole chain, and the raw baseline runs.
	if r, err := BraidUDP(ctx, 1, 300*time.Millisecond); err != nil || r.Bytes == 0 {
		t.Fatalf("braid udp: %+v %v", r, err)
	}
	if r, err := RawQUICDatagrams(ctx, 300*time.Millisecond); err != nil || r.Bytes == 0 {
		t.Fatalf("raw datagrams: %+v %v", r, err)
	}
}

// BenchmarkLoopback runs braid over 1 and 2 loopback paths, over 1 path
// without packet coding (plain1), one raw quic-go stream and the chain's
// two TCP legs alone (tcplegs), interleaved, and reports each one's median
// goodput and CPU per GB, and braid's ratios to the raw stream and to the
// floor (raw plus tcplegs: what the SOCKS chain costs with nothing of
// braid's in it).
//
//	go test -run x -bench 'Loopback$' -benchtime 5x ./bench/
func BenchmarkLoopback(b *testing.B) {
	const n = 512 << 20
	ctx := context.Background()
	var raw, one, two, plain, legs []Result
	for i := 0; i < b.N; i++ {
		r, err := RawQUIC(ctx, n)
		if err != nil {
			b.Fatal(err)
		}
		raw = append(raw, r)
		r, err = Braid(ctx, 1, n, transport.Config{})
		if err != nil {
			b.Fatal(err)
		}
		one = append(one, r)
		r, err = Braid(ctx, 2, n, transport.Config{})
		if err != nil {
			b.Fatal(err)
		}
		two = append(two, r)
		r, err = Braid(ctx, 1, n, transport.Config{NoPacketCoding: true})
		if err != nil {
			b.Fatal(err)
		}
		plain = append(plain, r)
		r, err = TCPLegs(ctx, n)
		if err != nil {
			b.Fatal(err)
		}
		legs = append(legs, r)
	}
	b.ReportMetric(medianOf(raw, gp)/1e6, "raw-Mbit/s")
	b.ReportMetric(medianOf(one, gp)/1e6, "braid1-Mbit/s")
	b.ReportMetric(medianOf(two, gp)/1e6, "braid2-Mbit/s")
	b.ReportMetric(medianOf(plain, gp)/1e6, "plain1-Mbit/s")
	b.ReportMetric(medianOf(legs, gp)/1e6, "tcplegs-Mbit/s")
	b.ReportMetric(medianOf(raw, cpu), "raw-CPU-s/GB")
	b.ReportMetric(medianOf(legs, cpu), "tcplegs-CPU-s/GB")
	b.ReportMetric(medianOf(one, cpu), "braid1-CPU-s/GB")
	b.ReportMetric(medianOf(two, cpu), "braid2-CPU-s/GB")
	b.ReportMetric(medianOf(plain, cpu), "plain1-CPU-s/GB")
	b.ReportMetric(medianOf(one, gp)/medianOf(plain, gp), "braid1/plain1-goodput")
	b.ReportMetric(medianOf(one, cpu)/medianOf(plain, cpu), "braid1/plain1-CPU")
	b.ReportMetric(medianOf(one, gp)/medianOf(raw, gp), "braid1/raw-goodput")
	b.ReportMetric(medianOf(two, gp)/medianOf(raw, gp), "braid2/raw-goodput")
	b.ReportMetric(medianOf(one, cpu)/medianOf(raw, cpu), "braid1/raw-CPU")
	b.ReportMetric(medianOf(two, cpu)/medianOf(raw, cpu), "braid2/raw-CPU")
	// The chain's floor: a raw stream plus the two TCP legs at its ends.
	floor := medianOf(raw, cpu) + medianOf(legs, cpu)
	b.ReportMetric(medianOf(one, cpu)/floor, "braid1/floor-CPU")
	b.ReportMetric(medianOf(two, cpu)/floor, "braid2/floor-CPU")
	for i := range raw {
		b.Logf("run %d: %v | %v | %v | %v | %v", i, raw[i], one[i], two[i], plain[i], legs[i])
	}
}

// BenchmarkLoopbackUDP: braid's UDP chain against raw quic-go datagrams,
// interleaved, medians of b.N runs of 3 s each: go test -run x -bench
// LoopbackUDP -benchtime 3x ./bench/
func BenchmarkLoopbackUDP(b *testing.B) {
	ctx := context.Background()
	var raw, one []Result
	for i := 0; i < b.N; i++ {
		r, err := RawQUICDatagrams(ctx, 3*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		raw = append(raw, r)
		r, err = BraidUDP(ctx, 1, 3*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		one = append(one, r)
	}
	b.ReportMetric(medianOf(raw, gp)/1e6, "raw-Mbit/s")
	b.ReportMetric(medianOf(one, gp)/1e6, "braid1-Mbit/s")
	b.ReportMetric(medianOf(raw, cpu), "raw-CPU-s/GB")
	b.ReportMetric(medianOf(one, cpu), "braid1-CPU-s/GB")
	b.ReportMetric(medianOf(one, gp)/medianOf(raw, gp), "braid1/raw-goodput")
	for i := range raw {
		b.Logf("run %d: %v | %v", i, raw[i], one[i])
	}
}

// medianOf is the median of f over rs.
func medianOf(rs []Result, f func(Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func gp(r Result) float64  { return r.Goodput }
func cpu(r Result) float64 { return r.CPUPerGB }
