package policyfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"braid/internal/fielderr"
	"braid/internal/tier"
	"braid/scheduler"
)

// example is the policy in testdata/policy.toml and policy.yaml.
func example() *tier.Policy {
	basic := &tier.Tier{Name: "basic", RevenueGB: 2, Classes: []tier.Class{
		{Name: "default", SLA: scheduler.SLA{MinGoodput: 5e6 / 8, P99Latency: 500 * time.Millisecond,
			ResidualLoss: 0.001, MaxCostGB: 1.5}},
		{Name: "interactive", Ports: []tier.PortRange{{Lo: 22, Hi: 22}, {Lo: 443, Hi: 443}, {Lo: 8000, Hi: 8100}}, Users: []string{"voip"},
			SLA: scheduler.SLA{MinGoodput: 1e6 / 8, P99Latency: 150 * time.Millisecond}},
	}}
	premium := &tier.Tier{Name: "premium", RevenueGB: 6.5, Classes: []tier.Class{
		{Name: "default", SLA: scheduler.SLA{MinGoodput: 20e6 / 8, P99Latency: 250 * time.Millisecond, Survive: 1}},
		{Name: "voice", Ports: []tier.PortRange{{Lo: 5060, Hi: 5061}, {Lo: 10000, Hi: 20000}},
			SLA: scheduler.SLA{P99Latency: 100 * time.Millisecond, ResidualLoss: 0.0001, Survive: 1, Deadline: 150 * time.Millisecond, MaxJitter: 30 * time.Millisecond}},
		{Name: "backup", Users: []string{"nightly", "rsync"}, SLA: scheduler.SLA{MaxCostGB: 0.5}},
	}}
	return &tier.Policy{
		Tiers:       map[string]*tier.Tier{"basic": basic, "premium": premium},
		Tokens:      map[string]string{"secret-token-1": "basic", "secret-token-2": "premium"},
		DefaultTier: "basic",
		Prices:      map[string]float64{"cellular": 4, "satellite": 1},
		MaxSessions: map[string]int{"premium": 16},
	}
}

