package bench

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
)

func ptr(v float64) *float64 { return &v }

// testResults is a small run of cost-sla's kind: three paths with 90
// Mbit/s between them, a 20 Mbit/s paced download under an SLA, 2 s of
// warm-up, three systems that moved very different rates.
func testResults() *Results {
	scn := &Scenario{
		Name:     "test",
		Duration: 10 * time.Second,
		Warmup:   2 * time.Second,
		SLA:      &SLA{MinGoodputBps: 20e6, P99Latency: time.Second},
		Paths:    []Path{{Name: "fiber", PriceGB: 0.1}, {Name: "cell", PriceGB: 4}, {Name: "sat", PriceGB: 1}},
		Workloads: []Workload{
			{Kind: "bulk", Download: true, Flows: 1, RateBps: 20e6},
		},
	}
	step := 200 * time.Millisecond
	n := 50
	tl := func(rates ...float64) *Timeline {
		t := &Timeline{Step: step, Paths: []string{"fiber", "cell", "sat"}}
		for _, r := range rates {
			ps := make([]float64, n)
			for i := range ps {
				ps[i] = r
			}
			t.PathBps = append(t.PathBps, ps)
		}
		t.GoodputBps = make([]float64, n)
		t.CapacityBps = make([]float64, n)
		for i := range n {
			for _, ps := range t.PathBps {
				t.GoodputBps[i] += ps[i]
			}
			t.CapacityBps[i] = 90e6
		}
		// A start-up spike during warm-up.
		t.GoodputBps[1] = 150e6
		for i := range 200 {
			t.Block = append(t.Block, time.Duration(i+1)*time.Millisecond*5)
		}
		return t
	}
	res := &Results{
		Scenario: "test", DurationS: 10, WarmupS: 2, Seed: 1, Scn: scn,
		Timelines: map[string]*Timeline{
			"bestvalue":   tl(10e6, 0, 10e6),
			"minrtt":      tl(10e6, 10e6, 0),
			"quic-direct": tl(0, 20e6, 0),
		},
	}
	for _, s := range []struct {
		name             string
		goodput, cost, p float64
	}{
		{"bestvalue", 20e6, 0.7, 431},
		{"minrtt", 20e6, 2.3, 61},
		{"quic-direct", 20e6, 4.1, 50},
	} {
		res.Systems = append(res.Systems, SystemResult{
			Name: s.name, GoodputBps: ptr(s.goodput), CapacityBps: ptr(90e6), Efficiency: ptr(s.goodput / 90e6),
			BlockP99Ms: ptr(s.p), CostUSDPerGB: ptr(s.cost), SLAOKFraction: ptr(1), CPUSPerGB: ptr(30),
			BytesPerPath: map[string]int64{"fiber": 1e7, "cell": 2e7, "sat": 0},
		})
	}
	res.Limit = SystemResult{Name: "limit", GoodputBps: ptr(20e6), CapacityBps: ptr(90e6), Efficiency: ptr(20.0 / 90), CostUSDPerGB: ptr(0.55), SLAOKFraction: ptr(1)}
	res.Systems = append(res.Systems, res.Limit)
	return res
}

// All of a run's goodput plots share one y range, set by the data (not
// by a capacity far above it, nor by a spike in warm-up), and it holds
// the SLA's minimum.
func TestGoodputYRangeShared(t *testing.T) {
	res := testResults()
	yr := goodputYRange(res)
	if !yr.capClipped {
		t.Errorf("capacity 90 Mbit/s over data of 20 not clipped: %+v", yr)
	}
	if yr.max < 20 || yr.max > 40 {
		t.Errorf("y max %.1f, want from the data (20 Mbit/s) with headroom", yr.max)
	}
	var maxes []float64
	for _, s := range []string{"bestvalue", "minrtt", "quic-direct"} {
		f := goodputFigure(res, s, res.Timelines[s], yr)
		maxes = append(maxes, f.p.Y.Max)
		if f.p.Y.Min != 0 {
			t.Errorf("%s: y from %v", s, f.p.Y.Min)
		}
		if !f.hasLabel("sum of path capacities (up to 90") {
			t.Errorf("%s: the clipped capacity is not named: %q", s, f.labels)
		}
		if !f.hasLabel("SLA minimum goodput (20 Mbit/s)") {
			t.Errorf("%s: no SLA line: %q", s, f.labels)
		}
		if !f.hasLabel("(peaks cut at the top: up to 150") {
			t.Errorf("%s: the cut spike is not said: %q", s, f.labels)
		}
	}
	if maxes[0] != maxes[1] || maxes[1] != maxes[2] {
		t.Errorf("y max per plot %v, want one", maxes)
	}

	// A capacity near the data shows.
	for _, tl := range res.Timelines {
		for i := range tl.CapacityBps {
			tl.CapacityBps[i] = 25e6
		}
	}
	if yr := goodputYRange(res); yr.capClipped || yr.max < 25 {
		t.Errorf("capacity 25 over data of 20: %+v", yr)
	}
}

