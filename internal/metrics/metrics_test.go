package metrics

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"braid/internal/status"
)

// synthetic is a concentrator's snapshot of n sessions of paths paths
// each, every path coded and paced, and a plan per session.
func synthetic(n, paths int) Snapshot {
	snap := Snapshot{Server: &ServerCounters{JoinsRefused: map[string]uint64{"auth": 3}, BadJoins: 1, MaxSessions: 1024,
		SessionsOpened: uint64(n) + 2, UDPDrops: map[string]uint64{"stranger": 4}},
		SLAWindows: []SLAWindow{{Tier: "gold", Class: "default", Met: 50, Missed: 2}}}
	names := []string{"fiber", "lte", "wifi", "sat", "p4", "p5", "p6", "p7"}
	for i := range n {
		s := Session{ID: fmt.Sprintf("%016x", i), Tier: "gold", Flows: 3, FlowsByClass: map[string]int{"default": 2, "interactive": 1},
			Started: time.Unix(1700000000, 0), HeldSend: 1 << 20, HeldWindow: 4 << 20, HeldReassembly: 12345,
			Classes: []Class{{Name: "default", Offered: 1e9, Delivered: 3e9, AckP99: 70 * time.Millisecond, AckBlocks: 128},
				{Name: "interactive", Offered: 1e6}}}
		shards := map[string]int{}
		for j := range paths {
			ll, par, rep, pace := 0.01, 0.02, uint64(7), 8e6
			s.Paths = append(s.Paths, status.Path{Name: names[j%len(names)], State: States[j%3], Conns: 1, RTTMs: 20, RTTP99Ms: 30,
				JitterMs: 1, Loss: 0.001, LinkLoss: &ll, Parity: &par, Repaired: &rep, DeliveryBps: 1e7, PaceBps: &pace,
				BytesSent: 1e9, BytesReceived: 2e9, ProbeBytesSent: 1e4, ProbeBytesReceived: 1e4, CostUSD: 0.5, UploadBps: 1e6, DownloadBps: 1e7})
			shards[names[j%len(names)]] = 2
		}
		s.Plans = []status.Plan{{Tier: "gold", Class: "default", K: 6, M: 2, Shards: shards, GoodputBps: 1e7, CapacityBps: 2e7,
			P99Ms: 80, CostUSDPerGB: 0.3, ProfitUSDPerH: 4, Binding: "p99 latency", SLAMet: true, Changes: 2}}
		snap.Sessions = append(snap.Sessions, s)
	}
	return snap
}