func TestLoadExample(t *testing.T) {
	want := example()
	for _, name := range []string{"policy.toml", "policy.yaml"} {
		p, err := Load(filepath.Join("testdata", name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", name, p, want)
			for k := range want.Tiers {
				t.Logf("%s: got %v", k, p.Tiers[k])
			}
		}
	}
}

func TestLoadExtension(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("testdata", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p.yml", "p.YAML"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"p.json", `unknown extension ".json"`},
		{"policy", "no extension"},
		{"missing.toml", "no such file"},
	} {
		path := filepath.Join(dir, tc.name)
		if tc.name != "missing.toml" {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := Parse(data, "json"); err == nil {
		t.Error("Parse with format json: no error")
	}
}

// Both formats fill the same Policy from the same keys, including bare
// integer ports and an empty map normalised to non-nil.
func TestParseFormatsAgree(t *testing.T) {
	tomlSrc := `
[tiers.a]
[[tiers.a.classes]]
name = "web"
ports = [80, "443", "8000-8001"]
`
	yamlSrc := `
tiers:
  a:
    classes:
      - name: web
        ports: [80, "443", 8000-8001]
`
	pt, err := Parse([]byte(tomlSrc), "toml")
	if err != nil {
		t.Fatal(err)
	}
	py, err := Parse([]byte(yamlSrc), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pt, py) {
		t.Errorf("toml %+v\nyaml %+v", pt.Tiers["a"], py.Tiers["a"])
	}
	if pt.Tokens == nil || pt.Prices == nil {
		t.Error("Parse left a map nil")
	}
	want := []tier.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}, {Lo: 8000, Hi: 8001}}
	if got := pt.Tiers["a"].Classes[1].Ports; !reflect.DeepEqual(got, want) {
		t.Errorf("ports = %v, want %v", got, want)
	}
	if d := pt.Tiers["a"].Classes[0]; d.Name != "default" || d.Ports != nil || d.Users != nil {
		t.Errorf("default class = %+v", d)
	}
}

// base is a valid policy the error cases add to; its tier is "basic".
const base = `
[tiers.basic]
revenue_usd_per_gb = 2.0
`

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", 65)
	var manyClasses, manyPorts, bigTier strings.Builder
	for i := range 16 {
		fmt.Fprintf(&manyClasses, "[[tiers.basic.classes]]\nname = \"c%d\"\nports = [\"%d\"]\n", i, i+1)
	}
	manyPorts.WriteString("[[tiers.basic.classes]]\nname = \"c\"\nports = [")
	for i := range 33 {
		fmt.Fprintf(&manyPorts, "\"%d\",", i+1)
	}
	manyPorts.WriteString("]\n")
	for i := range 6 {
		fmt.Fprintf(&bigTier, "[[tiers.basic.classes]]\nname = \"c%d\"\nports = [", i)
		for j := range 32 {
			fmt.Fprintf(&bigTier, "\"%d\",", 100*i+j+1)
		}
		bigTier.WriteString("]\n")
	}
	for _, tc := range []struct {
		name, src, field string
	}{
		// structure
		{"no tiers", `default_tier = ""`, "tiers"},
		{"empty file", ``, "tiers"},
		{"unknown top key", base + "\n[limits]\nx = 1\n", "limits"},
		{"unknown tier key", base + "colour = 'red'\n", "tiers.basic.colour"},
		{"unknown class key", base + "[[tiers.basic.classes]]\nname = 'a'\nusers = ['u']\nport = 22\n", "tiers.basic.classes.port"},
		{"default tier missing", `default_tier = "gold"` + "\n" + base, "default_tier"},
		{"token to missing tier", base + "[tokens]\nt1 = 'gold'\n", "tokens"},
		{"empty token", base + "[tokens]\n'' = 'basic'\n", "tokens"},
		{"unknown medium", base + "[prices]\nfibre = 1.0\n", "prices.fibre"},
		{"negative price", base + "[prices]\ncellular = -1.0\n", "prices.cellular"},
		{"infinite price", base + "[prices]\nsatellite = inf\n", "prices.satellite"},
		{"nan price", base + "[prices]\nwifi = nan\n", "prices.wifi"},
		// tier
		{"tier name with space", "[tiers.'a b']\n", "tiers.a b"},
		{"tier name too long", "[tiers." + long + "]\n", "tiers." + long},
		{"tier name not ascii", "[tiers.'caf\u00e9']\n", "tiers.caf\u00e9"},
		{"negative revenue", "[tiers.basic]\nrevenue_usd_per_gb = -2.0\n", "tiers.basic.revenue_usd_per_gb"},
		{"infinite revenue", "[tiers.basic]\nrevenue_usd_per_gb = inf\n", "tiers.basic.revenue_usd_per_gb"},
		{"nan revenue", "[tiers.basic]\nrevenue_usd_per_gb = nan\n", "tiers.basic.revenue_usd_per_gb"},
		{"negative goodput", base + "min_goodput_mbps = -1\n", "tiers.basic.min_goodput_mbps"},
		{"huge goodput", base + "min_goodput_mbps = 1.7e308\n", "tiers.basic.min_goodput_mbps"},
		{"negative latency", base + "p99_latency_ms = -1\n", "tiers.basic.p99_latency_ms"},
		{"huge latency", base + "p99_latency_ms = 1e13\n", "tiers.basic.p99_latency_ms"},
		{"nan latency", base + "p99_latency_ms = nan\n", "tiers.basic.p99_latency_ms"},
		{"negative loss", base + "residual_loss = -0.1\n", "tiers.basic.residual_loss"},
		{"loss of one", base + "residual_loss = 1\n", "tiers.basic.residual_loss"},
		{"negative survive", base + "survive_paths = -1\n", "tiers.basic.survive_paths"},
		{"survive eight", base + "survive_paths = 8\n", "tiers.basic.survive_paths"},
		{"negative cost", base + "max_cost_usd_per_gb = -1\n", "tiers.basic.max_cost_usd_per_gb"},
		{"negative deadline", base + "deadline_ms = -1\n", "tiers.basic.deadline_ms"},
		{"huge deadline", base + "deadline_ms = 1e13\n", "tiers.basic.deadline_ms"},
		{"nan jitter", base + "max_jitter_ms = nan\n", "tiers.basic.max_jitter_ms"},
		{"zero sessions", base + "max_sessions = 0\n", "tiers.basic.max_sessions"},
		{"negative sessions", base + "max_sessions = -3\n", "tiers.basic.max_sessions"},
		{"too many sessions", base + "max_sessions = 1048577\n", "tiers.basic.max_sessions"},
		{"infinite cost", base + "max_cost_usd_per_gb = -inf\n", "tiers.basic.max_cost_usd_per_gb"},
		{"too many classes", base + manyClasses.String(), "tiers.basic.classes"},
		{"too big to send", base + bigTier.String(), "tiers.basic"},
		// class
		{"class without name", base + "[[tiers.basic.classes]]\nports = ['22']\n", "tiers.basic.classes[0].name"},
		{"class named default", base + "[[tiers.basic.classes]]\nname = 'default'\nports = ['22']\n", "tiers.basic.classes[0].name"},
		{"class name too long", base + "[[tiers.basic.classes]]\nname = '" + long + "'\nports = ['22']\n", "tiers.basic.classes[0].name"},
		{"class name with tab", base + "[[tiers.basic.classes]]\nname = \"a\\tb\"\nports = ['22']\n", "tiers.basic.classes[0].name"},
		{"class name repeated", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['22']\n[[tiers.basic.classes]]\nname = 'a'\nusers = ['u']\n", "tiers.basic.classes[1].name"},
		{"class matching all", base + "[[tiers.basic.classes]]\nname = 'a'\n", "tiers.basic.classes[0]"},
		{"class with empty lists", base + "[[tiers.basic.classes]]\nname = 'a'\nports = []\nusers = []\n", "tiers.basic.classes[0]"},
		{"port zero", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['0']\n", "tiers.basic.classes[0].ports[0]"},
		{"port too big", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['22', '65536']\n", "tiers.basic.classes[0].ports[1]"},
		{"port range reversed", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['90-80']\n", "tiers.basic.classes[0].ports[0]"},
		{"port range open", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['80-']\n", "tiers.basic.classes[0].ports[0]"},
		{"port with sign", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['+80']\n", "tiers.basic.classes[0].ports[0]"},
		{"port with space", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['80 - 90']\n", "tiers.basic.classes[0].ports[0]"},
		{"port integer zero", base + "[[tiers.basic.classes]]\nname = 'a'\nports = [0]\n", "tiers.basic.classes[0].ports[0]"},
		{"port integer negative", base + "[[tiers.basic.classes]]\nname = 'a'\nports = [-22]\n", "tiers.basic.classes[0].ports[0]"},
		{"too many ports", base + manyPorts.String(), "tiers.basic.classes[0].ports"},
		{"empty user", base + "[[tiers.basic.classes]]\nname = 'a'\nusers = ['ok', '']\n", "tiers.basic.classes[0].users[1]"},
		{"long user", base + "[[tiers.basic.classes]]\nname = 'a'\nusers = ['" + strings.Repeat("u", 256) + "']\n", "tiers.basic.classes[0].users[0]"},
		{"too many users", base + "[[tiers.basic.classes]]\nname = 'a'\nusers = [" + strings.Repeat("'u',", 33) + "]\n", "tiers.basic.classes[0].users"},
		{"class negative latency", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['22']\np99_latency_ms = -5\n", "tiers.basic.classes[0].p99_latency_ms"},
		{"class loss of one", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['22']\n[[tiers.basic.classes]]\nname = 'b'\nports = ['23']\nresidual_loss = 1.5\n", "tiers.basic.classes[1].residual_loss"},
		{"class survive", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['22']\nsurvive_paths = 9\n", "tiers.basic.classes[0].survive_paths"},
		{"class nan goodput", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['22']\nmin_goodput_mbps = nan\n", "tiers.basic.classes[0].min_goodput_mbps"},
		{"class negative cost", base + "[[tiers.basic.classes]]\nname = 'a'\nports = ['22']\nmax_cost_usd_per_gb = -0.5\n", "tiers.basic.classes[0].max_cost_usd_per_gb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "toml")
			var fe *fielderr.Error
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a FieldError on %s", err, tc.field)
			}
			if msg := err.Error(); msg != strings.ToLower(msg[:1])+msg[1:] || !strings.HasPrefix(msg, tc.field+": ") {
				t.Errorf("message %q: want %q then a lowercase reason", msg, tc.field+": ")
			}
		})
	}
}

// Errors that are not about one field's value, in either format.
func TestParseSyntaxErrors(t *testing.T) {
	for _, tc := range []struct {
		name, format, src, want string
	}{
		{"toml syntax", "toml", "[tiers.basic\n", "line 2"},
		{"toml type", "toml", "[tiers.basic]\nrevenue_usd_per_gb = 'two'\n", "revenue_usd_per_gb"},
		{"toml port type", "toml", base + "[[tiers.basic.classes]]\nname = 'a'\nports = [1.5]\n", "a port must be a string or an integer"},
		{"toml duplicate key", "toml", base + "revenue_usd_per_gb = 3.0\n", "revenue_usd_per_gb"},
		{"yaml unknown key", "yaml", "tiers:\n  basic:\n    colour: red\n", "field colour not found"},
		{"yaml unknown class key", "yaml", "tiers:\n  basic:\n    classes:\n      - name: a\n        port: 22\n", "field port not found"},
		{"yaml syntax", "yaml", "tiers: [\n", "yaml"},
		{"yaml type", "yaml", "tiers:\n  basic:\n    survive_paths: many\n", "line 3"},
		{"yaml port type", "yaml", "tiers:\n  basic:\n    classes:\n      - name: a\n        ports: [1.5]\n", "a port must be a string or an integer"},
		{"yaml two documents", "yaml", "tiers:\n  basic: {}\n---\ntiers: {}\n", "more than one yaml document"},
		{"yaml duplicate key", "yaml", "tiers:\n  basic: {}\n  basic: {}\n", "already defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), tc.format)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "tier.file") || strings.Contains(err.Error(), "policyfile.")) {
				t.Errorf("error %q names a Go type", err)
			}
		})
	}
}

// YAML names the same fields as TOML in validation errors.
func TestParseYAMLFieldErrors(t *testing.T) {
	for _, tc := range []struct{ src, field string }{
		{"tiers: {}\n", "tiers"},
		{"", "tiers"},
		{"tiers:\n  basic:\n    p99_latency_ms: .nan\n", "tiers.basic.p99_latency_ms"},
		{"tiers:\n  basic:\n    classes:\n      - name: a\n        ports: ['1-0']\n", "tiers.basic.classes[0].ports[0]"},
		{"tiers:\n  basic:\ntokens:\n  t: gold\n", "tokens"},
		{"tiers:\n  basic:\n    max_sessions: 0\n", "tiers.basic.max_sessions"},
	} {
		_, err := Parse([]byte(tc.src), "yaml")
		var fe *fielderr.Error
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%q: got %v, want a FieldError on %s", tc.src, err, tc.field)
		}
	}
}

// max_sessions is the tier's cap for each of its tokens; a tier without it
// leaves the cap to the concentrator, and so does a token without a tier.
func TestMaxSessionsFor(t *testing.T) {
	for _, format := range []string{"toml", "yaml"} {
		src := "[tiers.gold]\nmax_sessions = 3\n[tiers.tin]\n[tokens]\ng = 'gold'\nt = 'tin'\n"
		if format == "yaml" {
			src = "tiers:\n  gold:\n    max_sessions: 3\n  tin: {}\ntokens:\n  g: gold\n  t: tin\n"
		}
		p, err := Parse([]byte(src), format)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		for tok, want := range map[string]int{"g": 3, "t": 0, "nobody": 0} {
			if got := p.MaxSessionsFor(tok); got != want {
				t.Errorf("%s: MaxSessionsFor(%q) = %d, want %d", format, tok, got, want)
			}
		}
		if !reflect.DeepEqual(p.MaxSessions, map[string]int{"gold": 3}) {
			t.Errorf("%s: MaxSessions = %v", format, p.MaxSessions)
		}
	}
	p, err := Parse([]byte(base), "toml")
	if err != nil || p.MaxSessions == nil {
		t.Errorf("no max_sessions: %v, MaxSessions %v (want an empty map)", err, p.MaxSessions)
	}
}

// A token is a secret: errors about it do not repeat it.
func TestParseErrorHidesToken(t *testing.T) {
	_, err := Parse([]byte(base+"[tokens]\nhunter2 = 'gold'\n"), "toml")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("got %v", err)
	}
}

// Negative zero is zero: it must not reach the wire, which refuses a set
// sign bit.
func TestParseNegativeZero(t *testing.T) {
	p, err := Parse([]byte("[tiers.z]\nrevenue_usd_per_gb = -0.0\nmin_goodput_mbps = -0.0\n[prices]\nwifi = -0.0\n"), "toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Tiers["z"].AppendBinary(nil); err != nil {
		t.Error(err)
	}
}

// Every tier Parse returns encodes, and decodes to itself.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "policy.toml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add(base)
	f.Add(base + "[[tiers.basic.classes]]\nname = 'a'\nports = [22, '80-90']\nusers = ['x']\n")
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Parse([]byte(src), "toml")
		if err != nil {
			return
		}
		for name, tr := range p.Tiers {
			b, err := tr.AppendBinary(nil)
			if err != nil {
				t.Fatalf("tier %s from Parse does not encode: %v", name, err)
			}
			back, err := tier.ParseBinary(b)
			if err != nil {
				t.Fatalf("tier %s: %v", name, err)
			}
			if !reflect.DeepEqual(back, tr) {
				t.Fatalf("tier %s: round trip\n%+v\n%+v", name, back, tr)
			}
		}
	})
}

// A class's real-time terms reach its SLA.
func TestRealtimeTerms(t *testing.T) {
	p, err := Parse([]byte("[tiers.rt]\nrevenue_usd_per_gb = 3\n[[tiers.rt.classes]]\nname = 'voice'\nusers = ['voip']\ndeadline_ms = 150\nmax_jitter_ms = 30.5\nresidual_loss = 0.001\nsurvive_paths = 1\n"), "toml")
	if err != nil {
		t.Fatal(err)
	}
	s := p.Tiers["rt"].Classes[1].SLA
	if s.Deadline != 150*time.Millisecond || s.MaxJitter != 30500*time.Microsecond || s.Survive != 1 {
		t.Fatalf("%+v", s)
	}
}
