// Package deptest holds the dependency rules of docs/ARCHITECTURE.md as a
// test, so a wrong import fails CI instead of slowly eroding the layers:
// cmd -> client | server | bench -> transport -> scheduler. Every package
// of the module has a rule (TestLayers lists them with go list braid/...),
// and only the edge links the config-file parsers and the plotting
// library.
package deptest

import (
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestSchedulerDoesNoIO: the scheduler is pure policy; it imports nothing
// that reaches the operating system itself (fmt does, underneath, for its
// Print functions, which the scheduler does not call).
func TestSchedulerDoesNoIO(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", "braid/scheduler").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range strings.Fields(string(out)) {
		switch imp {
		case "os", "os/exec", "net", "net/http", "syscall", "io/ioutil", "log", "log/slog":
			t.Errorf("braid/scheduler imports %s", imp)
		}
	}
}

// rule is what one package of the module may depend on. Dependencies are
// those of the package's own code, tests excluded (go list's Deps).
type rule struct {
	// imports, when not nil, lists every package of the module that the
	// package may import directly; an empty list means none.
	imports []string
	// not lists what the package must not depend on, even indirectly: an
	// import path, or PATH/... for PATH and everything under it.
	not []string
	// files allows the config-file parsers (TOML, YAML); plots allows the
	// plotting library; prom allows Prometheus's client. Only the edge
	// links them.
	files, plots, prom bool
}

// The config-file parsers and the plotting library: each entry is PATH/...
var (
	fileParsers = []string{"github.com/BurntSushi/toml/...", "go.yaml.in/yaml/..."}
	plotting    = []string{"gonum.org/v1/plot/..."}
	prometheus  = []string{"github.com/prometheus/..."}
	// databases are the accounting database's drivers and database/sql.
	databases = []string{"database/sql", "modernc.org/...", "github.com/jackc/..."}
)

// never are packages nothing else in the module depends on: the binaries
// and the packages that hold only tests.
var never = []string{
	"braid/cmd/braid", "braid/cmd/braid-bench",
	"braid/internal/e2e", "braid/internal/nstest", "braid/internal/deptest", "braid/internal/cmdtest",
	"braid/internal/pgtest",
}

// rules has one entry for every package of the module; a package without
// one fails TestLayers, so a new package must be given its rule.
var rules = map[string]rule{
	// The binaries: flags and files become Config structs here.
	"braid/cmd/braid": {files: true, prom: true,
		// The proxy links no bench harness and no plots; the demo's
		// emulated paths are bench/emu, which plots nothing.
		not: []string{"braid/bench", "github.com/chromedp/..."}},
	"braid/cmd/braid-bench": {files: true, plots: true},

	"braid/bench": {files: true, plots: true}, // scenarios are TOML files; reports have plots
	"braid/bench/emu": {imports: []string{"braid/internal/notify"},
		not: []string{"braid/transport", "braid/client", "braid/server"}},

	"braid/client": {not: slices.Concat([]string{"braid/server", "braid/bench/...", "braid/internal/policyfile", "braid/internal/destpolicy",
		"braid/internal/accounting"}, databases)},
	"braid/server": {not: slices.Concat([]string{"braid/client", "braid/bench/...", "braid/internal/policyfile",
		"braid/internal/accounting"}, databases)},

	// transport carries tiers but links no file parser and no plots
	// (files and plots are false).
	"braid/transport": {not: slices.Concat([]string{"braid/client", "braid/server", "braid/bench/...", "braid/internal/policyfile", "braid/internal/status",
		"braid/internal/accounting"}, databases)},
	// The wire codec and the path monitor and pacer: rooms of transport
	// that know nothing of sessions (the codec reads fields with wirebuf;
	// the monitor and pacer are pure).
	"braid/transport/wire":    {imports: []string{"braid/internal/wirebuf"}},
	"braid/transport/pathmon": {imports: []string{}},
	// Packet coding beneath quic-go knows nothing of sessions, tiers or plans.
	"braid/transport/pktfec": {not: []string{"braid/transport", "braid/scheduler", "braid/internal/tier", "braid/client", "braid/server", "braid/bench/..."}},
	"braid/scheduler":        {imports: []string{}, not: slices.Concat([]string{"braid/transport", "braid/client", "braid/server", "braid/bench", "net"}, databases)},

	// Tiers and their wire form, carried by transport: no file formats.
	"braid/internal/tier": {imports: []string{"braid/scheduler", "braid/internal/wirebuf", "braid/internal/fielderr"}},
	// The policy file, read at the edge into a tier.Policy.
	"braid/internal/policyfile": {imports: []string{"braid/internal/tier", "braid/scheduler", "braid/internal/fielderr"}, files: true},
	// The status document, built from transport's counters, shared by
	// both ends.
	"braid/internal/status": {imports: []string{"braid/transport", "braid/transport/wire", "braid/transport/pathmon"}, not: []string{"braid/client", "braid/server"}},
	// Prometheus metrics over the status document's types, linked by
	// the edge only: transport, scheduler, client and server never see
	// client_golang.
	"braid/internal/metrics": {imports: []string{"braid/internal/status", "braid/internal/netx"}, prom: true,
		not: []string{"braid/client", "braid/server"}},
	// Accounting's records are plain values; the accounting database
	// (its drivers) is linked by the edge and the bench only: transport,
	// scheduler, client and server never see a database driver.
	"braid/internal/usage": {imports: []string{}},
	"braid/internal/accounting": {imports: []string{"braid/internal/usage"},
		not: []string{"braid/transport", "braid/client", "braid/server", "braid/scheduler"}},
	// The live web dashboard over the same snapshot, linked by the edge
	// only; chromedp, which drives it in tests, is a test dependency.
	"braid/internal/dashboard": {imports: []string{"braid/internal/status", "braid/transport", "braid/internal/netx"},
		not: []string{"braid/client", "braid/server", "github.com/chromedp/..."}},
	// Leaves: pools, codecs, sockets, checks, the field error and
	// wake-ups, which import nothing of braid.
	"braid/internal/bufpool":  {imports: []string{}},
	"braid/internal/fielderr": {imports: []string{}},
	"braid/internal/notify":   {imports: []string{}},
	"braid/internal/wirebuf":  {imports: []string{}},
	"braid/internal/socks5":   {imports: []string{}},
	// The HTTP proxy front end: it parses HTTP and relays, and opens its
	// flows through an interface, knowing nothing of sessions.
	"braid/internal/httpproxy": {imports: []string{"braid/internal/socks5", "braid/internal/relay"},
		not: []string{"braid/transport", "braid/client", "braid/server"}},
	"braid/internal/pki":   {imports: []string{}},
	"braid/internal/netx":  {imports: []string{}},
	"braid/internal/relay": {imports: []string{}},
	"braid/internal/stunx": {imports: []string{}},
	// Watchers whose loops are woken with notify.
	"braid/internal/destpolicy": {imports: []string{"braid/internal/notify"}},
	"braid/internal/ifwatch":    {imports: []string{"braid/internal/notify"}},
	// Tests only: their code outside _test.go files imports nothing.
	"braid/internal/e2e":     {imports: []string{}},
	"braid/internal/cmdtest": {imports: []string{}}, // for tests only
	"braid/internal/pgtest":  {imports: []string{}}, // for tests only: throwaway PostgreSQL servers
	"braid/internal/cliflag": {imports: []string{}},
	"braid/internal/nstest":  {imports: []string{}},
	"braid/internal/deptest": {imports: []string{}},
}

