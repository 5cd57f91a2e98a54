package bench

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"braid/bench/emu"
	"braid/internal/fielderr"
	"braid/scheduler"
)

// The scenarios that ship with braid; `braid-bench --list` shows them.
//
//go:embed scenarios/*.toml
var builtinFS embed.FS

// Scenario is a validated bench scenario: emulated paths, the traffic
// run over them, the SLA it is judged by and the systems compared.
// docs/BENCH.md describes the file format.
type Scenario struct {
	Name        string
	Description string
	// Duration is how long the workloads run; Warmup, at its start, is
	// left out of every metric but bytes_lost and CPU.
	Duration, Warmup time.Duration
	Seed             int64
	Systems          []string
	// SLA is nil when the scenario sets none.
	SLA       *SLA
	Paths     []Path
	Workloads []Workload
	Events    []Event

	// source names the scenario in errors: "hetero.toml" or the file path.
	source string
	// warmupSet: the file set warmup_s, so a new duration keeps it.
	warmupSet bool
}

// SLA is what a user was promised: both must hold in a 1-second window
// for it to count as met. A zero field is not part of the SLA.
type SLA struct {
	MinGoodputBps float64
	P99Latency    time.Duration
	// What only braid's bestvalue planner reads: the tier's revenue per
	// GB, the paths to survive, the residual loss and the cost cap.
	RevenueGB    float64
	Survive      int
	ResidualLoss float64
	MaxCostGB    float64
	// Classes, when set, are the traffic classes braid plans for, the
	// first named "default"; a workload names its class and its flows
	// give that name as their SOCKS username. The fields above then only
	// judge the windows.
	Classes []ClassSLA
}

// ClassSLA is one traffic class's SLA for braid's planner.
type ClassSLA struct {
	Name string
	SLA  scheduler.SLA
}

// Path is one emulated provider path (or, with Emulated false, a plain
// loopback path with no emulator in front of the concentrator).
type Path struct {
	Name     string
	Emulated bool
	// Up (client to concentrator) and Down are the emulator's links, with
	// their traces, outages and schedules; their timeline starts with the
	// workloads (Relay.SetStart).
	Up, Down         emu.Link
	PriceGB          float64
	Operator, Medium string
	Conns            int
	// NoRateHint: braid is not told the path's rate (no rate= in its
	// SPEC), as a user who does not know it; it then paces by what it
	// measures.
	NoRateHint bool

	// upCap and downCap give the capacity over time, for the limit and
	// for efficiency.
	upCap, downCap capProfile
}

// Workload is one stream of traffic through the proxy.
type Workload struct {
	// Kind is "bulk", "rr" or "udp".
	Kind string
	// Bulk: Flows parallel TCP connections, Download or upload, each Size
	// bytes (0: until the end), all together paced at RateBps (0: as fast
	// as they go).
	Download bool
	Flows    int
	Size     int64
	RateBps  float64
	// Start and Stop bound the workload in time (Stop 0: the end).
	Start, Stop time.Duration
	// RR: requests of RequestBytes at RatePerS (Poisson arrivals), each
	// answered with one of ResponseBytes drawn by Weights.
	RatePerS      float64
	RequestBytes  int
	ResponseBytes []int
	Weights       []float64
	// Class names the SLA class of the workload's flows ("": default).
	Class string
	// Text: bulk bytes from a compressible pattern (words), not random.
	Text bool
	// UDP: DatagramBytes every 1/RatePerS seconds through a UDP
	// association, each echoed by the destination (bench/udp.go).
	DatagramBytes int
}

// Event kills or restores a path (the emulator's kill switch) at At.
type Event struct {
	At   time.Duration
	Path string
	Kill bool
}

// Policies are braid's dispersion policies, as transport.Config.Policy
// spells them; "single:NAME" is also one.
var Policies = []string{"bestvalue", "cheapest", "weighted", "minrtt", "roundrobin", "duplicate"}

// The file format, decoded by decodeTable.
type fileScenario struct {
	Name        string         `toml:"name"`
	Description string         `toml:"description"`
	DurationS   *float64       `toml:"duration_s"`
	WarmupS     *float64       `toml:"warmup_s"`
	Seed        *int64         `toml:"seed"`
	Systems     []string       `toml:"systems"`
	SLA         *fileSLA       `toml:"sla"`
	Paths       []filePath     `toml:"paths"`
	Workloads   []fileWorkload `toml:"workloads"`
	Events      []fileEvent    `toml:"events"`
}

type fileSLA struct {
	MinGoodputMbps *float64    `toml:"min_goodput_mbps"`
	P99LatencyMs   *float64    `toml:"p99_latency_ms"`
	RevenueGB      *float64    `toml:"revenue_usd_per_gb"`
	Survive        *int        `toml:"survive_paths"`
	ResidualLoss   *float64    `toml:"residual_loss"`
	MaxCostGB      *float64    `toml:"max_cost_usd_per_gb"`
	Classes        []fileClass `toml:"classes"`
}

