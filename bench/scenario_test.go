package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tracesDir is where the repository's traces are, seen from this package.
const tracesDir = "../../shared/traces"

const goodPaths = `
[[paths]]
name = "a"
rate_mbps = 10
rtt_ms = 20

[[paths]]
name = "b"
rate_mbps = 5
delay_ms = 30
`

const goodWorkload = `
[[workloads]]
type = "bulk"
`

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, toml, want string
	}{
		{"rate zero", `
[[paths]]
name = "a"
rate_mbps = 10
[[paths]]
name = "b"
rate_mbps = 0
` + goodWorkload, "paths[1].rate_mbps: must be > 0"},
		{"rate missing", `
[[paths]]
name = "a"
rtt_ms = 10
` + goodWorkload, "paths[0].rate_mbps: is required"},
		{"unknown top-level key", `durration_s = 3` + goodPaths + goodWorkload, "durration_s: unknown key"},
		{"unknown nested key", `
[[paths]]
name = "a"
rate_mbps = 10
[[paths]]
name = "b"
rat_mbps = 10
` + goodWorkload, "paths[1].rat_mbps: unknown key"},
		{"unknown key in a direction", goodPaths + `
[paths.down]
trcae = "x"
` + goodWorkload, "paths[1].down.trcae: unknown key"},
		{"wrong type", `
[[paths]]
name = "a"
rate_mbps = "forty"
` + goodWorkload, `paths[0].rate_mbps: want a number, got a string`},
		{"fractional int", goodPaths + `
[[workloads]]
type = "bulk"
flows = 1.5
`, "workloads[0].flows: want a whole number"},
		{"syntax", "name = \n" + goodPaths, "line 1:"},
		{"rtt and delay", `
[[paths]]
name = "a"
rate_mbps = 1
rtt_ms = 10
delay_ms = 5
` + goodWorkload, "paths[0].delay_ms: give rtt_ms or delay_ms"},
		{"loss", `
[[paths]]
name = "a"
rate_mbps = 1
loss = 1.5
` + goodWorkload, "paths[0].loss: must be in [0, 1)"},
		{"gilbert-elliott", `
[[paths]]
name = "a"
rate_mbps = 1
[paths.gilbert_elliott]
p_good_bad = 2
` + goodWorkload, "paths[0].gilbert_elliott.p_good_bad: must be in [0, 1]"},
		{"gilbert-elliott never ends", `
[[paths]]
name = "a"
rate_mbps = 1
[paths.gilbert_elliott]
p_good_bad = 0.1
loss_bad = 0.5
` + goodWorkload, "paths[0].gilbert_elliott.p_bad_good"},
		{"outage", `
[[paths]]
name = "a"
rate_mbps = 1
outages = [{from_s = 5, to_s = 3}]
` + goodWorkload, "paths[0].outages[0]: want 0 <= from_s < to_s"},
		{"conns", `
[[paths]]
name = "a"
rate_mbps = 1
conns = 17
` + goodWorkload, "paths[0].conns: 17 is outside 1..16"},
		{"operator", `
[[paths]]
name = "a"
rate_mbps = 1
operator = "friend"
` + goodWorkload, `paths[0].operator: "friend" is not own or partner`},
		{"price", `
[[paths]]
name = "a"
rate_mbps = 1
price_usd_per_gb = -1
` + goodWorkload, "paths[0].price_usd_per_gb: must be >= 0"},
		{"path name", `
[[paths]]
name = "a b"
rate_mbps = 1
` + goodWorkload, "paths[0].name:"},
		{"duplicate path", `
[[paths]]
name = "a"
rate_mbps = 1
[[paths]]
name = "a"
rate_mbps = 2
` + goodWorkload, `paths[1].name: "a" is used twice`},
		{"no paths", goodWorkload, "paths: at least one path is required"},
		{"loopback with a rate", `
[[paths]]
name = "lo"
emulate = false
rate_mbps = 1
` + goodWorkload, "paths[0].emulate: a path with emulate = false takes no link settings"},
		{"missing trace", `
[[paths]]
name = "lte"
rtt_ms = 50
[paths.down]
trace = "no-such.down"
` + goodWorkload, `paths[0].down.trace: trace file "no-such.down" not found`},
		{"trace offset without trace", goodPaths + `
[paths.up]
trace_offset_s = 3
` + goodWorkload, "paths[1].up.trace_offset_s: needs a trace"},
		{"duration", "duration_s = 0\n" + goodPaths + goodWorkload, "duration_s: must be > 0"},
		{"warmup", "duration_s = 3\nwarmup_s = 3\n" + goodPaths + goodWorkload, "warmup_s: must be >= 0 and less than duration_s"},
		{"unknown system", `systems = ["weighted", "fastest"]` + goodPaths + goodWorkload, `systems: "fastest" is not a system`},
		{"single on no path", `systems = ["single:c"]` + goodPaths + goodWorkload, `systems: "single:c": no path named "c"`},
		{"system twice", `systems = ["limit", "limit"]` + goodPaths + goodWorkload, `systems: "limit" is listed twice`},
		{"no workloads", goodPaths, "workloads: at least one workload is required"},
		{"workload type", goodPaths + `
[[workloads]]
type = "stream"
`, `workloads[0].type: "stream" is not bulk, rr or udp`},
		{"bulk with an rr key", goodPaths + `
[[workloads]]
type = "bulk"
rate_per_s = 3
`, "workloads[0].rate_per_s: applies to rr workloads only"},
		{"direction", goodPaths + `
[[workloads]]
type = "bulk"
direction = "sideways"
`, `workloads[0].direction: "sideways" is not download or upload`},
		{"rr rate", goodPaths + `
[[workloads]]
type = "rr"
response_bytes = [100]
`, "workloads[0].rate_per_s: is required"},
		{"rr weights", goodPaths + `
[[workloads]]
type = "rr"
rate_per_s = 5
response_bytes = [100, 200]
weights = [1]
`, "workloads[0].weights: has 1 entries for 2 response sizes"},
		{"rr size", goodPaths + `
[[workloads]]
type = "rr"
rate_per_s = 5
response_bytes = [100, 0]
`, "workloads[0].response_bytes[1]: 0 is outside"},
		{"event path", goodPaths + goodWorkload + `
[[events]]
at_s = 1
path = "z"
action = "kill"
`, `events[0].path: "z" is not one of the paths`},
		{"event action", goodPaths + goodWorkload + `
[[events]]
at_s = 1
path = "a"
action = "explode"
`, `events[0].action: "explode" is not kill or restore`},
		{"sla", "[sla]\nmin_goodput_mbps = -1\n" + goodPaths + goodWorkload, "sla.min_goodput_mbps: must be >= 0"},
		{"empty sla", "[sla]\n" + goodPaths + goodWorkload, "sla: set min_goodput_mbps, p99_latency_ms, survive_paths or some of them"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(c.toml), LoadOptions{TracesDir: t.TempDir()}, false)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "scenario x.toml: ") || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q, want %q after \"scenario x.toml: \"", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Fatalf("error %q is more than one line", msg)
			}
		})
	}
}

