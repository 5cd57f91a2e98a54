// Package policyfile reads a concentrator's policy file (braid server
// --policy), in TOML or YAML, into a tier.Policy. It is the only package
// that parses the file: internal/tier, which transport links to carry a
// tier, stays free of file formats and their libraries.
package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"

	"braid/internal/fielderr"
	"braid/internal/tier"
	"braid/scheduler"
)

// Load reads the policy file path, in TOML (.toml) or YAML (.yaml, .yml)
// by its extension.
func Load(path string) (*tier.Policy, error) {
	ext := strings.ToLower(filepath.Ext(path))
	var format string
	switch ext {
	case ".toml":
		format = "toml"
	case ".yaml", ".yml":
		format = "yaml"
	default:
		if ext == "" {
			return nil, fmt.Errorf("policy %s: no extension (want .toml, .yaml or .yml)", path)
		}
		return nil, fmt.Errorf("policy %s: unknown extension %q (want .toml, .yaml or .yml)", path, ext)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(data, format)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// Parse parses a policy file in format "toml", "yaml" or "yml". An unknown
// key or an invalid value is a *fielderr.Error naming its key path (e.g.
// "tiers.basic.classes[0].p99_latency_ms"); a syntax error is not. Every
// map of the Policy is filled, empty when the file has none.
func Parse(data []byte, format string) (*tier.Policy, error) {
	var f filePolicy
	switch format {
	case "toml":
		if err := decodeTOML(data, &f); err != nil {
			return nil, err
		}
	case "yaml", "yml":
		if err := decodeYAML(data, &f); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown policy format %q (want toml or yaml)", format)
	}
	return f.policy()
}

// The file's shape. Tier-level SLA keys are the default class's SLA;
// a class does not inherit them (a key it leaves out is no constraint).
type filePolicy struct {
	DefaultTier string              `toml:"default_tier" yaml:"default_tier"`
	Prices      map[string]float64  `toml:"prices" yaml:"prices"`
	Tiers       map[string]fileTier `toml:"tiers" yaml:"tiers"`
	Tokens      map[string]string   `toml:"tokens" yaml:"tokens"`
}

type fileTier struct {
	RevenueGB float64 `toml:"revenue_usd_per_gb" yaml:"revenue_usd_per_gb"`
	// MaxSessions is a pointer so that 0, which is an error, differs
	// from leaving the key out.
	MaxSessions *int `toml:"max_sessions" yaml:"max_sessions"`
	fileSLA     `yaml:",inline"`
	Classes     []fileClass `toml:"classes" yaml:"classes"`
}

type fileClass struct {
	Name    string     `toml:"name" yaml:"name"`
	Ports   []portSpec `toml:"ports" yaml:"ports"`
	Users   []string   `toml:"users" yaml:"users"`
	fileSLA `yaml:",inline"`
}

type fileSLA struct {
	MinGoodputMbps float64 `toml:"min_goodput_mbps" yaml:"min_goodput_mbps"`
	P99LatencyMs   float64 `toml:"p99_latency_ms" yaml:"p99_latency_ms"`
	ResidualLoss   float64 `toml:"residual_loss" yaml:"residual_loss"`
	SurvivePaths   int     `toml:"survive_paths" yaml:"survive_paths"`
	MaxCostGB      float64 `toml:"max_cost_usd_per_gb" yaml:"max_cost_usd_per_gb"`
	DeadlineMs     float64 `toml:"deadline_ms" yaml:"deadline_ms"`
	MaxJitterMs    float64 `toml:"max_jitter_ms" yaml:"max_jitter_ms"`
}

// portSpec is a port or port range as written: "443", "8000-8100", or a
// bare integer. It is checked later, where the error can name the field.
type portSpec string

// UnmarshalTOML accepts a string or an integer.
func (p *portSpec) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*p = portSpec(v)
	case int64:
		*p = portSpec(strconv.FormatInt(v, 10))
	default:
		return fmt.Errorf("a port must be a string or an integer, not %T", v)
	}
	return nil
}

// UnmarshalYAML accepts a string or an integer.
func (p *portSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		return fmt.Errorf("line %d: a port must be a string or an integer", n.Line)
	}
	*p = portSpec(n.Value)
	return nil
}

func decodeTOML(data []byte, f *filePolicy) error {
	md, err := toml.Decode(string(data), f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fielderr.New(und[0].String(), "unknown key")
	}
	return nil
}

// yamlTypeName is how yaml.v3 names the Go type in "field x not found in
// type policyfile.fileTier", which means nothing to the file's author.
var yamlTypeName = regexp.MustCompile(` in type [\w.]+`)

func decodeYAML(data []byte, f *filePolicy) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil {
		if err == io.EOF {
			return nil // an empty document: validation says what is missing
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = yamlTypeName.ReplaceAllString(m, "")
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		return err
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return errors.New("more than one yaml document")
	}
	return nil
}

