package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"braid/transport"
	"braid/transport/pathmon"
	"braid/transport/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update once to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", file, got, want)
	}
}

var since = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// samplePaths is a client's three paths: fiber carries the traffic, lte
// is left idle by the plan, sat is down.
func samplePaths(client bool) []Path {
	stats := []transport.PathStats{
		{Name: "fiber", Medium: wire.MediumEthernet, Operator: wire.OperatorOwn, PriceGB: 0.1, State: pathmon.StateUp,
			Conns: 1, RTT: 21 * time.Millisecond, RTTP99: 30 * time.Millisecond, Jitter: time.Millisecond,
			DeliveryBps: 2e6, PaceBps: 1.9e6, BytesSent: 12e6, BytesReceived: 900e6, SendBps: 1.5e6, ReceiveBps: 36e6,
			ProbeBytesSent: 1000, ProbeBytesReceived: 1000},
		{Name: "lte", Medium: wire.MediumCellular, Operator: wire.OperatorPartner, PriceGB: 3, State: pathmon.StateUp,
			Conns: 1, RTT: 48 * time.Millisecond, RTTP99: 70 * time.Millisecond, Jitter: 3 * time.Millisecond,
			DeliveryBps: 8e3, BytesSent: 1e6, BytesReceived: 2e6,
			ProbeBytesSent: 20e3, ProbeBytesReceived: 18e3, SlowProbing: 1,
			Coded: 1, LinkLoss: 0.012, DataPackets: 1000, ParityPackets: 40, Repaired: 11},
		{Name: "wifi", Medium: wire.MediumWiFi, Operator: wire.OperatorOwn, PriceGB: 0.5, State: pathmon.StateDegraded,
			Conns: 2, RTT: 9 * time.Millisecond, RTTP99: 25 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.07,
			DeliveryBps: 1e6, BytesSent: 1e6, BytesReceived: 2e6, SendBps: 0.5e6, ReceiveBps: 4e6,
			Why: "losing 7.0% of packets"},
		{Name: "sat", Medium: wire.MediumSatellite, Operator: wire.OperatorPartner, PriceGB: 5, State: pathmon.StateDown,
			RTT: 600 * time.Millisecond, RTTP99: 700 * time.Millisecond, Why: "silent for 1.2s"},
	}
	var out []Path
	for _, s := range stats {
		if !client {
			s.BytesSent, s.BytesReceived = s.BytesReceived, s.BytesSent
			s.SendBps, s.ReceiveBps = s.ReceiveBps, s.SendBps
		}
		m := ""
		if client && s.Name == "fiber" {
			m = "203.0.113.5:40000"
		}
		out = append(out, fromStats(s, m, client))
	}
	Shares(out)
	return out
}

func samplePlans() []Plan {
	return []Plan{{Tier: "basic", Class: "default", K: 8, M: 0, Shards: map[string]int{"fiber": 7, "wifi": 1}, ShardBytes: 8192,
		GoodputBps: 36e6, CapacityBps: 36e6, P99Ms: 31, CostUSDPerGB: 0.1, ProfitUSDPerH: 30.78, Binding: "price",
		SLAMet: true, Relaxed: []string{}, Since: since, Changes: 2,
		Text: "k=8 m=0 fiber:7 wifi:1 shard=8192B compress=false: goodput 36.0 Mbit/s (capacity 36.0), p99 31ms, residual loss 0, survives 0, $0.100/GB, profit $30.7800/h, binds: price"}}
}

func sampleSummary(paths []Path, client bool) Summary {
	st := since
	return Summary{Scheduler: "bestvalue", Tier: "basic", Started: &st, UptimeS: 3723.4, Totals: Total(paths, client),
		FlowsByClass: map[string]int{"default": 2, "interactive": 1}}
}

func sampleClient() *Client {
	paths := samplePaths(true)
	plans := samplePlans()
	Explain(paths, plans, "bestvalue")
	return &Client{Session: "up", Sessions: 1, ID: "9f2c4e1a00b1c2d3", Paths: paths, Flows: 3, Plans: plans,
		Summary: sampleSummary(paths, true)}
}

func sampleServer() *Server {
	paths := samplePaths(false)
	plans := samplePlans()
	Explain(paths, plans, "bestvalue")
	return &Server{Sessions: []Session{{ID: "9f2c4e1a00b1c2d3", Paths: paths, Flows: 3, Plans: plans,
		Summary: sampleSummary(paths, false)}}}
}

