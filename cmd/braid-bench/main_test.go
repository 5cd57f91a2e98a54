package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"braid/bench"
	"braid/internal/accounting"
	"braid/internal/cmdtest"
)

// TestMain checks that a run stops all it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs the command with args in a goroutine.
func start(args ...string) *cmdtest.Run { return cmdtest.Start(run, args...) }

// TestHelp: -h prints the usage and every flag, each default once, on
// stdout, and exits 0.
func TestHelp(t *testing.T) {
	r := start("-h")
	if code := r.Wait(t, 10*time.Second); code != 0 || r.Stderr.String() != "" {
		t.Fatalf("exit %d, stderr %q", code, r.Stderr)
	}
	out := r.Stdout.String()
	for _, want := range []string{"Usage: braid-bench --scenario", "--scenario NAME|FILE", "--traces DIR", "(default ../shared/traces)"} {
		if !strings.Contains(out, want) {
			t.Errorf("-h does not show %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Count(line, "(default") > 1 {
			t.Errorf("-h: %q says its default twice", line)
		}
	}
}

func TestBenchList(t *testing.T) {
	r := start("--list")
	if code := r.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d: %s", code, r.Stderr)
	}
	for _, name := range []string{"hetero", "failover", "lossy", "bursty", "lte", "cost-sla", "cellular", "loopback"} {
		if !strings.Contains(r.Stdout.String(), name+" ") {
			t.Errorf("--list does not show %s:\n%s", name, r.Stdout)
		}
	}
}

// TestBenchUsageErrors: each mistake is one line naming what is wrong,
// and exit status 2.
func TestBenchUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[[paths]]\nname = \"a\"\nrate_mbps = 0\n[[workloads]]\ntype = \"bulk\"\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "hetero"}, "--out is required"},
		{[]string{"--scenario", "no-such", "--out", dir}, `scenario "no-such": no such file or built-in scenario`},
		{[]string{"--scenario", bad, "--out", dir}, "scenario " + bad + ": paths[0].rate_mbps: must be > 0"},
		{[]string{"--scenario", "hetero", "--out", dir, "--systems", "weighted,fastest"}, `"fastest" is not a system`},
		{[]string{"--scenario", "../../bench/testdata/tiny.toml", "--out", dir, "--duration", "500ms"}, "not longer than the scenario's warm-up"},
		{[]string{"--scenario", "hetero", "--out", dir, "--duration", "0s"}, "--duration: must be > 0"},
		{[]string{"--scenario", "cellular", "--out", dir, "--traces", dir}, `paths[1].down.trace: trace file "TMobile-LTE-short.down" not found`},
		{[]string{"--seed", "x"}, "flag -seed: not an integer"},
		{[]string{"--systems", "weighted"}, "--scenario is required"},
		{[]string{"bench", "--list"}, `unexpected argument "bench"`},
		{[]string{"--scenario", "hetero", "--out", dir, "--log-level", "loud"}, `--log-level: "loud" is not debug, info, warn or error`},
		{[]string{"--scenario", "hetero", "--out", dir, "--accounting", "mysql://db/x"}, `--accounting: accounting DSN mysql://db/x: unknown scheme`},
	} {
		r := start(c.args...)
		code := r.Wait(t, 10*time.Second)
		msg := r.Stderr.String()
		if code != 2 || !strings.Contains(msg, c.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("braid-bench %v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, msg, c.want)
		}
	}
}

// TestBenchRun runs a tiny scenario from a file through the command and
// checks what it writes; TestMain checks that it left nothing running.
func TestBenchRun(t *testing.T) {
	out := t.TempDir()
	acct := filepath.Join(out, "acct.db")
	r := start("--scenario", "../../bench/testdata/tiny.toml", "--duration", "2s",
		"--systems", "weighted,limit", "--seed", "7", "--out", out, "--accounting", acct)
	if code := r.Wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d: %s", code, r.Stderr)
	}
	for _, f := range []string{"results.json", "report.md", "goodput-weighted.png", "cost-goodput.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(r.Stdout.String(), "weighted") || !strings.Contains(r.Stdout.String(), "wrote "+out) {
		t.Errorf("stdout:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stderr.String(), "bench tiny [1/2] weighted") {
		t.Errorf("no progress on stderr:\n%s", r.Stderr)
	}
	data, _ := os.ReadFile(filepath.Join(out, "results.json"))
	if !strings.Contains(string(data), `"seed": 7`) || !strings.Contains(string(data), `"duration_s": 2`) {
		t.Errorf("results.json:\n%s", data)
	}
	// --accounting: the braid system's concentrator billed every path
	// the bench saw carry bytes, at least what the bench counted (the
	// bill also holds the session's setup, before the bench's first
	// reading).
	var res bench.Results
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	db, err := accounting.Open(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := db.Report(context.Background(), accounting.Query{By: accounting.ByPath, Concentrator: "tiny/weighted"})
	if err != nil {
		t.Fatal(err)
	}
	billed := map[string]int64{}
	for _, l := range rep.Lines {
		billed[l.Key] = l.BytesUp + l.BytesDown
	}
	for _, s := range res.Systems {
		if s.Name != "weighted" {
			continue
		}
		for p, n := range s.BytesPerPath {
			if n > 0 && billed[p] < n*99/100 {
				t.Errorf("path %s: billed %d bytes, the bench counted %d", p, billed[p], n)
			}
		}
	}
	if len(billed) == 0 {
		t.Error("no records")
	}
	// Cut at the window the bench measured in, the bill is the bench's
	// bytes, but for what the emulated links held in flight at its ends.
	for _, s := range res.Systems {
		if s.Name != "weighted" {
			continue
		}
		if s.AccountingWindow == nil {
			t.Fatal("results.json has no accounting_window")
		}
		since, err1 := time.Parse(time.RFC3339Nano, s.AccountingWindow.Since)
		until, err2 := time.Parse(time.RFC3339Nano, s.AccountingWindow.Until)
		if err1 != nil || err2 != nil || !since.Before(until) {
			t.Fatalf("accounting_window %+v: %v %v", s.AccountingWindow, err1, err2)
		}
		rep, err := db.Report(context.Background(), accounting.Query{By: accounting.ByPath, Concentrator: "tiny/weighted", Since: since, Until: until})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range rep.Lines {
			n, b := s.BytesPerPath[l.Key], l.BytesUp+l.BytesDown
			t.Logf("path %s: %d bytes billed in the window, %d counted by the bench", l.Key, b, n)
			if n > 100<<10 && (b > n+n/50 || b < n-n/50) {
				t.Errorf("path %s: %d bytes billed in the window, the bench counted %d (more than 2%% apart)", l.Key, b, n)
			}
		}
	}
}