func TestParseGood(t *testing.T) {
	sc, err := Parse("x.toml", []byte(`
duration_s = 4
systems = ["weighted@a", "single:b", "quic-direct", "limit"]
[sla]
min_goodput_mbps = 2
`+goodPaths+`
[paths.up]
rate_mbps = 2
loss = 0.01
[[workloads]]
type = "bulk"
direction = "upload"
flows = 2
size_mb = 1.5
rate_mbps = 4
[[workloads]]
type = "rr"
rate_per_s = 20
response_bytes = [10, 20]
weights = [3, 1]
[[events]]
at_s = 2
path = "a"
action = "kill"
`), LoadOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Name != "x" || sc.Duration != 4*time.Second || sc.Warmup != 800*time.Millisecond {
		t.Errorf("name %q duration %v warm-up %v", sc.Name, sc.Duration, sc.Warmup)
	}
	a, b := sc.Paths[0], sc.Paths[1]
	if a.Down.RateBps != 10e6 || a.Down.Delay != 10*time.Millisecond || a.Up.Delay != 10*time.Millisecond {
		t.Errorf("path a: %+v", a.Down)
	}
	if b.Down.RateBps != 5e6 || b.Up.RateBps != 2e6 || b.Up.Loss != 0.01 || b.Down.Loss != 0 || b.Down.Delay != 30*time.Millisecond {
		t.Errorf("path b: down %+v up %+v", b.Down, b.Up)
	}
	w := sc.Workloads[0]
	if w.Kind != "bulk" || w.Download || w.Flows != 2 || w.Size != 1500000 || w.RateBps != 4e6 {
		t.Errorf("bulk workload %+v", w)
	}
	if sc.SLA == nil || sc.SLA.MinGoodputBps != 2e6 || sc.SLA.P99Latency != 0 {
		t.Errorf("sla %+v", sc.SLA)
	}
	if len(sc.Events) != 1 || !sc.Events[0].Kill || sc.Events[0].At != 2*time.Second {
		t.Errorf("events %+v", sc.Events)
	}
	// Capacity: the bulk workload uploads, so the up direction counts;
	// path a dies at 2 s.
	if got := sc.capacity(0, 2*time.Second); got < 11.99e6 || got > 12.01e6 {
		t.Errorf("capacity before the kill %v, want 12e6 (10+2)", got)
	}
	if got := sc.capacity(2*time.Second, 4*time.Second); got < 1.99e6 || got > 2.01e6 {
		t.Errorf("capacity after the kill %v, want 2e6", got)
	}
}

// TestBuiltins parses every shipped scenario.
func TestBuiltins(t *testing.T) {
	if _, err := os.Stat(filepath.Join(tracesDir, "TMobile-LTE-short.down")); err != nil {
		t.Skip("no traces beside the repository:", err)
	}
	names := map[string]bool{}
	for _, b := range Builtin() {
		names[b[0]] = true
		sc, err := Load(b[0], LoadOptions{TracesDir: tracesDir})
		if err != nil {
			t.Errorf("%s: %v", b[0], err)
			continue
		}
		if b[1] == "" {
			t.Errorf("%s has no description", b[0])
		}
		if _, err := Load(b[0]+".toml", LoadOptions{TracesDir: tracesDir}); err != nil {
			t.Errorf("%s.toml: %v", b[0], err)
		}
		_ = sc
	}
	for _, want := range []string{"hetero", "failover", "lossy", "cost-sla", "cellular", "loopback"} {
		if !names[want] {
			t.Errorf("scenario %s is not shipped", want)
		}
	}
	// The trace sets the LTE path's capacity: its mean over the whole
	// trace is the README's 16.7 Mbit/s down.
	sc, _ := Load("cellular", LoadOptions{TracesDir: tracesDir})
	lte := sc.Paths[1]
	if m := lte.Down.Trace.MeanRateBps(); m < 16e6 || m > 17.5e6 {
		t.Errorf("LTE trace mean %v", m)
	}
	if m := lte.downCap.mean(0, lte.Down.Trace.Period()); m < 16e6 || m > 17.5e6 {
		t.Errorf("LTE capacity over one period %v", m)
	}
}

func TestLoadMissingTrace(t *testing.T) {
	_, err := Load("cellular", LoadOptions{TracesDir: "/nonexistent/traces"})
	if err == nil || !strings.Contains(err.Error(), `scenario cellular.toml: paths[1].down.trace: trace file "TMobile-LTE-short.down" not found (looked for /nonexistent/traces/TMobile-LTE-short.down`) {
		t.Fatalf("err %v", err)
	}
}

func TestLoadFileResolvesBesideIt(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "t.down"), []byte("1\n2\n3\n10\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "s.csv"), []byte("time_s,rate_mbps\n0,5\n1,10\n"), 0o644)
	f := filepath.Join(dir, "s.toml")
	os.WriteFile(f, []byte(`
[[paths]]
name = "a"
rtt_ms = 10
rate_mbps = 1
schedule = "s.csv"
[paths.down]
trace = "t.down"
`+goodWorkload), 0o644)
	sc, err := Load(f, LoadOptions{TracesDir: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	p := sc.Paths[0]
	if p.Down.Trace == nil || p.Up.Schedule == nil || p.Down.Schedule == nil {
		t.Fatalf("path %+v", p)
	}
	// Up follows the schedule: 5 Mbit/s for a second, then 10.
	if m := p.upCap.mean(0, 2*time.Second); m != 7.5e6 {
		t.Errorf("scheduled capacity %v, want 7.5e6", m)
	}
	// Down follows the trace: 4 packets per 10 ms.
	if m := p.downCap.mean(0, time.Second); m < 4.7e6 || m > 4.9e6 {
		t.Errorf("trace capacity %v, want 4.8e6", m)
	}
}

func TestSystems(t *testing.T) {
	paths := []Path{{Name: "a"}, {Name: "b"}}
	for _, ok := range []string{"weighted", "minrtt", "roundrobin", "duplicate", "single:a", "weighted@a",
		"minrtt@a+b", "single:b@a+b", "quic-direct", "quic-direct@b", "limit", "weighted/uncoded", "single:a@a/uncoded",
		"weighted/unpaced", "weighted/uncoded/unpaced", "weighted/http", "mptcp", "mptcp@a+b", "tcp", "tcp@b"} {
		if err := CheckSystems([]string{ok}, paths); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	if sys, _ := ParseSystem("minrtt@a+b/uncoded"); !sys.Uncoded || sys.Policy != "minrtt" || len(sys.Paths) != 2 {
		t.Errorf("minrtt@a+b/uncoded = %+v", sys)
	}
	if sys, _ := ParseSystem("weighted/unpaced/uncoded"); !sys.Uncoded || !sys.Unpaced {
		t.Errorf("weighted/unpaced/uncoded = %+v", sys)
	}
	if sys, _ := ParseSystem("weighted/http"); !sys.HTTP || sys.Uncoded || sys.Kind != "braid" {
		t.Errorf("weighted/http = %+v", sys)
	}
	if sys, _ := ParseSystem("tcp"); sys.Kind != "tcp" {
		t.Errorf("tcp = %+v", sys)
	}
	if sys, _ := ParseSystem("weighted"); sys.Uncoded || sys.Unpaced {
		t.Errorf("weighted = %+v, want coded", sys)
	}
	for _, bad := range []string{"", "fast", "single:", "single:c", "weighted@", "weighted@a+", "weighted@c",
		"quic-direct@a+b", "limit@a", "single:a@b", "weighted/", "weighted/plain", "quic-direct/uncoded", "limit/uncoded",
		"weighted/uncoded/uncoded", "mptcp/unpaced", "quic-direct/http", "weighted/http/http", "tcp@a+b", "tcp/uncoded", "mptcp@c"} {
		if err := CheckSystems([]string{bad}, paths); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPattern(t *testing.T) {
	s := newPatStream(42)
	buf := make([]byte, 3*patLen+100)
	s.fill(buf)
	r := newPatStream(42)
	if g := r.check(buf[:1000]); g != 1000 {
		t.Fatalf("good %d", g)
	}
	if g := r.check(buf[1000:]); g != len(buf)-1000 {
		t.Fatalf("good %d", g)
	}
	// A block missing in the middle: what follows is wrong.
	r = newPatStream(42)
	bad := append(append([]byte{}, buf[:64<<10]...), buf[128<<10:256<<10]...)
	if g := r.check(bad); g != 64<<10 {
		t.Fatalf("with a hole: good %d, want %d", g, 64<<10)
	}
	// Another flow's bytes are wrong.
	other := newPatStream(43)
	if g := other.check(buf[:4096]); g > 16 {
		t.Fatalf("another key: good %d", g)
	}
}
