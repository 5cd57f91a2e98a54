package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that a run stops all it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer that run's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is one run() in a goroutine.
type running struct {
	sig            chan os.Signal
	code           chan int
	stdout, stderr *syncBuffer
}

func start(args ...string) *running {
	r := &running{sig: make(chan os.Signal, 1), code: make(chan int, 1), stdout: new(syncBuffer), stderr: new(syncBuffer)}
	go func() { r.code <- run(args, r.stdout, r.stderr, r.sig) }()
	return r
}

// wait returns run's exit status, failing the test if it takes too long.
func (r *running) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case code := <-r.code:
		return code
	case <-time.After(within):
		var stacks bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("still running after %v; stderr:\n%s\ngoroutines:\n%s", within, r.stderr, &stacks)
		return -1
	}
}

// TestHelp: -h prints the usage and every flag, each default once, on
// stdout, and exits 0.
func TestHelp(t *testing.T) {
	r := start("-h")
	if code := r.wait(t, 10*time.Second); code != 0 || r.stderr.String() != "" {
		t.Fatalf("exit %d, stderr %q", code, r.stderr)
	}
	out := r.stdout.String()
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
		{[]string{"bench", "--list"}, `unexpected argument "bench"`},
		{[]string{"--scenario", "hetero", "--out", dir, "--log-level", "loud"}, `--log-level: "loud" is not debug, info, warn or error`},
	} {
		r := start(c.args...)
		code := r.wait(t, 10*time.Second)
		msg := r.stderr.String()
		if code != 2 || !strings.Contains(msg, c.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("braid-bench %v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, msg, c.want)
		}
	}
}

// TestBenchRun runs a tiny scenario from a file through the command and
// checks what it writes; TestMain checks that it left nothing running.
func TestBenchRun(t *testing.T) {
	out := t.TempDir()
	r := start("--scenario", "../../bench/testdata/tiny.toml", "--duration", "2s",
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