func TestClientTableGolden(t *testing.T) {
	doc := sampleClient()
	var b bytes.Buffer
	WriteClient(&b, doc)
	out := b.String()
	golden(t, "client.txt.golden", b.Bytes())
	// What the table must tell, whatever its layout.
	for _, want := range []string{
		"session 9f2c4e1a00b1c2d3 up for 1h2m3s", "scheduler bestvalue", "tier basic", "3 flow(s) (default 2, interactive 1)",
		"now: up 2.0 Mbit/s, down 40.0 Mbit/s", "total: up 14 MB, down 904 MB",
		"36.0 Mbit/s 90%", "4.0 Mbit/s 10%", "1.5 Mbit/s 75%", "500 kbit/s 25%", // rates and shares each way
		"the plan leaves it idle (binds: price); probed every second",
		"silent for 1.2s", "losing 7.0% of packets",
		"plan for class default (tier basic)", "binds: price",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if row := rowOf(out, "lte"); !strings.Contains(row, " idle ") {
		t.Errorf("the path the plan leaves idle is not shown idle: %q", row)
	}
	if row := rowOf(out, "sat"); !strings.Contains(row, " down ") {
		t.Errorf("the down path: %q", row)
	}
	if row := rowOf(out, "wifi"); !strings.Contains(row, " degraded ") {
		t.Errorf("the lossy path: %q", row)
	}
}

func TestServerTableGolden(t *testing.T) {
	doc := sampleServer()
	var b bytes.Buffer
	WriteServer(&b, doc)
	out := b.String()
	golden(t, "server.txt.golden", b.Bytes())
	// The concentrator sends what the client receives: the same rates
	// and totals each way.
	for _, want := range []string{"session 9f2c4e1a00b1c2d3 for 1h2m3s", "now: up 2.0 Mbit/s, down 40.0 Mbit/s",
		"total: up 14 MB, down 904 MB", "36.0 Mbit/s 90%"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var e bytes.Buffer
	WriteServer(&e, &Server{Sessions: []Session{}})
	if e.String() != "no sessions\n" {
		t.Errorf("no sessions: %q", e.String())
	}
}

func rowOf(table, name string) string {
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

func TestJSONGolden(t *testing.T) {
	c, _ := json.MarshalIndent(sampleClient(), "", "  ")
	golden(t, "client.json.golden", append(c, '\n'))
	s, _ := json.MarshalIndent(sampleServer(), "", "  ")
	golden(t, "server.json.golden", append(s, '\n'))
	// Fields earlier documents had keep their names: a reader of the old
	// document still finds them.
	for _, key := range []string{`"session"`, `"sessions"`, `"paths"`, `"flows"`, `"plans"`, `"name"`, `"state"`, `"medium"`,
		`"operator"`, `"conns"`, `"rtt_ms"`, `"rtt_p99_ms"`, `"jitter_ms"`, `"loss"`, `"link_loss"`, `"parity"`, `"repaired"`,
		`"parity_held"`, `"delivery_bps"`, `"pace_bps"`, `"mapped_addr"`, `"bytes_sent"`, `"bytes_received"`, `"cost_usd"`} {
		if !bytes.Contains(c, []byte(key+":")) {
			t.Errorf("client document lacks %s", key)
		}
	}
	// A client without a session says only that.
	b, _ := json.Marshal(&Client{Session: "connecting", Paths: []Path{}})
	if string(b) != `{"session":"connecting","sessions":0,"paths":[],"flows":0}` {
		t.Errorf("connecting: %s", b)
	}
}

// Every field of both documents is in docs/STATUS.md.
func TestEveryFieldDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/STATUS.md")
	if err != nil {
		t.Fatal(err)
	}
	// The words of the field tables' first columns.
	documented := map[string]bool{}
	word := regexp.MustCompile(`[a-z_0-9]+`)
	for _, l := range strings.Split(string(doc), "\n") {
		if cells := strings.Split(l, "|"); len(cells) > 2 && strings.HasPrefix(l, "|") {
			for _, w := range word.FindAllString(cells[1], -1) {
				documented[w] = true
			}
		}
	}
	var keys []string
	for _, v := range []any{sampleClient(), sampleServer(),
		&Client{Session: "stopped", SessionError: "token refused"}} {
		b, _ := json.Marshal(v)
		var m any
		json.Unmarshal(b, &m)
		collectKeys(m, &keys)
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if !documented[k] {
			t.Errorf("field %q is not in docs/STATUS.md's tables", k)
		}
	}
}

// collectKeys adds the object keys in v to keys, except the keys of the
// maps whose keys are names (shards, flows_by_class).
func collectKeys(v any, keys *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			*keys = append(*keys, k)
			if k != "shards" && k != "flows_by_class" {
				collectKeys(x, keys)
			}
		}
	case []any:
		for _, x := range v {
			collectKeys(x, keys)
		}
	}
}