type fileClass struct {
	Name           string   `toml:"name"`
	MinGoodputMbps *float64 `toml:"min_goodput_mbps"`
	P99LatencyMs   *float64 `toml:"p99_latency_ms"`
	Survive        *int     `toml:"survive_paths"`
	ResidualLoss   *float64 `toml:"residual_loss"`
	MaxCostGB      *float64 `toml:"max_cost_usd_per_gb"`
	DeadlineMs     *float64 `toml:"deadline_ms"`
	MaxJitterMs    *float64 `toml:"max_jitter_ms"`
}

type filePath struct {
	Name     string       `toml:"name"`
	Emulate  *bool        `toml:"emulate"`
	RateMbps *float64     `toml:"rate_mbps"`
	RTTMs    *float64     `toml:"rtt_ms"`
	DelayMs  *float64     `toml:"delay_ms"`
	JitterMs *float64     `toml:"jitter_ms"`
	Loss     *float64     `toml:"loss"`
	QueueKB  *float64     `toml:"queue_kb"`
	GE       *fileGE      `toml:"gilbert_elliott"`
	Outages  []fileOutage `toml:"outages"`
	Schedule string       `toml:"schedule"`
	Down     *fileDir     `toml:"down"`
	Up       *fileDir     `toml:"up"`
	Price    *float64     `toml:"price_usd_per_gb"`
	Operator string       `toml:"operator"`
	Medium   string       `toml:"medium"`
	Conns    *int         `toml:"conns"`
	RateHint *bool        `toml:"rate_hint"`
}

type fileDir struct {
	RateMbps     *float64 `toml:"rate_mbps"`
	DelayMs      *float64 `toml:"delay_ms"`
	JitterMs     *float64 `toml:"jitter_ms"`
	Loss         *float64 `toml:"loss"`
	GE           *fileGE  `toml:"gilbert_elliott"`
	Trace        string   `toml:"trace"`
	TraceOffsetS *float64 `toml:"trace_offset_s"`
	Schedule     string   `toml:"schedule"`
}

type fileGE struct {
	PGoodBad float64 `toml:"p_good_bad"`
	PBadGood float64 `toml:"p_bad_good"`
	LossGood float64 `toml:"loss_good"`
	LossBad  float64 `toml:"loss_bad"`
}

type fileOutage struct {
	FromS float64 `toml:"from_s"`
	ToS   float64 `toml:"to_s"`
}

type fileWorkload struct {
	Type          string    `toml:"type"`
	Direction     string    `toml:"direction"`
	Flows         *int      `toml:"flows"`
	SizeMB        *float64  `toml:"size_mb"`
	RateMbps      *float64  `toml:"rate_mbps"`
	StartS        *float64  `toml:"start_s"`
	StopS         *float64  `toml:"stop_s"`
	RatePerS      *float64  `toml:"rate_per_s"`
	RequestBytes  *int      `toml:"request_bytes"`
	ResponseBytes []int     `toml:"response_bytes"`
	Weights       []float64 `toml:"weights"`
	Class         string    `toml:"class"`
	Compressible  bool      `toml:"compressible"`
	DatagramBytes *int      `toml:"datagram_bytes"`
}

type fileEvent struct {
	AtS    *float64 `toml:"at_s"`
	Path   string   `toml:"path"`
	Action string   `toml:"action"`
}

// LoadOptions tell Load where files a scenario names live.
type LoadOptions struct {
	// TracesDir is where trace and schedule files named without a
	// directory are looked for (after the scenario file's own directory).
	// Default ../shared/traces.
	TracesDir string
}

// DefaultTracesDir is where the repository's traces live, seen from its
// root.
const DefaultTracesDir = "../shared/traces"

// Builtin lists the shipped scenarios: name and description.
func Builtin() [][2]string {
	ents, _ := fs.ReadDir(builtinFS, "scenarios")
	var out [][2]string
	for _, e := range ents {
		data, _ := fs.ReadFile(builtinFS, "scenarios/"+e.Name())
		var head struct {
			Description string `toml:"description"`
		}
		toml.Decode(string(data), &head)
		out = append(out, [2]string{strings.TrimSuffix(e.Name(), ".toml"), head.Description})
	}
	return out
}

