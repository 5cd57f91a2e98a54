package bench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// fileName turns a system name into a file name part: single:fiber is
// single-fiber, weighted@lo0 is weighted-at-lo0.
func fileName(system string) string {
	r := strings.NewReplacer(":", "-", "@", "-at-", "+", "-", "/", "-", " ", "-")
	return r.Replace(system)
}

// WritePlots writes the PNGs of a run into dir and returns their file
// names: per system, goodput over time per path; the latency CDFs of all
// systems; cost per GB against goodput.
func WritePlots(dir string, res *Results) ([]string, error) {
	var files []string
	for _, s := range res.Systems {
		tl := res.Timelines[s.Name]
		if tl == nil {
			continue
		}
		name := "goodput-" + fileName(s.Name) + ".png"
		if err := goodputPlot(filepath.Join(dir, name), res, s.Name, tl); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	for _, c := range []struct {
		file, title string
		pick        func(*Timeline) []time.Duration
	}{
		{"rr-cdf.png", "request/response completion time", func(t *Timeline) []time.Duration { return t.RR }},
		{"block-cdf.png", "paced block delivery latency", func(t *Timeline) []time.Duration { return t.Block }},
	} {
		ok, err := cdfPlot(filepath.Join(dir, c.file), res, c.title, c.pick)
		if err != nil {
			return files, err
		}
		if ok {
			files = append(files, c.file)
		}
	}
	ok, err := costPlot(filepath.Join(dir, "cost-goodput.png"), res)
	if err != nil {
		return files, err
	}
	if ok {
		files = append(files, "cost-goodput.png")
	}
	return files, nil
}

func goodputPlot(file string, res *Results, system string, tl *Timeline) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s, goodput over time per path", res.Scenario, system)
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "Mbit/s"
	p.Add(plotter.NewGrid())
	var vs []any
	for k, name := range tl.Paths {
		vs = append(vs, "path "+name+" (on the wire)", series(tl.PathBps[k], tl.Step))
	}
	vs = append(vs, "goodput (all flows)", series(tl.GoodputBps, tl.Step))
	if err := plotutil.AddLines(p, vs...); err != nil {
		return err
	}
	if tl.CapacityBps != nil {
		capLine, err := plotter.NewLine(series(tl.CapacityBps, tl.Step))
		if err != nil {
			return err
		}
		capLine.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		capLine.Color = color.Gray{Y: 90}
		p.Add(capLine)
		p.Legend.Add("sum of capacities", capLine)
	}
	p.Y.Min = 0
	p.X.Min = 0
	p.Y.Max *= 1.3 // room for the legend
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}

// series turns per-step rates into points at the end of each step.
func series(bps []float64, step time.Duration) plotter.XYs {
	xys := make(plotter.XYs, len(bps))
	for i, v := range bps {
		xys[i].X = (time.Duration(i+1) * step).Seconds()
		xys[i].Y = v / 1e6
	}
	return xys
}

func cdfPlot(file string, res *Results, title string, pick func(*Timeline) []time.Duration) (bool, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s (CDF)", res.Scenario, title)
	p.X.Label.Text = "ms"
	p.Y.Label.Text = "fraction of requests done"
	p.Add(plotter.NewGrid())
	var vs []any
	lo, hi := math.Inf(1), 0.0
	for _, s := range res.Systems {
		tl := res.Timelines[s.Name]
		if tl == nil || len(pick(tl)) == 0 {
			continue
		}
		lat := pick(tl)
		xys := make(plotter.XYs, len(lat))
		for i, d := range lat {
			xys[i].X = max(ms(d), 0.1)
			xys[i].Y = float64(i+1) / float64(len(lat))
			lo, hi = min(lo, xys[i].X), max(hi, xys[i].X)
		}
		vs = append(vs, s.Name, xys)
	}
	if len(vs) == 0 {
		return false, nil
	}
	if err := plotutil.AddLines(p, vs...); err != nil {
		return false, err
	}
	if hi/lo > 50 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Label.Text = "ms (log scale)"
	}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	return true, p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}

func costPlot(file string, res *Results) (bool, error) {
	var pts plotter.XYLabels
	for _, s := range res.Systems {
		if s.GoodputBps == nil || s.CostUSDPerGB == nil {
			continue
		}
		pts.XYs = append(pts.XYs, plotter.XY{X: *s.GoodputBps / 1e6, Y: *s.CostUSDPerGB})
		pts.Labels = append(pts.Labels, " "+s.Name)
	}
	if len(pts.XYs) == 0 {
		return false, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: cost per delivered GB against goodput", res.Scenario)
	p.X.Label.Text = "goodput (Mbit/s)"
	p.Y.Label.Text = "USD per GB delivered"
	p.Add(plotter.NewGrid())
	sc, err := plotter.NewScatter(pts.XYs)
	if err != nil {
		return false, err
	}
	sc.GlyphStyle.Radius = vg.Points(4)
	sc.GlyphStyle.Color = plotutil.Color(0)
	labels, err := plotter.NewLabels(pts)
	if err != nil {
		return false, err
	}
	p.Add(sc, labels)
	p.X.Min, p.Y.Min = 0, 0
	maxX, maxY := 0.0, 0.0
	for _, xy := range pts.XYs {
		maxX, maxY = max(maxX, xy.X), max(maxY, xy.Y)
	}
	// Room for the labels on the right and above.
	p.X.Max, p.Y.Max = maxX*1.3+1, maxY*1.15+0.01
	return true, p.Save(8*vg.Inch, 5*vg.Inch, file)
}