// A path has one line style in every plot of a run, whatever the order
// of a timeline's paths; the paths' styles differ.
func TestPathStyleSameInEveryPlot(t *testing.T) {
	res := testResults()
	// One timeline lists its paths in another order.
	q := res.Timelines["quic-direct"]
	q.Paths = []string{"sat", "fiber", "cell"}
	q.PathBps = [][]float64{q.PathBps[2], q.PathBps[0], q.PathBps[1]}
	yr := goodputYRange(res)
	seen := map[string]string{}
	for _, s := range res.Systems {
		tl := res.Timelines[s.Name]
		if tl == nil {
			continue
		}
		f := goodputFigure(res, s.Name, tl, yr)
		for _, p := range res.Scn.Paths {
			label := "path " + p.Name + " (on the wire)"
			sty, ok := f.lines[label]
			if !ok {
				t.Fatalf("%s: no line for %s: %q", s.Name, p.Name, f.labels)
			}
			key := styleKey(sty.Color, sty.Dashes)
			if prev, ok := seen[p.Name]; ok && prev != key {
				t.Errorf("%s: path %s drawn %s, elsewhere %s", s.Name, p.Name, key, prev)
			}
			seen[p.Name] = key
		}
	}
	distinct := map[string]bool{}
	for _, k := range seen {
		distinct[k] = true
	}
	if len(distinct) != len(res.Scn.Paths) {
		t.Errorf("%d paths share %d styles: %v", len(res.Scn.Paths), len(distinct), seen)
	}
}

func styleKey(c any, d any) string { return fmt.Sprintf("%v %v", c, d) }

// The warm-up is shaded and the legend and caption say so; with no
// warm-up there is no band.
func TestWarmupShaded(t *testing.T) {
	res := testResults()
	yr := goodputYRange(res)
	f := goodputFigure(res, "minrtt", res.Timelines["minrtt"], yr)
	if !f.hasLabel("warm-up, first 2s") || !strings.Contains(f.caption, "warm-up") {
		t.Errorf("no warm-up in legend %q or caption %q", f.labels, f.caption)
	}
	if f.labels[0] != "warm-up, first 2s (not in the metrics)" {
		t.Errorf("legend starts %q", f.labels[0])
	}
	res.Scn.Warmup = 0
	f = goodputFigure(res, "minrtt", res.Timelines["minrtt"], yr)
	if f.hasLabel("warm-up") {
		t.Errorf("a warm-up band with none: %q", f.labels)
	}
}