func TestCollectorLint(t *testing.T) {
	for _, snap := range []Snapshot{synthetic(3, 4), {Client: &ClientCounters{Up: true, SessionsOpened: 1}}, synthetic(1, 1)} {
		c := NewCollector(SourceFunc(func() Snapshot { return snap }))
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

func TestCollectorValues(t *testing.T) {
	snap := synthetic(2, 4)
	c := NewCollector(SourceFunc(func() Snapshot { return snap }))
	if n := testutil.CollectAndCount(c, "braid_path_rtt_seconds"); n != 8 {
		t.Errorf("%d RTT series for 2 sessions of 4 paths, want 8", n)
	}
	if n := testutil.CollectAndCount(c, "braid_path_state"); n != 8*len(States) {
		t.Errorf("%d state series, want %d", n, 8*len(States))
	}
	want := `
# HELP braid_sessions Live sessions.
# TYPE braid_sessions gauge
braid_sessions 2
# HELP braid_server_joins_refused_total Joins the concentrator refused, by reason.
# TYPE braid_server_joins_refused_total counter
braid_server_joins_refused_total{reason="auth"} 3
braid_server_joins_refused_total{reason="max_sessions"} 0
braid_server_joins_refused_total{reason="shutdown"} 0
braid_server_joins_refused_total{reason="token_sessions"} 0
braid_server_joins_refused_total{reason="unknown_session"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "braid_sessions", "braid_server_joins_refused_total"); err != nil {
		t.Error(err)
	}
	want = `
# HELP braid_held_bytes Bytes all sessions together hold for their peers, by kind: send, window, reassembly (as braid_session_held_bytes).
# TYPE braid_held_bytes gauge
braid_held_bytes{kind="reassembly"} 24690
braid_held_bytes{kind="send"} 2.097152e+06
braid_held_bytes{kind="window"} 8.388608e+06
# HELP braid_server_sessions_opened_total Sessions the concentrator opened since it started.
# TYPE braid_server_sessions_opened_total counter
braid_server_sessions_opened_total 4
# HELP braid_sla_windows_total SLA windows (timed re-plans, one a second) of sessions with a tier, by tier, class and verdict: met when the plan in force met the class's SLA, missed when not.
# TYPE braid_sla_windows_total counter
braid_sla_windows_total{class="default",tier="gold",verdict="met"} 50
braid_sla_windows_total{class="default",tier="gold",verdict="missed"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "braid_held_bytes", "braid_server_sessions_opened_total", "braid_sla_windows_total"); err != nil {
		t.Error(err)
	}
	// Measured against predicted: the p99 only of a class with blocks.
	if n := testutil.CollectAndCount(c, "braid_class_block_ack_p99_seconds"); n != 2 {
		t.Errorf("%d block p99 series for 2 sessions with one timed class each, want 2", n)
	}
	if n := testutil.CollectAndCount(c, "braid_class_sent_bytes_total"); n != 4 {
		t.Errorf("%d class byte series for 2 sessions of 2 classes, want 4", n)
	}
	if n := testutil.CollectAndCount(c, "braid_server_udp_dropped_datagrams_total"); n != len(UDPDropReasons) {
		t.Errorf("%d UDP drop series, want one per reason (%d)", n, len(UDPDropReasons))
	}
	want = `
# HELP braid_plan_binding 1 for the SLA term or limit the plan is closest to breaking, 0 for the others.
# TYPE braid_plan_binding gauge
`
	for _, id := range []string{"0000000000000000", "0000000000000001"} {
		for _, b := range Bindings {
			v := 0
			if b == "p99_latency" {
				v = 1
			}
			want += fmt.Sprintf("braid_plan_binding{binding=%q,class=\"default\",session=%q} %d\n", b, id, v)
		}
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "braid_plan_binding"); err != nil {
		t.Error(err)
	}
}

func TestBinding(t *testing.T) {
	for in, want := range map[string]string{"p99 latency": "p99_latency", "no path up": "no_path_up", "price": "price", "": "other", "new term": "other"} {
		if got := Binding(in); got != want {
			t.Errorf("Binding(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHandlerToken(t *testing.T) {
	h := Handler(SourceFunc(func() Snapshot { return synthetic(1, 2) }), "s3cret")
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(set func(*http.Request)) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
		if set != nil {
			set(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for name, set := range map[string]func(*http.Request){
		"none":   nil,
		"wrong":  func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cre") },
		"longer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret!") },
	} {
		if code, _ := get(set); code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, code)
		}
	}
	code, body := get(func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") })
	if code != http.StatusOK || !strings.Contains(body, "braid_path_rtt_seconds") {
		t.Errorf("bearer: status %d, body %.200q", code, body)
	}
	if code, _ := get(func(r *http.Request) { r.SetBasicAuth("prometheus", "s3cret") }); code != http.StatusOK {
		t.Errorf("basic: status %d", code)
	}
	// The scraped text passes the linter promtool check metrics runs.
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// BenchmarkScrape serves the metrics of 1000 sessions of 4 paths over
// HTTP, as a Prometheus server scrapes them.
func BenchmarkScrape(b *testing.B) {
	snap := synthetic(1000, 4)
	h := Handler(SourceFunc(func() Snapshot { return snap }), "")
	req := httptest.NewRequest("GET", "http://127.0.0.1/metrics", nil)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
		n = w.Body.Len()
	}
	b.ReportMetric(float64(n), "bytes/scrape")
}

// TestTextMatchesCollector: Handler's own text encoder writes what
// client_golang's registry would from the Collector, for awkward label
// values too.
func TestTextMatchesCollector(t *testing.T) {
	snap := synthetic(3, 4)
	snap.Sessions[1].Paths[0].Name = "we\"ird\\na\nme\xff"
	snap.Sessions[2].Paths[1].RTTMs = math.Inf(1)
	src := SourceFunc(func() Snapshot { return snap })
	h := Handler(src, "")
	for _, gz := range []bool{false, true} {
		req := httptest.NewRequest("GET", "http://127.0.0.1/metrics", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		body := io.Reader(w.Body)
		if gz {
			if w.Header().Get("Content-Encoding") != "gzip" {
				t.Fatal("no gzip")
			}
			zr, err := gzip.NewReader(w.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		text, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		if err := testutil.CollectAndCompare(NewCollector(src), bytes.NewReader(text)); err != nil {
			t.Errorf("gzip %v: %v", gz, err)
		}
	}
}

// BenchmarkScrapeGzip is BenchmarkScrape for a scraper that asks for
// gzip, as Prometheus does.
func BenchmarkScrapeGzip(b *testing.B) {
	snap := synthetic(1000, 4)
	h := Handler(SourceFunc(func() Snapshot { return snap }), "")
	req := httptest.NewRequest("GET", "http://127.0.0.1/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	var n int
	c0 := cpuTime()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		n = w.Body.Len()
	}
	b.ReportMetric(float64(n), "bytes/scrape")
	b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/scrape")
}

// cpuTime is the process's CPU time so far, user and system: per scrape
// it says what a scrape costs whatever else the machine runs (wall time
// on a shared machine does not), the garbage collector's work on the
// other core included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestEveryMetricDocumented: docs/OPERATIONS.md's table has a row for
// every metric, with its type and labels.
func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defs {
		typ := "gauge"
		if d.counter {
			typ = "counter"
		}
		row := fmt.Sprintf("| `%s` | %s | %s |", d.name, typ, strings.Join(d.labels, ", "))
		if len(d.labels) == 0 {
			row = fmt.Sprintf("| `%s` | %s |  |", d.name, typ)
		}
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/OPERATIONS.md has no row %q", row)
		}
	}
}

// Without a token the metrics answer only requests to a loopback name
// that no browser marks as another site's: a web page cannot read them
// by rebinding its name to 127.0.0.1.
func TestHandlerNoTokenLocalOnly(t *testing.T) {
	h := Handler(SourceFunc(func() Snapshot { return synthetic(1, 2) }), "")
	for _, c := range []struct {
		host, site string
		want       int
	}{{"127.0.0.1:9100", "", 200}, {"localhost:9100", "", 200}, {"[::1]:9100", "none", 200},
		{"attacker.example:9100", "", 403}, {"10.1.2.3:9100", "", 403}, {"127.0.0.1:9100", "cross-site", 403}} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Host = c.host
		if c.site != "" {
			req.Header.Set("Sec-Fetch-Site", c.site)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.want {
			t.Errorf("Host %q Sec-Fetch-Site %q: %d, want %d", c.host, c.site, w.Code, c.want)
		}
	}
}
