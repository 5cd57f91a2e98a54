package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// fileName turns a system name into a file name part: single:fiber is
// single-fiber, weighted@lo0 is weighted-at-lo0.
func fileName(system string) string {
	r := strings.NewReplacer(":", "-", "@", "-at-", "+", "-", "/", "-", " ", "-")
	return r.Replace(system)
}

// palette is Tableau's ten colours but red, which is kept for the SLA's
// lines: distinct from each other on white, so a path or a system keeps
// one recognisable colour.
var palette = []color.Color{
	color.RGBA{31, 119, 180, 255},
	color.RGBA{255, 127, 14, 255},
	color.RGBA{44, 160, 44, 255},
	color.RGBA{148, 103, 189, 255},
	color.RGBA{140, 86, 75, 255},
	color.RGBA{227, 119, 194, 255},
	color.RGBA{127, 127, 127, 255},
	color.RGBA{188, 189, 34, 255},
	color.RGBA{23, 190, 207, 255},
}

// dashes are patterns told apart even in grey: solid, long dashes, dots,
// dash-dot, and so on.
var dashes = [][]vg.Length{
	nil,
	{vg.Points(7), vg.Points(3)},
	{vg.Points(1.5), vg.Points(2)},
	{vg.Points(7), vg.Points(2.5), vg.Points(1.5), vg.Points(2.5)},
	{vg.Points(3), vg.Points(3)},
	{vg.Points(12), vg.Points(3), vg.Points(3), vg.Points(3)},
}

var (
	capacityStyle = draw.LineStyle{Color: color.Gray{Y: 110}, Width: vg.Points(0.75), Dashes: []vg.Length{vg.Points(4), vg.Points(3)}}
	goodputStyle  = draw.LineStyle{Color: color.Black, Width: vg.Points(2)}
	slaStyle      = draw.LineStyle{Color: color.RGBA{200, 0, 0, 255}, Width: vg.Points(1.25), Dashes: []vg.Length{vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}}
	warmupFill    = color.RGBA{225, 225, 225, 255}
)

// pathStyle is the line of the path at index k in the scenario's list:
// the same in every goodput plot of a run, whichever system it shows.
func pathStyle(k int) draw.LineStyle {
	return draw.LineStyle{
		Color:  palette[k%len(palette)],
		Width:  vg.Points(1.25),
		Dashes: dashes[k%len(dashes)],
	}
}

// systemLine is the CDF line of the system at index i in the run's list.
func systemLine(i int) draw.LineStyle {
	return draw.LineStyle{
		Color:  palette[i%len(palette)],
		Width:  vg.Points(1.5),
		Dashes: dashes[i%len(dashes)],
	}
}

// systemGlyph is the cost plot's marker of the system at index i: its
// colour is its CDF line's; shape and colour repeat together only
// after 72 systems.
func systemGlyph(i int) draw.GlyphStyle {
	return draw.GlyphStyle{
		Color:  palette[i%len(palette)],
		Radius: vg.Points(5),
		Shape:  plotutil.Shape(i),
	}
}

// pathIndex is the path's place in the scenario (its style); k, its
// place in the timeline, when the scenario does not know it.
func pathIndex(res *Results, name string, k int) int {
	if res.Scn != nil {
		for i, p := range res.Scn.Paths {
			if p.Name == name {
				return i
			}
		}
	}
	return k
}

