package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// contract is results.json's schema (docs/BENCH.md): every system has
// every one of these keys, null where the metric does not apply.
var contract = []string{"name", "goodput_bps", "capacity_bps", "efficiency", "max_stall_ms", "bytes_lost",
	"rr_p50_ms", "rr_p99_ms", "cost_usd_per_gb", "sla_ok_fraction", "cpu_s_per_gb", "peak_rss_bytes", "bytes_per_path"}

// TestRunTiny runs the harness end to end for a few seconds: braid and
// quic-direct over two emulated paths, a path killed and restored, and
// checks results.json against its schema and that no byte was lost.
// Speed is not asserted: that is what the scenarios measure.
func TestRunTiny(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sc, err := Load("testdata/tiny.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, sc, Options{DrainTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := Write(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"report.md", "goodput-weighted.png", "goodput-quic-direct.png", "rr-cdf.png", "cost-goodput.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (wrote %v)", f, err, files)
		}
	}

	data, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["scenario"] != "tiny" || doc["duration_s"] != 3.0 || doc["seed"] != 1.0 {
		t.Errorf("header %v %v %v", doc["scenario"], doc["duration_s"], doc["seed"])
	}
	systems, _ := doc["systems"].([]any)
	if len(systems) != 3 {
		t.Fatalf("systems: %v", doc["systems"])
	}
	for _, s := range systems {
		m := s.(map[string]any)
		name := m["name"]
		for _, k := range contract {
			if _, ok := m[k]; !ok {
				t.Errorf("%v: no %s", name, k)
			}
		}
		if e, ok := m["error"]; ok {
			t.Errorf("%v failed: %v", name, e)
			continue
		}
		notNull := []string{"goodput_bps", "capacity_bps", "efficiency", "rr_p50_ms", "rr_p99_ms", "cost_usd_per_gb", "sla_ok_fraction"}
		null := []string{}
		if name == "limit" {
			null = append(null, "bytes_lost", "cpu_s_per_gb", "peak_rss_bytes", "bytes_per_path")
		} else {
			notNull = append(notNull, "max_stall_ms", "bytes_lost", "cpu_s_per_gb", "peak_rss_bytes", "bytes_per_path")
			if m["bytes_lost"] != 0.0 {
				t.Errorf("%v: bytes_lost %v, want 0; notes %v", name, m["bytes_lost"], m["notes"])
			}
			bpp, _ := m["bytes_per_path"].(map[string]any)
			if len(bpp) != 2 || bpp["a"] == 0.0 {
				t.Errorf("%v: bytes_per_path %v", name, m["bytes_per_path"])
			}
		}
		for _, k := range notNull {
			if m[k] == nil {
				t.Errorf("%v: %s is null", name, k)
			}
		}
		for _, k := range null {
			if m[k] != nil {
				t.Errorf("%v: %s is %v, want null", name, k, m[k])
			}
		}
		if g, _ := m["goodput_bps"].(float64); g <= 0 {
			t.Errorf("%v: goodput %v", name, m["goodput_bps"])
		}
	}
	t.Logf("%s", data)
}
