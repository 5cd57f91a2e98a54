package server

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/pki"
	"braid/internal/usage"
	"braid/transport"
	"braid/transport/wire"
)

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestAppendRecords: two classes over two paths. Each path's wire bytes
// are shared among the classes by their shard bytes and add up exactly;
// a class's revenue and SLA seconds are shared among its paths and add
// up to its flow bytes at the tier's rate and to the interval.
func TestAppendRecords(t *testing.T) {
	old := transport.Usage{
		Paths: []transport.PathUsage{{Key: 1, Name: "fiber", PriceGB: 0.1, WireSent: 1000, WireReceived: 500}},
		Classes: []transport.ClassUsage{{Name: "default", Offered: 100, Planned: true, Feasible: true},
			{Name: "interactive", Planned: true, Feasible: true, Violations: 4}},
	}
	cur := transport.Usage{
		Paths: []transport.PathUsage{
			{Key: 1, Name: "fiber", PriceGB: 0.1, WireSent: 1000 + 30001, WireReceived: 500 + 7001},
			// A path new since the last reading: all its bytes are new.
			{Key: 2, Name: "cell", PriceGB: 4, WireSent: 20000, WireReceived: 3000},
		},
		Classes: []transport.ClassUsage{{Name: "default", Offered: 100 + 40000, Delivered: 2000, Planned: true, Feasible: true},
			{Name: "interactive", Offered: 9000, Delivered: 1000, Planned: true, Feasible: true, Violations: 5}},
	}
	cur.Paths[0].ClassSent[0], cur.Paths[0].ClassSent[1] = 20000, 5000
	cur.Paths[0].ClassReceived[0] = 1000
	cur.Paths[1].ClassSent[0], cur.Paths[1].ClassSent[1] = 12000, 4000
	k := recordKey{start: time.Unix(100, 0), end: time.Unix(110, 0), concentrator: "c", tenant: "t-x", tier: "gold"}
	recs := appendRecords(nil, &old, &cur, k, 5)

	up, down := map[string]uint64{}, map[string]uint64{}
	revenue, met, missed := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, r := range recs {
		up[r.Path] += r.BytesUp
		down[r.Path] += r.BytesDown
		revenue[r.Class] += r.RevenueUSD
		met[r.Class] += r.SLAMetS
		missed[r.Class] += r.SLAMissedS
		price := map[string]float64{"fiber": 0.1, "cell": 4}[r.Path]
		if !closeTo(r.CostUSD, float64(r.Bytes())*price/1e9) || !closeTo(r.ProfitUSD, r.RevenueUSD-r.CostUSD) {
			t.Errorf("record %+v: cost or profit", r)
		}
		if r.Start != k.start || r.End != k.end || r.Tier != "gold" || r.Tenant != "t-x" {
			t.Errorf("record %+v", r)
		}
	}
	if up["fiber"] != 7001 || down["fiber"] != 30001 || up["cell"] != 3000 || down["cell"] != 20000 {
		t.Errorf("bytes up %v down %v", up, down)
	}
	if !closeTo(revenue["default"], 42000*5/1e9) || !closeTo(revenue["interactive"], 10000*5/1e9) {
		t.Errorf("revenue %v", revenue)
	}
	// default met its SLA all 10 s; interactive's planner saw a violation.
	if !closeTo(met["default"], 10) || missed["default"] != 0 || !closeTo(missed["interactive"], 10) || met["interactive"] != 0 {
		t.Errorf("SLA met %v missed %v", met, missed)
	}
	// interactive's share of fiber: 5000 of its 9000 shard bytes.
	for _, r := range recs {
		if r.Class == "interactive" && r.Path == "fiber" && !closeTo(r.RevenueUSD, 10000*5/1e9*5000/9000) {
			t.Errorf("interactive on fiber: revenue %g", r.RevenueUSD)
		}
	}

	// Nothing moved: no records.
	if recs := appendRecords(nil, &cur, &cur, k, 5); len(recs) != 0 {
		t.Errorf("%d records of an idle interval: %+v", len(recs), recs)
	}
	// Probes only (wire bytes, no shards) go to the default class.
	idle := cur
	idle.Paths = append([]transport.PathUsage(nil), cur.Paths...)
	idle.Paths[1].WireSent += 77
	recs = appendRecords(nil, &cur, &idle, k, 5)
	if len(recs) != 1 || recs[0].Class != "default" || recs[0].Path != "cell" || recs[0].BytesDown != 77 || recs[0].RevenueUSD != 0 {
		t.Errorf("probe bytes: %+v", recs)
	}
}

// chanSink is a sink like accounting.Writer's queue: a buffered channel
// that drops when full.
type chanSink struct{ q chan usage.Record }

func (c *chanSink) Add(r usage.Record) bool {
	select {
	case c.q <- r:
		return true
	default:
		return false
	}
}

