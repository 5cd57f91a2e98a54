package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBenchList(t *testing.T) {
	r := start("bench", "--list")
	if code := r.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d: %s", code, r.stderr)
	}
	for _, name := range []string{"hetero", "failover", "lossy", "bursty", "lte", "cost-sla", "cellular", "loopback"} {
		if !strings.Contains(r.stdout.String(), name+" ") {
			t.Errorf("--list does not show %s:\n%s", name, r.stdout)
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
	} {
		r := start(append([]string{"bench"}, c.args...)...)
		code := r.wait(t, 10*time.Second)
		msg := r.stderr.String()
		if code != 2 || !strings.Contains(msg, c.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("bench %v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, msg, c.want)
		}
	}
}

// TestBenchRun runs a tiny scenario from a file through the command and
// checks what it writes; TestMain checks that it left nothing running.
func TestBenchRun(t *testing.T) {
	out := t.TempDir()
	r := start("bench", "--scenario", "../../bench/testdata/tiny.toml", "--duration", "2s",
		"--systems", "weighted,limit", "--seed", "7", "--out", out)
	if code := r.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d: %s", code, r.stderr)
	}
	for _, f := range []string{"results.json", "report.md", "goodput-weighted.png", "cost-goodput.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(r.stdout.String(), "weighted") || !strings.Contains(r.stdout.String(), "wrote "+out) {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr.String(), "bench tiny [1/2] weighted") {
		t.Errorf("no progress on stderr:\n%s", r.stderr)
	}
	data, _ := os.ReadFile(filepath.Join(out, "results.json"))
	if !strings.Contains(string(data), `"seed": 7`) || !strings.Contains(string(data), `"duration_s": 2`) {
		t.Errorf("results.json:\n%s", data)
	}
}