// pkgInfo is one package as go list describes it.
type pkgInfo struct {
	imports, deps []string
}

// listModule returns every package of the module with its direct imports
// and its dependencies (tests excluded).
func listModule(t *testing.T) map[string]pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", "braid/...").Output()
	if err != nil {
		t.Fatalf("go list braid/...: %v", err)
	}
	pkgs := map[string]pkgInfo{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 {
			t.Fatalf("go list: %q", line)
		}
		pkgs[f[0]] = pkgInfo{strings.Fields(f[1]), strings.Fields(f[2])}
	}
	return pkgs
}

// matches reports whether pattern (a path, or PATH/...) names pkg.
func matches(pattern, pkg string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pkg == pattern
}

func TestLayers(t *testing.T) {
	pkgs := listModule(t)
	if len(pkgs) < len(rules)/2 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, pkg := range slices.Sorted(maps.Keys(pkgs)) {
		if _, ok := rules[pkg]; !ok {
			t.Errorf("%s has no rule in internal/deptest: say what it may depend on", pkg)
		}
	}
	// A rule about a package that does not exist checks nothing: a rule
	// left behind by a move, or a misspelt name.
	known := func(p string) bool {
		for q := range pkgs {
			if matches(p, q) {
				return true
			}
		}
		return !strings.HasPrefix(p, "braid/") && p != "braid"
	}
	for pkg, r := range rules {
		if _, ok := pkgs[pkg]; !ok {
			t.Errorf("rule for %s, which go list does not find", pkg)
		}
		for _, p := range slices.Concat(r.imports, r.not) {
			if !known(p) {
				t.Errorf("rule for %s names %s, which go list does not find", pkg, p)
			}
		}
	}

	for _, pkg := range slices.Sorted(maps.Keys(pkgs)) {
		info := pkgs[pkg]
		r, ok := rules[pkg]
		if !ok {
			continue
		}
		not := slices.Clone(r.not)
		if !r.files {
			not = append(not, fileParsers...)
		}
		if !r.plots {
			not = append(not, plotting...)
		}
		if !r.prom {
			not = append(not, prometheus...)
		}
		for _, n := range never {
			if n != pkg {
				not = append(not, n)
			}
		}
		for _, p := range not {
			// One error per forbidden package: the first dependency
			// it names is enough to find the import.
			if i := slices.IndexFunc(info.deps, func(d string) bool { return matches(p, d) }); i >= 0 {
				t.Errorf("%s depends on %s", pkg, info.deps[i])
			}
		}
		if r.imports != nil {
			for _, imp := range info.imports {
				if (imp == "braid" || strings.HasPrefix(imp, "braid/")) && !slices.Contains(r.imports, imp) {
					t.Errorf("%s imports %s; its rule allows only %v", pkg, imp, r.imports)
				}
			}
		}
	}
}