func TestExplain(t *testing.T) {
	up := func(name string, cost float64, bps float64) Path {
		return Path{Name: name, State: "up", CostUSD: cost, BytesSent: 1e9, DownloadBps: bps}
	}
	cases := []struct {
		name      string
		scheduler string
		plans     []Plan
		paths     []Path
		idle      string // the path that must be idle, "" for none
		why       string
	}{
		{"plan", "bestvalue", samplePlans(), []Path{up("fiber", 0.1, 1e6), up("lte", 3, 0)}, "lte", "the plan leaves it idle (binds: price)"},
		{"plan, but it carries traffic", "bestvalue", samplePlans(), []Path{up("fiber", 0.1, 1e6), up("lte", 3, 1e3)}, "", ""},
		{"plan uses both", "bestvalue", []Plan{{Shards: map[string]int{"fiber": 4, "lte": 4}, Binding: "goodput"}},
			[]Path{up("fiber", 0.1, 1e6), up("lte", 3, 0)}, "", ""},
		{"a class's plan uses it", "bestvalue", []Plan{{Shards: map[string]int{"fiber": 8}}, {Shards: map[string]int{"lte": 1}}},
			[]Path{up("fiber", 0.1, 1e6), up("lte", 3, 0)}, "", ""},
		{"cheapest", "cheapest", nil, []Path{up("fiber", 0.1, 1e6), up("lte", 3, 0)}, "lte", "cheaper paths carry the traffic"},
		{"cheapest, nothing moves", "cheapest", nil, []Path{up("fiber", 0.1, 0), up("lte", 3, 0)}, "", ""},
		{"single", "single:fiber", nil, []Path{up("fiber", 0.1, 0), up("lte", 3, 0)}, "lte", "only on fiber"},
		{"weighted", "weighted", nil, []Path{up("fiber", 0.1, 1e6), up("lte", 3, 0)}, "", ""},
	}
	for _, c := range cases {
		Explain(c.paths, c.plans, c.scheduler)
		for _, p := range c.paths {
			if p.Idle != (p.Name == c.idle) {
				t.Errorf("%s: %s idle=%v (why %q)", c.name, p.Name, p.Idle, p.Why)
			}
			if p.Name == c.idle && !strings.Contains(p.Why, c.why) {
				t.Errorf("%s: %s why %q, want %q", c.name, p.Name, p.Why, c.why)
			}
		}
	}
	// A degraded or down path keeps its own why, even if the plan
	// leaves it idle.
	paths := []Path{{Name: "lte", State: "degraded", Why: "losing 7.0% of packets"}}
	Explain(paths, samplePlans(), "bestvalue")
	if paths[0].Idle || paths[0].Why != "losing 7.0% of packets" {
		t.Errorf("degraded path: %+v", paths[0])
	}
}

func TestSharesAndTotals(t *testing.T) {
	paths := []Path{{Name: "a", UploadBps: 3e6, DownloadBps: 0, BytesSent: 10, BytesReceived: 100, CostUSD: 1},
		{Name: "b", UploadBps: 1e6, DownloadBps: 0, BytesSent: 5, BytesReceived: 50, ProbeBytesSent: 7, CostUSD: 2}}
	Shares(paths)
	if paths[0].UploadShare != 0.75 || paths[1].UploadShare != 0.25 || paths[0].DownloadShare != 0 {
		t.Fatalf("shares %+v", paths)
	}
	c, s := Total(paths, true), Total(paths, false)
	if c.BytesUp != 15 || c.BytesDown != 150 || c.ProbeBytes != 7 || c.CostUSD != 3 || c.UploadBps != 4e6 {
		t.Fatalf("client totals %+v", c)
	}
	if s.BytesUp != 150 || s.BytesDown != 15 {
		t.Fatalf("concentrator totals %+v: what it receives went up", s)
	}
}