// Both CDFs have a log x axis and labels that say what they count; the
// SLA's p99 bound is drawn on the CDF the SLA judges (rr if any, else
// paced blocks).
func TestCDFLogAxisAndSLA(t *testing.T) {
	res := testResults()
	for name, tl := range res.Timelines {
		if name != "bestvalue" {
			tl.RR = []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}
		}
	}
	rr, block := cdfFigure(res, rrCDF), cdfFigure(res, blockCDF)
	for _, c := range []struct {
		f    *figure
		noun string
	}{{rr, "request"}, {block, "block"}} {
		if c.f == nil {
			t.Fatalf("no %s CDF", c.noun)
		}
		if _, ok := c.f.p.X.Scale.(plot.LogScale); !ok {
			t.Errorf("%s CDF x scale %T, want log", c.noun, c.f.p.X.Scale)
		}
		if !strings.Contains(c.f.p.Y.Label.Text, c.noun) || !strings.Contains(c.f.p.X.Label.Text, c.noun) || !strings.Contains(c.f.p.Title.Text, c.noun) {
			t.Errorf("%s CDF labelled %q, %q, %q", c.noun, c.f.p.Title.Text, c.f.p.X.Label.Text, c.f.p.Y.Label.Text)
		}
	}
	if !block.hasLabel("SLA p99 bound (1s)") {
		t.Errorf("block CDF without the SLA bound: %q", block.labels)
	}
	if rr.hasLabel("SLA p99 bound") {
		t.Errorf("rr CDF with the SLA bound of blocks: %q", rr.labels)
	}
	if len(rr.labels) != 2 {
		t.Errorf("rr CDF of %q, want minrtt and quic-direct", rr.labels)
	}
	if block.p.X.Min > 5 || block.p.X.Max < 1000 {
		t.Errorf("block CDF x range [%v, %v] leaves out the data or the bound", block.p.X.Min, block.p.X.Max)
	}
	res.Scn.Workloads = append(res.Scn.Workloads, Workload{Kind: "rr", RatePerS: 10})
	if cdfFigure(res, blockCDF).hasLabel("SLA p99 bound") || !cdfFigure(res, rrCDF).hasLabel("SLA p99 bound") {
		t.Errorf("with rr the SLA bound belongs on the rr CDF")
	}
	for _, tl := range res.Timelines {
		tl.RR = nil
	}
	if cdfFigure(res, rrCDF) != nil {
		t.Errorf("an rr CDF with no requests")
	}
}

// The cost plot has one marker style per system, each in the legend,
// and marks the better corner.
func TestCostMarkers(t *testing.T) {
	res := testResults()
	f := costFigure(res)
	if f == nil {
		t.Fatal("no cost plot")
	}
	distinct := map[string]bool{}
	for _, g := range f.glyphs {
		distinct[fmt.Sprintf("%v %T", g.Color, g.Shape)] = true
	}
	if len(distinct) != len(res.Systems) {
		t.Errorf("%d marker styles for %d systems", len(distinct), len(res.Systems))
	}
	shapes := map[reflect.Type]bool{}
	for i := range 8 {
		shapes[reflect.TypeOf(systemGlyph(i).Shape)] = true
	}
	if len(shapes) != 8 {
		t.Errorf("8 systems get %d shapes", len(shapes))
	}
	for _, s := range res.Systems {
		if !f.hasLabel(s.Name + " (") {
			t.Errorf("%s not in the legend %q", s.Name, f.labels)
		}
	}
	if !strings.Contains(f.caption, "lower right") {
		t.Errorf("better corner not said: %q", f.caption)
	}
	if f.p.X.Min <= 0 || f.p.X.Max <= 20 || f.p.X.Min >= 20 {
		t.Errorf("x range [%v, %v], want around 20", f.p.X.Min, f.p.X.Max)
	}
}

// WritePlots writes readable PNGs and names them.
func TestWritePlots(t *testing.T) {
	dir := t.TempDir()
	files, err := WritePlots(dir, testResults())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"goodput-bestvalue.png", "goodput-minrtt.png", "goodput-quic-direct.png", "block-cdf.png", "cost-goodput.png"}
	if !reflect.DeepEqual(files, want) {
		t.Fatalf("files %q, want %q", files, want)
	}
	for _, name := range files {
		fh, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(fh)
		fh.Close()
		if err != nil || cfg.Width < 500 {
			t.Errorf("%s: %v, %dx%d", name, err, cfg.Width, cfg.Height)
		}
	}
}

// linTicks labels a handful of round values across the range.
func TestLinTicks(t *testing.T) {
	for _, c := range []struct{ lo, hi float64 }{{0, 25}, {0, 72}, {0, 5.7}, {19, 24.5}} {
		var labels []string
		for _, tk := range (linTicks{}).Ticks(c.lo, c.hi) {
			if tk.Value < c.lo || tk.Value > c.hi {
				t.Errorf("[%v, %v]: tick %v outside", c.lo, c.hi, tk.Value)
			}
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			}
		}
		if len(labels) < 4 || len(labels) > 11 {
			t.Errorf("[%v, %v]: labels %q", c.lo, c.hi, labels)
		}
	}
}