// BenchmarkCollect1000 is one collector reading of 1000 sessions of 4
// paths and 2 classes, all of which moved bytes since the last: the
// records of each (appendRecords) into a writer-like queue. Reading the
// counters themselves is BenchmarkSessionUsage, per session.
func BenchmarkCollect1000(b *testing.B) {
	type pair struct{ old, cur transport.Usage }
	pairs := make([]pair, 1000)
	for i := range pairs {
		p := &pairs[i]
		for j := range 4 {
			pu := transport.PathUsage{Key: uint64(i*4 + j), Name: []string{"fiber", "cell", "sat", "wifi"}[j], PriceGB: float64(j)}
			p.old.Paths = append(p.old.Paths, pu)
			pu.WireSent, pu.WireReceived = 1e6, 1e5
			pu.ClassSent[0], pu.ClassSent[1] = 6e5, 3e5
			p.cur.Paths = append(p.cur.Paths, pu)
		}
		p.old.Classes = []transport.ClassUsage{{Name: "default", Planned: true, Feasible: true}, {Name: "interactive", Planned: true, Feasible: true}}
		p.cur.Classes = []transport.ClassUsage{{Name: "default", Offered: 2e6, Planned: true, Feasible: true},
			{Name: "interactive", Offered: 1e6, Planned: true, Feasible: true}}
	}
	sink := &chanSink{q: make(chan usage.Record, 65536)}
	k := recordKey{start: time.Now(), end: time.Now().Add(10 * time.Second), concentrator: "c", tier: "gold"}
	var rows []usage.Record
	b.ReportAllocs()
	for b.Loop() {
		for i := range pairs {
			k.tenant = usage.TenantID("token")
			rows = appendRecords(rows[:0], &pairs[i].old, &pairs[i].cur, k, 5)
			for j := range rows {
				if !sink.Add(rows[j]) {
					<-sink.q // keep room: the writer would drain it
					sink.Add(rows[j])
				}
			}
		}
		for len(sink.q) > 0 {
			<-sink.q
		}
	}
}

// BenchmarkSessionUsage reads a live session of 4 paths, as the
// collector does each interval.
func BenchmarkSessionUsage(b *testing.B) {
	cert, pinStr, _ := pki.SelfSigned(nil)
	pin, _ := pki.ParsePin(pinStr)
	srv, err := Start(Config{Listen: "127.0.0.1:0", Cert: cert, Tokens: []string{"t"}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var pds []transport.PathDialer
	for _, name := range []string{"a", "b", "c", "d"} {
		pds = append(pds, transport.PathDialer{Info: wire.PathInfo{Name: name}, Dial: func(ctx context.Context) (*quic.Conn, error) {
			return quic.DialAddr(ctx, srv.Addr().String(), pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
		}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := transport.Dial(ctx, transport.Config{}, "t", pds)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	if !eventually(10*time.Second, func() bool { return len(srv.Sessions()) == 1 && len(srv.Sessions()[0].Paths()) == 4 }) {
		b.Fatal("no session of 4 paths")
	}
	sess := srv.Sessions()[0]
	var u transport.Usage
	b.ReportAllocs()
	for b.Loop() {
		sess.Usage(&u)
		_ = sess.Terms()
	}
	if len(u.Paths) != 4 || u.Paths[0].WireSent == 0 {
		b.Fatalf("read %+v: want 4 paths that have sent", u.Paths)
	}
}

// TestMulDiv: shares are exact near the top of uint64, and never more
// than the whole.
func TestMulDiv(t *testing.T) {
	const big = 1<<64 - 1
	cases := []struct{ a, b, c, want uint64 }{
		{10, 3, 4, 7}, {big, 1, 2, big / 2}, {big, 3, 3, big}, {big, 5, 3, big}, {7, 1, 0, 0}, {1 << 40, 1 << 40, 1 << 41, 1 << 39},
	}
	for _, c := range cases {
		if got := mulDiv(c.a, c.b, c.c); got != c.want {
			t.Errorf("mulDiv(%d, %d, %d) = %d, want %d", c.a, c.b, c.c, got, c.want)
		}
	}
}

// TestRevenueWithoutShards: a class whose bytes moved as no shards (UDP
// datagrams) still earns its revenue, shared by the paths' wire bytes.
func TestRevenueWithoutShards(t *testing.T) {
	old := transport.Usage{Paths: []transport.PathUsage{{Key: 1, Name: "a"}, {Key: 2, Name: "b"}},
		Classes: []transport.ClassUsage{{Name: "default"}, {Name: "voice"}}}
	cur := transport.Usage{Paths: []transport.PathUsage{{Key: 1, Name: "a", WireSent: 3000}, {Key: 2, Name: "b", WireSent: 1000}},
		Classes: []transport.ClassUsage{{Name: "default"}, {Name: "voice", Offered: 1e9}}}
	recs := appendRecords(nil, &old, &cur, recordKey{start: time.Unix(0, 0), end: time.Unix(10, 0)}, 2)
	rev := map[string]float64{}
	var bytes uint64
	for _, r := range recs {
		rev[r.Class+"/"+r.Path] += r.RevenueUSD
		bytes += r.Bytes()
	}
	if !closeTo(rev["voice/a"], 1.5) || !closeTo(rev["voice/b"], 0.5) || bytes != 4000 {
		t.Errorf("revenue %v, bytes %d; want voice's $2 shared 3:1 and 4000 bytes", rev, bytes)
	}
}