// positive turns -0 into 0, so that a figure written as -0 encodes with the
// sign bit clear, as the wire form requires.
func positive(v float64) float64 {
	if v == 0 {
		return 0
	}
	return v
}

func (f *filePolicy) policy() (*tier.Policy, error) {
	p := &tier.Policy{
		Tiers:       make(map[string]*tier.Tier, len(f.Tiers)),
		Tokens:      make(map[string]string, len(f.Tokens)),
		DefaultTier: f.DefaultTier,
		Prices:      make(map[string]float64, len(f.Prices)),
		MaxSessions: map[string]int{},
	}
	if len(f.Tiers) == 0 {
		return nil, fielderr.New("tiers", "at least one tier is required")
	}
	names := slices.Sorted(maps.Keys(f.Tiers)) // so the error reported does not depend on map order
	for _, name := range names {
		ft := f.Tiers[name]
		t, err := ft.tier(name)
		if err != nil {
			return nil, err
		}
		p.Tiers[name] = t
		if ft.MaxSessions != nil {
			n := *ft.MaxSessions
			if n < 1 || n > tier.MaxSessionsLimit {
				return nil, fielderr.Errorf("tiers."+name+".max_sessions", "must be 1 to %d (leave it out for the concentrator's --max-sessions-per-token)", tier.MaxSessionsLimit)
			}
			p.MaxSessions[name] = n
		}
	}
	if f.DefaultTier != "" && p.Tiers[f.DefaultTier] == nil {
		return nil, fielderr.Errorf("default_tier", "no tier named %q", f.DefaultTier)
	}
	media := slices.Sorted(maps.Keys(f.Prices))
	for _, m := range media {
		v := f.Prices[m]
		if !slices.Contains(tier.Media, m) {
			return nil, fielderr.Errorf("prices."+m, "unknown medium (want one of %s)", strings.Join(tier.Media, ", "))
		}
		if r := tier.CheckFigure(positive(v)); r != "" {
			return nil, fielderr.New("prices."+m, r)
		}
		p.Prices[m] = positive(v)
	}
	tokens := slices.Sorted(maps.Keys(f.Tokens))
	for _, tok := range tokens {
		// The error does not quote the token: it is a secret, and errors
		// end up in logs.
		name := f.Tokens[tok]
		if tok == "" {
			return nil, fielderr.New("tokens", "a token is empty")
		}
		if p.Tiers[name] == nil {
			return nil, fielderr.Errorf("tokens", "a token names tier %q, which does not exist", name)
		}
		p.Tokens[tok] = name
	}
	return p, nil
}

func (ft *fileTier) tier(name string) (*tier.Tier, error) {
	at := "tiers." + name
	if !tier.ValidName(name) {
		return nil, fielderr.Errorf(at, "tier name %s", tier.NameRule)
	}
	t := &tier.Tier{Name: name}
	if r := tier.CheckFigure(positive(ft.RevenueGB)); r != "" {
		return nil, fielderr.New(at+".revenue_usd_per_gb", r)
	}
	t.RevenueGB = positive(ft.RevenueGB)
	sla, err := ft.fileSLA.sla(at + ".")
	if err != nil {
		return nil, err
	}
	if len(ft.Classes) > tier.MaxClasses-1 {
		return nil, fielderr.Errorf(at+".classes", "has %d classes, at most %d", len(ft.Classes), tier.MaxClasses-1)
	}
	t.Classes = make([]tier.Class, 1, 1+len(ft.Classes))
	t.Classes[0] = tier.Class{Name: tier.DefaultClass, SLA: sla}
	for i := range ft.Classes {
		c, err := ft.Classes[i].class(fmt.Sprintf("%s.classes[%d]", at, i))
		if err != nil {
			return nil, err
		}
		for j, prev := range t.Classes[1:] {
			if prev.Name == c.Name {
				return nil, fielderr.Errorf(fmt.Sprintf("%s.classes[%d].name", at, i), "%q is also the name of classes[%d]", c.Name, j)
			}
		}
		t.Classes = append(t.Classes, c)
	}
	// The file's rules imply the wire's, except for the total size; a
	// tier that cannot reach the client is better refused now.
	if _, err := t.AppendBinary(nil); err != nil {
		var fe *fielderr.Error
		if errors.As(err, &fe) { // a rule above missed; name the tier
			return nil, fielderr.Errorf(at, "%v", fe)
		}
		return nil, fielderr.Errorf(at, "encodes to more than %d bytes, the limit of a control message: list fewer classes, ports or users", tier.MaxEncoded)
	}
	return t, nil
}