// WritePlots writes the PNGs of a run into dir and returns their file
// names: per system, goodput over time per path; the latency CDFs of all
// systems; cost per GB against goodput.
func WritePlots(dir string, res *Results) ([]string, error) {
	var files []string
	yr := goodputYRange(res)
	for _, s := range res.Systems {
		tl := res.Timelines[s.Name]
		if tl == nil {
			continue
		}
		name := "goodput-" + fileName(s.Name) + ".png"
		if err := goodputFigure(res, s.Name, tl, yr).save(filepath.Join(dir, name)); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	for _, k := range []cdfKind{rrCDF, blockCDF} {
		f := cdfFigure(res, k)
		if f == nil {
			continue
		}
		if err := f.save(filepath.Join(dir, k.file)); err != nil {
			return files, err
		}
		files = append(files, k.file)
	}
	if f := costFigure(res); f != nil {
		if err := f.save(filepath.Join(dir, "cost-goodput.png")); err != nil {
			return files, err
		}
		files = append(files, "cost-goodput.png")
	}
	return files, nil
}

// figure is a plot with its legend beside it (never over the data) and
// an optional caption under it.
type figure struct {
	p      *plot.Plot
	legend plot.Legend
	// labels are the legend's entries in order (the legend keeps its
	// own unexported).
	labels  []string
	caption string
	w, h    vg.Length
	// glyphs are the marker styles drawn, one per scatter; lines, the
	// style of each line in the legend by its label.
	glyphs []draw.GlyphStyle
	lines  map[string]draw.LineStyle
}

func newFigure(title string) *figure {
	p := plot.New()
	p.Title.Text = title
	p.Add(plotter.NewGrid())
	l := plot.NewLegend()
	l.Top, l.Left = true, true
	l.TextStyle.Font.Size = vg.Points(10)
	l.Padding = vg.Points(3)
	return &figure{p: p, legend: l, w: 10 * vg.Inch, h: 4.5 * vg.Inch, lines: map[string]draw.LineStyle{}}
}

func (f *figure) add(label string, th ...plot.Thumbnailer) {
	f.legend.Add(label, th...)
	f.labels = append(f.labels, label)
	for _, t := range th {
		if l, ok := t.(*plotter.Line); ok {
			f.lines[label] = l.LineStyle
		}
	}
}

// hasLabel reports whether some legend entry starts with prefix.
func (f *figure) hasLabel(prefix string) bool {
	for _, l := range f.labels {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func (f *figure) save(file string) (err error) {
	c, err := draw.NewFormattedCanvas(f.w, f.h, "png")
	if err != nil {
		return err
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	pad := vg.Points(10)
	capSty := text.Style{Font: font.From(plot.DefaultFont, 10), Handler: plot.DefaultTextHandler, Color: color.Gray{Y: 60}}
	var capH vg.Length
	if f.caption != "" {
		capH = capSty.Height(f.caption) + pad/2
		capSty.XAlign = draw.XLeft
		capSty.YAlign = draw.YBottom
		dc.FillText(capSty, vg.Point{X: dc.Min.X + pad, Y: dc.Min.Y + pad/3}, f.caption)
	}
	lw := f.legend.Rectangle(dc).Size().X
	if len(f.labels) > 0 {
		lw += pad
	}
	f.p.Draw(draw.Crop(dc, 0, -lw-pad/2, capH, 0))
	lc := draw.Crop(dc, dc.Size().X-lw, 0, capH, -f.p.Title.TextStyle.Height(f.p.Title.Text)-2*pad)
	f.legend.Draw(lc)
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer func() {
		if e := out.Close(); err == nil {
			err = e
		}
	}()
	_, err = c.WriteTo(out)
	return err
}

// capHeadroom: a capacity more than this many times the top of the
// data is left above the goodput plots' range instead of flattening the
// curves.
const capHeadroom = 1.5

// sustained is how long in all a rate must be held to set the goodput
// plots' range: a short catch-up burst (a paced source sending what it
// owes after a slow start) does not flatten every plot of the run; the
// legend of a plot whose peaks are cut says how high they went.
const sustained = time.Second

// yRange is the y axis all of a run's goodput plots share, in Mbit/s, so
// that systems compare by eye.
type yRange struct {
	max float64
	// capClipped: the capacity is far above the data and left off the
	// top.
	capClipped bool
	// end is the longest timeline's end, in seconds: the x range too is
	// shared.
	end float64
}

// goodputYRange computes the shared y range: the highest rate any path
// or goodput of any system held for sustained in all after warm-up, or
// the SLA's minimum goodput, with 20% headroom; raised to show the
// capacity when that is within capHeadroom of it, else the capacity is
// clipped.
func goodputYRange(res *Results) yRange {
	top, capMax, end := 0.0, 0.0, 0.0
	warm := warmupOf(res)
	for _, tl := range res.Timelines {
		if tl.Step <= 0 {
			continue
		}
		skip, k := int(warm/tl.Step), max(int(sustained/tl.Step), 1)
		for _, ps := range append(slices.Clone(tl.PathBps), tl.GoodputBps) {
			if len(ps) <= skip {
				continue
			}
			vs := slices.Clone(ps[skip:])
			slices.Sort(vs)
			top = max(top, vs[max(len(vs)-k, 0)]/1e6)
		}
		capMax = max(capMax, maxOf(tl.CapacityBps)/1e6)
		end = max(end, float64(len(tl.GoodputBps))*tl.Step.Seconds())
	}
	if sla := slaOf(res); sla != nil {
		top = max(top, sla.MinGoodputBps/1e6)
	}
	if top == 0 {
		top = capMax
	}
	r := yRange{max: top * 1.2, end: end}
	if capMax > 0 {
		if capMax <= top*capHeadroom {
			r.max = max(r.max, capMax*1.05)
		} else {
			r.capClipped = true
		}
	}
	if r.max <= 0 {
		r.max = 1
	}
	return r
}

func slaOf(res *Results) *SLA {
	if res.Scn == nil {
		return nil
	}
	return res.Scn.SLA
}

func warmupOf(res *Results) time.Duration {
	if res.Scn != nil {
		return res.Scn.Warmup
	}
	return time.Duration(res.WarmupS * float64(time.Second))
}

// goodputFigure draws one system's rate on the wire per path and its
// goodput over time, on the run's shared y range.
func goodputFigure(res *Results, system string, tl *Timeline, yr yRange) *figure {
	ymax := yr.max
	f := newFigure(fmt.Sprintf("%s: %s, rate per path and goodput over time", res.Scenario, system))
	p := f.p
	p.X.Label.Text = "time since the workloads started (s)"
	p.Y.Label.Text = "Mbit/s"
	end := max(yr.end, float64(len(tl.GoodputBps))*tl.Step.Seconds())
	if w := warmupOf(res).Seconds(); w > 0 {
		shade := warmupShade(w, ymax)
		p.Add(shade)
		f.add(fmt.Sprintf("warm-up, first %gs (not in the metrics)", w), shade)
		f.caption = "Shaded: the warm-up, left out of every metric but bytes lost and CPU; queues and windows fill then, so rates may pass the capacity briefly."
	}
	for k, name := range tl.Paths {
		l := &plotter.Line{XYs: series(tl.PathBps[k], tl.Step), LineStyle: pathStyle(pathIndex(res, name, k))}
		p.Add(l)
		f.add("path "+name+" (on the wire)", l)
	}
	g := &plotter.Line{XYs: series(tl.GoodputBps, tl.Step), LineStyle: goodputStyle}
	p.Add(g)
	f.add("goodput (all flows)", g)
	if tl.CapacityBps != nil {
		c := &plotter.Line{XYs: series(tl.CapacityBps, tl.Step), LineStyle: capacityStyle}
		p.Add(c)
		label := "sum of path capacities"
		if yr.capClipped {
			label += fmt.Sprintf(" (up to %.0f, above the plot)", maxOf(tl.CapacityBps)/1e6)
		}
		f.add(label, c)
	}
	if sla := slaOf(res); sla != nil && sla.MinGoodputBps > 0 {
		v := sla.MinGoodputBps / 1e6
		l := &plotter.Line{XYs: plotter.XYs{{X: 0, Y: v}, {X: end, Y: v}}, LineStyle: slaStyle}
		p.Add(l)
		f.add(fmt.Sprintf("SLA minimum goodput (%g Mbit/s)", v), l)
	}
	peak := maxOf(tl.GoodputBps)
	for _, ps := range tl.PathBps {
		peak = max(peak, maxOf(ps))
	}
	if peak/1e6 > ymax {
		f.add(fmt.Sprintf("(peaks cut at the top: up to %.0f Mbit/s)", peak/1e6))
	}
	p.X.Min, p.X.Max = 0, end
	p.Y.Min, p.Y.Max = 0, ymax
	p.Y.Tick.Marker = linTicks{}
	return f
}

// warmupShade is a grey band over [0, w] seconds.
func warmupShade(w, ymax float64) *plotter.Polygon {
	poly, err := plotter.NewPolygon(plotter.XYs{{X: 0, Y: 0}, {X: w, Y: 0}, {X: w, Y: ymax}, {X: 0, Y: ymax}})
	if err != nil {
		panic(err) // four finite points
	}
	poly.Color = warmupFill
	poly.LineStyle.Width = 0
	return poly
}

func maxOf(vs []float64) float64 {
	m := 0.0
	for _, v := range vs {
		m = max(m, v)
	}
	return m
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

// cdfKind is one of the latency CDFs.
type cdfKind struct {
	file, title, xLabel, yLabel string
	pick                        func(*Timeline) []time.Duration
	// rr: the rr completions (else the paced blocks).
	rr bool
}

var (
	rrCDF = cdfKind{"rr-cdf.png", "request completion time", "request completion time (ms, log scale)",
		"fraction of requests completed", func(t *Timeline) []time.Duration { return t.RR }, true}
	blockCDF = cdfKind{"block-cdf.png", "paced block delivery latency", "block delivery latency (ms, log scale)",
		"fraction of blocks delivered", func(t *Timeline) []time.Duration { return t.Block }, false}
)

// slaBound is the SLA's p99 latency bound that judges kind k's
// latencies, 0 for none: the SLA's p99 is of the rr completions when the
// scenario has rr, else of the paced blocks.
func slaBound(res *Results, k cdfKind) time.Duration {
	sla := slaOf(res)
	if sla == nil || sla.P99Latency <= 0 {
		return 0
	}
	hasRR := false
	for _, w := range res.Scn.Workloads {
		hasRR = hasRR || w.Kind == "rr"
	}
	if hasRR != k.rr {
		return 0
	}
	return sla.P99Latency
}

// cdfFigure draws kind k's latency CDF of every system that has some, on
// a log x axis; nil when none has.
func cdfFigure(res *Results, k cdfKind) *figure {
	f := newFigure(fmt.Sprintf("%s: %s (CDF)", res.Scenario, k.title))
	p := f.p
	p.X.Label.Text = k.xLabel
	p.Y.Label.Text = k.yLabel
	lo, hi := math.Inf(1), 0.0
	for i, s := range res.Systems {
		tl := res.Timelines[s.Name]
		if tl == nil || len(k.pick(tl)) == 0 {
			continue
		}
		lat := k.pick(tl)
		xys := make(plotter.XYs, len(lat))
		for j, d := range lat {
			xys[j].X = max(ms(d), 0.1)
			xys[j].Y = float64(j+1) / float64(len(lat))
			lo, hi = min(lo, xys[j].X), max(hi, xys[j].X)
		}
		l := &plotter.Line{XYs: xys, LineStyle: systemLine(i)}
		p.Add(l)
		f.add(s.Name, l)
	}
	if len(f.labels) == 0 {
		return nil
	}
	if b := slaBound(res, k); b > 0 {
		x := ms(b)
		l := &plotter.Line{XYs: plotter.XYs{{X: x, Y: 0}, {X: x, Y: 1}}, LineStyle: slaStyle}
		p.Add(l)
		f.add(fmt.Sprintf("SLA p99 bound (%v)", b), l)
		lo, hi = min(lo, x), max(hi, x)
		// The 99% level the bound is judged at.
		q := &plotter.Line{XYs: plotter.XYs{{X: lo / 1.5, Y: 0.99}, {X: hi * 1.5, Y: 0.99}}, LineStyle: capacityStyle}
		p.Add(q)
		f.add("99th percentile", q)
	}
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.X.Min, p.X.Max = lo/1.5, hi*1.5
	p.Y.Min, p.Y.Max = 0, 1
	return f
}

// costFigure draws each system's cost per GB against its goodput, one
// marker (shape and colour) per system, and marks the better corner: low
// cost, high goodput. nil when no system has both.
func costFigure(res *Results) *figure {
	f := newFigure(fmt.Sprintf("%s: cost per delivered GB against goodput", res.Scenario))
	p := f.p
	p.X.Label.Text = "goodput (Mbit/s)"
	p.Y.Label.Text = "USD per GB delivered"
	loX, hiX, hiY := math.Inf(1), 0.0, 0.0
	for i, s := range res.Systems {
		if s.GoodputBps == nil || s.CostUSDPerGB == nil {
			continue
		}
		x, y := *s.GoodputBps/1e6, *s.CostUSDPerGB
		sc := &plotter.Scatter{XYs: plotter.XYs{{X: x, Y: y}}, GlyphStyle: systemGlyph(i)}
		p.Add(sc)
		f.add(fmt.Sprintf("%s (%.1f Mbit/s, $%.2f)", s.Name, x, y), sc)
		f.glyphs = append(f.glyphs, sc.GlyphStyle)
		loX, hiX, hiY = min(loX, x), max(hiX, x), max(hiY, y)
	}
	if len(f.glyphs) == 0 {
		return nil
	}
	// The x range from the data: paced systems share one goodput, and
	// from 0 they would sit in one column at the edge.
	pad := max((hiX-loX)*0.15, hiX*0.05, 0.5)
	p.X.Min, p.X.Max = max(0, loX-pad), hiX+pad
	p.Y.Min, p.Y.Max = 0, hiY*1.15+0.01
	p.X.Tick.Marker, p.Y.Tick.Marker = linTicks{}, linTicks{}
	p.Add(betterCorner{})
	f.caption = "Better: towards the lower right (cheaper per GB, more goodput)."
	f.h = 5 * vg.Inch
	return f
}

// betterCorner marks the lower right of the data area, where a system
// is cheaper and delivers more, with an arrow and a word.
type betterCorner struct{}

func (betterCorner) Plot(c draw.Canvas, _ *plot.Plot) {
	tip := vg.Point{X: c.Max.X - vg.Points(6), Y: c.Min.Y + vg.Points(6)}
	tail := vg.Point{X: tip.X - vg.Points(40), Y: tip.Y + vg.Points(28)}
	sty := draw.LineStyle{Color: color.Gray{Y: 70}, Width: vg.Points(1.5)}
	c.StrokeLines(sty, []vg.Point{tail, tip})
	// The head: two strokes back from the tip, 25 degrees off the shaft.
	ang := math.Atan2(float64(tail.Y-tip.Y), float64(tail.X-tip.X))
	for _, d := range []float64{-0.45, 0.45} {
		end := vg.Point{X: tip.X + vg.Length(9*math.Cos(ang+d)), Y: tip.Y + vg.Length(9*math.Sin(ang+d))}
		c.StrokeLines(sty, []vg.Point{end, tip})
	}
	ts := text.Style{Font: font.From(plot.DefaultFont, 11), Handler: plot.DefaultTextHandler, Color: color.Gray{Y: 70}, XAlign: draw.XRight, YAlign: draw.YBottom}
	c.FillText(ts, vg.Point{X: tail.X, Y: tail.Y}, "better")
}

// linTicks labels 4 to 10 round values (steps of 1, 2 or 5 times a power
// of ten) with unlabelled ticks between: gonum's default labels as few
// as two on a short range.
type linTicks struct{}

func (linTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return nil
	}
	step := math.Pow(10, math.Floor(math.Log10((hi-lo)/4)))
	for _, m := range []float64{1, 2, 5, 10} {
		if (hi-lo)/(step*m) <= 10 {
			step *= m
			break
		}
	}
	prec := max(0, -int(math.Floor(math.Log10(step))))
	var ts []plot.Tick
	for i := math.Ceil(lo / step * 2); i*step/2 <= hi*(1+1e-9); i++ {
		v := i * step / 2
		t := plot.Tick{Value: v}
		if int(i)%2 == 0 {
			t.Label = strconv.FormatFloat(v, 'f', prec, 64)
		}
		ts = append(ts, t)
	}
	return ts
}