// Load reads a scenario by built-in name (hetero) or file path.
func Load(nameOrFile string, opt LoadOptions) (*Scenario, error) {
	if st, err := os.Stat(nameOrFile); err == nil && st.Mode().IsRegular() {
		data, err := os.ReadFile(nameOrFile)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", nameOrFile, err)
		}
		return Parse(nameOrFile, data, opt, true)
	}
	name := strings.TrimSuffix(nameOrFile, ".toml")
	data, err := fs.ReadFile(builtinFS, "scenarios/"+name+".toml")
	if err != nil || strings.ContainsAny(name, `/\`) {
		var names []string
		for _, b := range Builtin() {
			names = append(names, b[0])
		}
		return nil, fmt.Errorf("scenario %q: no such file or built-in scenario (built in: %s)",
			nameOrFile, strings.Join(names, ", "))
	}
	return Parse(name+".toml", data, opt, false)
}

// Parse decodes and validates a scenario. source names it in errors; when
// isFile, relative trace and schedule paths are looked for beside it
// first. Every error is one line: "scenario SOURCE: FIELD: REASON".
func Parse(source string, data []byte, opt LoadOptions, isFile bool) (*Scenario, error) {
	sc, err := parse(source, data, opt, isFile)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", source, err)
	}
	sc.source = source
	return sc, nil
}

var pathName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

func parse(source string, data []byte, opt LoadOptions, isFile bool) (*Scenario, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	var f fileScenario
	if err := decodeTable(raw, &f, ""); err != nil {
		return nil, err
	}
	if opt.TracesDir == "" {
		opt.TracesDir = DefaultTracesDir
	}
	sc := &Scenario{Name: f.Name, Description: f.Description, Duration: 20 * time.Second, Seed: 1}
	if sc.Name == "" {
		sc.Name = strings.TrimSuffix(filepath.Base(source), ".toml")
	}
	if f.DurationS != nil {
		if *f.DurationS <= 0 {
			return nil, errAt("duration_s", "must be > 0")
		}
		sc.Duration = seconds(*f.DurationS)
	}
	if f.WarmupS != nil {
		if *f.WarmupS < 0 || seconds(*f.WarmupS) >= sc.Duration {
			return nil, errAt("warmup_s", "must be >= 0 and less than duration_s")
		}
		sc.Warmup = seconds(*f.WarmupS)
		sc.warmupSet = true
	} else {
		sc.Warmup = DefaultWarmup(sc.Duration)
	}
	if f.Seed != nil {
		sc.Seed = *f.Seed
	}

	// Paths first: systems and events name them.
	if len(f.Paths) == 0 {
		return nil, errAt("paths", "at least one path is required")
	}
	if len(f.Paths) > 16 {
		return nil, errAt("paths", "at most 16 paths")
	}
	dir := ""
	if isFile {
		dir = filepath.Dir(source)
	}
	names := map[string]bool{}
	for i, fp := range f.Paths {
		p, err := parsePath(fmt.Sprintf("paths[%d]", i), fp, dir, opt.TracesDir)
		if err != nil {
			return nil, err
		}
		if names[p.Name] {
			return nil, errAt(fmt.Sprintf("paths[%d].name", i), "%q is used twice", p.Name)
		}
		names[p.Name] = true
		sc.Paths = append(sc.Paths, p)
	}

	if f.Systems == nil {
		f.Systems = []string{"weighted", "quic-direct", "limit"}
	}
	if err := CheckSystems(f.Systems, sc.Paths); err != nil {
		return nil, fielderr.New("systems", err.Error())
	}
	sc.Systems = f.Systems

	if f.SLA != nil {
		s := &SLA{}
		if v := f.SLA.MinGoodputMbps; v != nil {
			if *v < 0 {
				return nil, errAt("sla.min_goodput_mbps", "must be >= 0")
			}
			s.MinGoodputBps = *v * 1e6
		}
		if v := f.SLA.P99LatencyMs; v != nil {
			if *v <= 0 {
				return nil, errAt("sla.p99_latency_ms", "must be > 0")
			}
			s.P99Latency = millis(*v)
		}
		if v := f.SLA.RevenueGB; v != nil {
			if !(*v >= 0) || math.IsInf(*v, 0) {
				return nil, errAt("sla.revenue_usd_per_gb", "must be a number >= 0")
			}
			s.RevenueGB = *v
		}
		if v := f.SLA.Survive; v != nil {
			if *v < 0 || *v > 7 {
				return nil, errAt("sla.survive_paths", "must be 0 to 7")
			}
			s.Survive = *v
		}
		if v := f.SLA.ResidualLoss; v != nil {
			if !(*v >= 0 && *v < 1) {
				return nil, errAt("sla.residual_loss", "must be >= 0 and < 1")
			}
			s.ResidualLoss = *v
		}
		if v := f.SLA.MaxCostGB; v != nil {
			if !(*v >= 0) || math.IsInf(*v, 0) {
				return nil, errAt("sla.max_cost_usd_per_gb", "must be a number >= 0")
			}
			s.MaxCostGB = *v
		}
		for i, fc := range f.SLA.Classes {
			at := fmt.Sprintf("sla.classes[%d]", i)
			if (i == 0) != (fc.Name == "default") {
				return nil, errAt(at+".name", "the first class is \"default\", and only the first")
			}
			if fc.Name == "" || slices.ContainsFunc(s.Classes, func(c ClassSLA) bool { return c.Name == fc.Name }) {
				return nil, errAt(at+".name", "must be set and unique")
			}
			c := ClassSLA{Name: fc.Name}
			for _, v := range []struct {
				p    *float64
				name string
				set  func(float64)
			}{
				{fc.MinGoodputMbps, "min_goodput_mbps", func(x float64) { c.SLA.MinGoodput = x * 1e6 / 8 }},
				{fc.P99LatencyMs, "p99_latency_ms", func(x float64) { c.SLA.P99Latency = millis(x) }},
				{fc.ResidualLoss, "residual_loss", func(x float64) { c.SLA.ResidualLoss = x }},
				{fc.MaxCostGB, "max_cost_usd_per_gb", func(x float64) { c.SLA.MaxCostGB = x }},
				{fc.DeadlineMs, "deadline_ms", func(x float64) { c.SLA.Deadline = millis(x) }},
				{fc.MaxJitterMs, "max_jitter_ms", func(x float64) { c.SLA.MaxJitter = millis(x) }},
			} {
				if v.p != nil {
					if !(*v.p >= 0) || math.IsInf(*v.p, 0) || v.name == "residual_loss" && *v.p >= 1 {
						return nil, errAt(at+"."+v.name, "must be a number >= 0")
					}
					v.set(*v.p)
				}
			}
			if fc.Survive != nil {
				if *fc.Survive < 0 || *fc.Survive > 7 {
					return nil, errAt(at+".survive_paths", "must be 0 to 7")
				}
				c.SLA.Survive = *fc.Survive
			}
			s.Classes = append(s.Classes, c)
		}
		if s.MinGoodputBps == 0 && s.P99Latency == 0 && s.Survive == 0 {
			return nil, errAt("sla", "set min_goodput_mbps, p99_latency_ms, survive_paths or some of them")
		}
		sc.SLA = s
	}

	if len(f.Workloads) == 0 {
		return nil, errAt("workloads", "at least one workload is required")
	}
	for i, fw := range f.Workloads {
		w, err := parseWorkload(fmt.Sprintf("workloads[%d]", i), fw)
		if err != nil {
			return nil, err
		}
		if fw.Compressible {
			if fw.Type != "bulk" {
				return nil, errAt(fmt.Sprintf("workloads[%d].compressible", i), "only a bulk workload can be compressible")
			}
			w.Text = true
		}
		if fw.Class != "" {
			if sc.SLA == nil || !slices.ContainsFunc(sc.SLA.Classes, func(c ClassSLA) bool { return c.Name == fw.Class }) {
				return nil, errAt(fmt.Sprintf("workloads[%d].class", i), "%q is not one of sla.classes", fw.Class)
			}
			w.Class = fw.Class
		}
		sc.Workloads = append(sc.Workloads, w)
	}

	for i, fe := range f.Events {
		at := fmt.Sprintf("events[%d]", i)
		if fe.AtS == nil || *fe.AtS < 0 {
			return nil, errAt(at+".at_s", "is required and must be >= 0")
		}
		if !names[fe.Path] {
			return nil, errAt(at+".path", "%q is not one of the paths", fe.Path)
		}
		if i := slices.IndexFunc(sc.Paths, func(p Path) bool { return p.Name == fe.Path }); !sc.Paths[i].Emulated {
			return nil, errAt(at+".path", "%q is not emulated (emulate = false): nothing to kill", fe.Path)
		}
		e := Event{At: seconds(*fe.AtS), Path: fe.Path}
		switch fe.Action {
		case "kill":
			e.Kill = true
		case "restore":
		default:
			return nil, errAt(at+".action", "%q is not kill or restore", fe.Action)
		}
		sc.Events = append(sc.Events, e)
	}
	slices.SortStableFunc(sc.Events, func(a, b Event) int { return int(a.At - b.At) })
	return sc, nil
}

// DefaultWarmup is the warm-up left out of a run of duration d when the
// scenario sets none: 2 s, or a fifth of a short run.
func DefaultWarmup(d time.Duration) time.Duration { return min(2*time.Second, d/5) }

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }
func millis(ms float64) time.Duration { return time.Duration(math.Round(ms * 1e6)) }

func parsePath(at string, fp filePath, dir, tracesDir string) (Path, error) {
	p := Path{Name: fp.Name, Emulated: true, Operator: fp.Operator, Medium: fp.Medium}
	if !pathName.MatchString(fp.Name) {
		return p, errAt(at+".name", "%q: want 1 to 32 letters, digits, '.', '_' or '-'", fp.Name)
	}
	if fp.Emulate != nil {
		p.Emulated = *fp.Emulate
	}
	if p.Operator == "" {
		p.Operator = "own"
	}
	if p.Operator != "own" && p.Operator != "partner" {
		return p, errAt(at+".operator", "%q is not own or partner", p.Operator)
	}
	if p.Medium == "" {
		p.Medium = "other"
	}
	if !slices.Contains([]string{"ethernet", "wifi", "cellular", "satellite", "other"}, p.Medium) {
		return p, errAt(at+".medium", "%q is not ethernet, wifi, cellular, satellite or other", p.Medium)
	}
	if fp.RateHint != nil {
		p.NoRateHint = !*fp.RateHint
	}
	if fp.Conns != nil {
		if *fp.Conns < 1 || *fp.Conns > 16 {
			return p, errAt(at+".conns", "%d is outside 1..16", *fp.Conns)
		}
		p.Conns = *fp.Conns
	}
	if fp.Price != nil {
		if *fp.Price < 0 {
			return p, errAt(at+".price_usd_per_gb", "must be >= 0")
		}
		p.PriceGB = *fp.Price
	}
	if !p.Emulated {
		// A plain loopback path: nothing to emulate.
		switch {
		case fp.RateMbps != nil, fp.RTTMs != nil, fp.DelayMs != nil, fp.JitterMs != nil, fp.Loss != nil,
			fp.QueueKB != nil, fp.GE != nil, fp.Outages != nil, fp.Schedule != "", fp.Down != nil, fp.Up != nil:
			return p, errAt(at+".emulate", "a path with emulate = false takes no link settings")
		}
		return p, nil
	}

	var base emu.Link
	if fp.RateMbps != nil {
		if *fp.RateMbps <= 0 {
			return p, errAt(at+".rate_mbps", "must be > 0")
		}
		base.RateBps = *fp.RateMbps * 1e6
	}
	switch {
	case fp.RTTMs != nil && fp.DelayMs != nil:
		return p, errAt(at+".delay_ms", "give rtt_ms or delay_ms (one way), not both")
	case fp.RTTMs != nil:
		if *fp.RTTMs < 0 {
			return p, errAt(at+".rtt_ms", "must be >= 0")
		}
		base.Delay = millis(*fp.RTTMs / 2)
	case fp.DelayMs != nil:
		if *fp.DelayMs < 0 {
			return p, errAt(at+".delay_ms", "must be >= 0")
		}
		base.Delay = millis(*fp.DelayMs)
	}
	if fp.JitterMs != nil {
		if *fp.JitterMs < 0 {
			return p, errAt(at+".jitter_ms", "must be >= 0")
		}
		base.Jitter = millis(*fp.JitterMs)
	}
	if fp.Loss != nil {
		if *fp.Loss < 0 || *fp.Loss >= 1 {
			return p, errAt(at+".loss", "must be in [0, 1)")
		}
		base.Loss = *fp.Loss
	}
	if fp.QueueKB != nil {
		if *fp.QueueKB <= 0 {
			return p, errAt(at+".queue_kb", "must be > 0")
		}
		base.QueueBytes = int(*fp.QueueKB * 1024)
	}
	if fp.GE != nil {
		ge, err := parseGE(at+".gilbert_elliott", *fp.GE)
		if err != nil {
			return p, err
		}
		base.GE = ge
	}
	baseCap := capProfile{base: base.RateBps}
	if fp.Schedule != "" {
		sched, rows, err := loadSchedule(at+".schedule", fp.Schedule, dir, tracesDir)
		if err != nil {
			return p, err
		}
		base.Schedule, baseCap.sched = sched, rows
	}
	for i, o := range fp.Outages {
		oat := fmt.Sprintf("%s.outages[%d]", at, i)
		if o.FromS < 0 || o.ToS <= o.FromS {
			return p, errAt(oat, "want 0 <= from_s < to_s")
		}
		base.Outages = append(base.Outages, emu.Outage{From: seconds(o.FromS), To: seconds(o.ToS)})
	}
	var err error
	if p.Down, p.downCap, err = parseDir(at+".down", base, baseCap, fp.Down, dir, tracesDir); err != nil {
		return p, err
	}
	if p.Up, p.upCap, err = parseDir(at+".up", base, baseCap, fp.Up, dir, tracesDir); err != nil {
		return p, err
	}
	for _, d := range []struct {
		name string
		l    emu.Link
	}{{"down", p.Down}, {"up", p.Up}} {
		if d.l.RateBps == 0 && d.l.Trace == nil {
			return p, errAt(at+".rate_mbps", "is required (or a trace for %s)", d.name)
		}
	}
	return p, nil
}

func parseGE(at string, g fileGE) (*emu.GilbertElliott, error) {
	for _, v := range []struct {
		name string
		v    float64
	}{{"p_good_bad", g.PGoodBad}, {"p_bad_good", g.PBadGood}, {"loss_good", g.LossGood}, {"loss_bad", g.LossBad}} {
		if v.v < 0 || v.v > 1 {
			return nil, errAt(at+"."+v.name, "must be in [0, 1]")
		}
	}
	if g.PGoodBad > 0 && g.PBadGood == 0 {
		return nil, errAt(at+".p_bad_good", "must be > 0 when p_good_bad is (or the bad state never ends)")
	}
	return &emu.GilbertElliott{PGoodBad: g.PGoodBad, PBadGood: g.PBadGood, LossGood: g.LossGood, LossBad: g.LossBad}, nil
}

// parseDir applies a [paths.down] or [paths.up] table over the path's
// settings.
func parseDir(at string, l emu.Link, c capProfile, fd *fileDir, dir, tracesDir string) (emu.Link, capProfile, error) {
	if fd == nil {
		return l, c, nil
	}
	if fd.RateMbps != nil {
		if *fd.RateMbps <= 0 {
			return l, c, errAt(at+".rate_mbps", "must be > 0")
		}
		l.RateBps = *fd.RateMbps * 1e6
		c.base = l.RateBps
	}
	if fd.DelayMs != nil {
		if *fd.DelayMs < 0 {
			return l, c, errAt(at+".delay_ms", "must be >= 0")
		}
		l.Delay = millis(*fd.DelayMs)
	}
	if fd.JitterMs != nil {
		if *fd.JitterMs < 0 {
			return l, c, errAt(at+".jitter_ms", "must be >= 0")
		}
		l.Jitter = millis(*fd.JitterMs)
	}
	if fd.Loss != nil {
		if *fd.Loss < 0 || *fd.Loss >= 1 {
			return l, c, errAt(at+".loss", "must be in [0, 1)")
		}
		l.Loss = *fd.Loss
	}
	if fd.GE != nil {
		ge, err := parseGE(at+".gilbert_elliott", *fd.GE)
		if err != nil {
			return l, c, err
		}
		l.GE = ge
	}
	if fd.Trace != "" {
		f, err := resolveFile(at+".trace", fd.Trace, dir, tracesDir, "trace")
		if err != nil {
			return l, c, err
		}
		tr, err := emu.LoadMahimahi(f)
		if err != nil {
			return l, c, errAt(at+".trace", "%v", err)
		}
		counts, err := traceCounts(f)
		if err != nil {
			return l, c, errAt(at+".trace", "%v", err)
		}
		l.Trace, c.trace = tr, counts
	}
	if fd.TraceOffsetS != nil {
		if *fd.TraceOffsetS < 0 {
			return l, c, errAt(at+".trace_offset_s", "must be >= 0")
		}
		if fd.Trace == "" {
			return l, c, errAt(at+".trace_offset_s", "needs a trace")
		}
		l.TraceOffset = seconds(*fd.TraceOffsetS)
		c.traceOffset = l.TraceOffset
	}
	if fd.Schedule != "" {
		sched, rows, err := loadSchedule(at+".schedule", fd.Schedule, dir, tracesDir)
		if err != nil {
			return l, c, err
		}
		l.Schedule, c.sched = sched, rows
	}
	return l, c, nil
}

func loadSchedule(at, name, dir, tracesDir string) (*emu.Schedule, []schedRow, error) {
	f, err := resolveFile(at, name, dir, tracesDir, "schedule")
	if err != nil {
		return nil, nil, err
	}
	sched, err := emu.LoadSchedule(f)
	if err != nil {
		return nil, nil, errAt(at, "%v", err)
	}
	rows, err := scheduleRates(f)
	if err != nil {
		return nil, nil, errAt(at, "%v", err)
	}
	return sched, rows, nil
}

// resolveFile finds a trace or schedule file: an absolute path as is; a
// relative one beside the scenario file (when there is one), then in the
// traces directory by its base name.
func resolveFile(at, name, dir, tracesDir, what string) (string, error) {
	var tried []string
	try := func(p string) bool {
		tried = append(tried, p)
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular()
	}
	if filepath.IsAbs(name) {
		if try(name) {
			return name, nil
		}
	} else {
		if dir != "" && try(filepath.Join(dir, name)) {
			return filepath.Join(dir, name), nil
		}
		if p := filepath.Join(tracesDir, filepath.Base(name)); try(p) {
			return p, nil
		}
	}
	return "", errAt(at, "%s file %q not found (looked for %s; set --traces DIR)", what, name, strings.Join(tried, ", "))
}

func parseWorkload(at string, fw fileWorkload) (Workload, error) {
	w := Workload{Kind: fw.Type}
	if fw.StartS != nil {
		if *fw.StartS < 0 {
			return w, errAt(at+".start_s", "must be >= 0")
		}
		w.Start = seconds(*fw.StartS)
	}
	if fw.StopS != nil {
		if seconds(*fw.StopS) <= w.Start {
			return w, errAt(at+".stop_s", "must be after start_s")
		}
		w.Stop = seconds(*fw.StopS)
	}
	only := func(kind string, set bool, key string) error {
		if set {
			return errAt(at+"."+key, "applies to %s workloads only", kind)
		}
		return nil
	}
	switch fw.Type {
	case "bulk":
		for _, c := range []struct {
			set bool
			key string
		}{{fw.RatePerS != nil, "rate_per_s"}, {fw.RequestBytes != nil, "request_bytes"},
			{fw.ResponseBytes != nil, "response_bytes"}, {fw.Weights != nil, "weights"}} {
			if err := only("rr", c.set, c.key); err != nil {
				return w, err
			}
		}
		switch fw.Direction {
		case "download", "":
			w.Download = true
		case "upload":
		default:
			return w, errAt(at+".direction", "%q is not download or upload", fw.Direction)
		}
		w.Flows = 1
		if fw.Flows != nil {
			if *fw.Flows < 1 || *fw.Flows > 64 {
				return w, errAt(at+".flows", "%d is outside 1..64", *fw.Flows)
			}
			w.Flows = *fw.Flows
		}
		if fw.SizeMB != nil {
			if *fw.SizeMB <= 0 {
				return w, errAt(at+".size_mb", "must be > 0")
			}
			w.Size = int64(*fw.SizeMB * 1e6)
		}
		if fw.RateMbps != nil {
			if *fw.RateMbps <= 0 {
				return w, errAt(at+".rate_mbps", "must be > 0")
			}
			w.RateBps = *fw.RateMbps * 1e6
		}
	case "rr":
		for _, c := range []struct {
			set bool
			key string
		}{{fw.Direction != "", "direction"}, {fw.Flows != nil, "flows"},
			{fw.SizeMB != nil, "size_mb"}, {fw.RateMbps != nil, "rate_mbps"}} {
			if err := only("bulk", c.set, c.key); err != nil {
				return w, err
			}
		}
		w.Flows = 1
		if fw.RatePerS == nil || *fw.RatePerS <= 0 || *fw.RatePerS > 10000 {
			return w, errAt(at+".rate_per_s", "is required, in (0, 10000]")
		}
		w.RatePerS = *fw.RatePerS
		w.RequestBytes = 100
		if fw.RequestBytes != nil {
			if *fw.RequestBytes < 1 || *fw.RequestBytes > 1<<20 {
				return w, errAt(at+".request_bytes", "%d is outside 1..1048576", *fw.RequestBytes)
			}
			w.RequestBytes = *fw.RequestBytes
		}
		if len(fw.ResponseBytes) == 0 {
			return w, errAt(at+".response_bytes", "is required: one or more sizes")
		}
		for i, n := range fw.ResponseBytes {
			if n < 1 || n > 64<<20 {
				return w, errAt(fmt.Sprintf("%s.response_bytes[%d]", at, i), "%d is outside 1..%d", n, 64<<20)
			}
		}
		w.ResponseBytes = fw.ResponseBytes
		if fw.Weights != nil {
			if len(fw.Weights) != len(fw.ResponseBytes) {
				return w, errAt(at+".weights", "has %d entries for %d response sizes", len(fw.Weights), len(fw.ResponseBytes))
			}
			sum := 0.0
			for i, x := range fw.Weights {
				if x < 0 {
					return w, errAt(fmt.Sprintf("%s.weights[%d]", at, i), "must be >= 0")
				}
				sum += x
			}
			if sum == 0 {
				return w, errAt(at+".weights", "must not all be 0")
			}
			w.Weights = fw.Weights
		}
	case "udp":
		for _, c := range []struct {
			set bool
			key string
		}{{fw.Direction != "", "direction"}, {fw.Flows != nil, "flows"}, {fw.SizeMB != nil, "size_mb"},
			{fw.RateMbps != nil, "rate_mbps"}, {fw.RequestBytes != nil, "request_bytes"},
			{fw.ResponseBytes != nil, "response_bytes"}, {fw.Weights != nil, "weights"}} {
			if c.set {
				return w, errAt(at+"."+c.key, "does not apply to udp workloads")
			}
		}
		w.Flows = 1
		if fw.RatePerS == nil || *fw.RatePerS <= 0 || *fw.RatePerS > 20000 {
			return w, errAt(at+".rate_per_s", "is required: datagrams per second, in (0, 20000]")
		}
		w.RatePerS = *fw.RatePerS
		w.DatagramBytes = 160
		if fw.DatagramBytes != nil {
			if *fw.DatagramBytes < udpHeader || *fw.DatagramBytes > 1200 {
				return w, errAt(at+".datagram_bytes", "%d is outside %d..1200", *fw.DatagramBytes, udpHeader)
			}
			w.DatagramBytes = *fw.DatagramBytes
		}
	case "":
		return w, errAt(at+".type", "is required: bulk, rr or udp")
	default:
		return w, errAt(at+".type", "%q is not bulk, rr or udp", fw.Type)
	}
	return w, nil
}

// CheckSystems checks system names against the paths: a policy
// (weighted, minrtt, roundrobin, duplicate, single:PATH), optionally
// restricted to some paths (weighted@a+b) and optionally without packet
// coding (weighted/uncoded, weighted@a/uncoded), quic-direct (optionally
// quic-direct@PATH) or limit; each at most once.
func CheckSystems(systems []string, paths []Path) error {
	if len(systems) == 0 {
		return errors.New("at least one system is required")
	}
	has := func(n string) bool {
		return slices.ContainsFunc(paths, func(p Path) bool { return p.Name == n })
	}
	seen := map[string]bool{}
	for _, s := range systems {
		if seen[s] {
			return fmt.Errorf("%q is listed twice", s)
		}
		seen[s] = true
		sys, err := ParseSystem(s)
		if err != nil {
			return err
		}
		for _, n := range append(slices.Clone(sys.Paths), sys.Single) {
			if n != "" && !has(n) {
				return fmt.Errorf("%q: no path named %q", s, n)
			}
		}
		if sys.Single != "" && len(sys.Paths) > 0 && !slices.Contains(sys.Paths, sys.Single) {
			return fmt.Errorf("%q: path %q is not among the system's paths", s, sys.Single)
		}
	}
	return nil
}

// System is a parsed system name.
type System struct {
	Name string
	// Kind is "braid", "quic-direct", "mptcp", "tcp" or "limit".
	Kind string
	// Policy is transport.Config.Policy for braid systems.
	Policy string
	// Single is the path of a single:NAME policy.
	Single string
	// Paths restricts the system to these paths (braid: the paths it
	// dials; quic-direct: its one path); empty means all (quic-direct:
	// the best).
	Paths []string
	// Uncoded is a braid system with packet coding off (a /uncoded
	// suffix): transport.Config.NoPacketCoding on both ends.
	Uncoded bool
	// Unpaced is a braid system whose paths without a nominal rate are
	// not paced by measurement (a /unpaced suffix):
	// transport.Config.NoMeasuredPacing on both ends.
	Unpaced bool
	// HTTP is a braid system whose workloads open their TCP connections
	// with HTTP CONNECT on the proxy port instead of SOCKS5 (an /http
	// suffix); UDP workloads still use SOCKS5.
	HTTP bool
}

// ParseSystem parses a system name.
func ParseSystem(s string) (System, error) {
	sys := System{Name: s}
	rest, mods, hasMod := strings.Cut(s, "/")
	if hasMod {
		for _, mod := range strings.Split(mods, "/") {
			switch {
			case mod == "uncoded" && !sys.Uncoded:
				sys.Uncoded = true
			case mod == "unpaced" && !sys.Unpaced:
				sys.Unpaced = true
			case mod == "http" && !sys.HTTP:
				sys.HTTP = true
			default:
				return sys, fmt.Errorf("%q: /%s is not /uncoded, /unpaced or /http (each at most once)", s, mod)
			}
		}
	}
	name, sub, hasSub := strings.Cut(rest, "@")
	if hasSub {
		if sub == "" {
			return sys, fmt.Errorf("%q: no path after @", s)
		}
		sys.Paths = strings.Split(sub, "+")
		if slices.Contains(sys.Paths, "") {
			return sys, fmt.Errorf("%q: empty path name", s)
		}
	}
	switch {
	case name == "limit":
		sys.Kind = "limit"
		if hasSub {
			return sys, fmt.Errorf("%q: limit takes no paths", s)
		}
	case name == "quic-direct", name == "tcp":
		sys.Kind = name
		if len(sys.Paths) > 1 {
			return sys, fmt.Errorf("%q: %s runs over one path", s, name)
		}
	case name == "mptcp":
		sys.Kind = "mptcp"

	case slices.Contains(Policies, name):
		sys.Kind, sys.Policy = "braid", name
	case strings.HasPrefix(name, "single:"):
		sys.Kind, sys.Policy, sys.Single = "braid", name, strings.TrimPrefix(name, "single:")
		if sys.Single == "" {
			return sys, fmt.Errorf("%q: single: needs a path name", s)
		}
	default:
		return sys, fmt.Errorf("%q is not a system: %s, single:PATH (a policy, optionally @PATH+PATH... and /uncoded or /unpaced), quic-direct, mptcp, tcp or limit",
			s, strings.Join(Policies, ", "))
	}
	if (sys.Uncoded || sys.Unpaced || sys.HTTP) && sys.Kind != "braid" {
		return sys, fmt.Errorf("%q: only braid's policies take /uncoded, /unpaced and /http", s)
	}
	return sys, nil
}