func (fc *fileClass) class(at string) (tier.Class, error) {
	c := tier.Class{Name: fc.Name}
	switch {
	case fc.Name == "":
		return c, fielderr.New(at+".name", "is required")
	case fc.Name == tier.DefaultClass:
		return c, fielderr.New(at+".name", `"default" is reserved for the tier's own SLA`)
	case !tier.ValidName(fc.Name):
		return c, fielderr.New(at+".name", tier.NameRule)
	}
	if len(fc.Ports) == 0 && len(fc.Users) == 0 {
		return c, fielderr.New(at, "needs ports or users (a class matching everything would shadow default)")
	}
	if len(fc.Ports) > tier.MaxPortRanges {
		return c, fielderr.Errorf(at+".ports", "has %d entries, at most %d", len(fc.Ports), tier.MaxPortRanges)
	}
	for j, s := range fc.Ports {
		r, ok := parsePortRange(string(s))
		if !ok {
			return c, fielderr.Errorf(fmt.Sprintf("%s.ports[%d]", at, j), `%q is not "N" or "LO-HI" with 1 <= LO <= HI <= 65535`, string(s))
		}
		c.Ports = append(c.Ports, r)
	}
	if len(fc.Users) > tier.MaxUsers {
		return c, fielderr.Errorf(at+".users", "has %d entries, at most %d", len(fc.Users), tier.MaxUsers)
	}
	for j, u := range fc.Users {
		if u == "" || len(u) > 255 {
			return c, fielderr.New(fmt.Sprintf("%s.users[%d]", at, j), "must be 1 to 255 bytes, as SOCKS5 usernames are")
		}
	}
	if len(fc.Users) > 0 {
		c.Users = slices.Clone(fc.Users)
	}
	sla, err := fc.fileSLA.sla(at + ".")
	if err != nil {
		return c, err
	}
	c.SLA = sla
	return c, nil
}

func (fs *fileSLA) sla(at string) (scheduler.SLA, error) {
	var s scheduler.SLA
	if r := tier.CheckFigure(positive(fs.MinGoodputMbps)); r != "" {
		return s, fielderr.New(at+"min_goodput_mbps", r)
	}
	s.MinGoodput = positive(fs.MinGoodputMbps * 1e6 / 8)
	if math.IsInf(s.MinGoodput, 0) {
		return s, fielderr.New(at+"min_goodput_mbps", "is too large")
	}
	if r := tier.CheckFigure(positive(fs.P99LatencyMs)); r != "" {
		return s, fielderr.New(at+"p99_latency_ms", r)
	}
	d, ok := durationMs(fs.P99LatencyMs)
	if !ok {
		return s, fielderr.New(at+"p99_latency_ms", "is too large")
	}
	s.P99Latency = d
	if r := tier.CheckFigure(positive(fs.ResidualLoss)); r != "" {
		return s, fielderr.New(at+"residual_loss", r)
	}
	if fs.ResidualLoss >= 1 {
		return s, fielderr.New(at+"residual_loss", "must be < 1")
	}
	s.ResidualLoss = positive(fs.ResidualLoss)
	if fs.SurvivePaths < 0 || fs.SurvivePaths > tier.MaxSurvive {
		return s, fielderr.Errorf(at+"survive_paths", "must be 0 to %d", tier.MaxSurvive)
	}
	s.Survive = fs.SurvivePaths
	if r := tier.CheckFigure(positive(fs.MaxCostGB)); r != "" {
		return s, fielderr.New(at+"max_cost_usd_per_gb", r)
	}
	s.MaxCostGB = positive(fs.MaxCostGB)
	for _, f := range []struct {
		key string
		ms  float64
		to  *time.Duration
	}{{"deadline_ms", fs.DeadlineMs, &s.Deadline}, {"max_jitter_ms", fs.MaxJitterMs, &s.MaxJitter}} {
		if r := tier.CheckFigure(positive(f.ms)); r != "" {
			return s, fielderr.New(at+f.key, r)
		}
		d, ok := durationMs(f.ms)
		if !ok {
			return s, fielderr.New(at+f.key, "is too large")
		}
		*f.to = d
	}
	return s, nil
}

// parsePortRange parses "N" or "LO-HI" (decimal, no signs or spaces).
func parsePortRange(s string) (tier.PortRange, bool) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, ok1 := parsePort(lo)
	h, ok2 := parsePort(hi)
	if !ok1 || !ok2 || l > h {
		return tier.PortRange{}, false
	}
	return tier.PortRange{Lo: l, Hi: h}, true
}

func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n < 1 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// durationMs converts milliseconds to a Duration, rounded to the
// nanosecond; ok is false when it does not fit.
func durationMs(ms float64) (time.Duration, bool) {
	ns := math.Round(ms * 1e6)
	if ns >= math.MaxInt64 {
		return 0, false
	}
	return time.Duration(ns), true
}
