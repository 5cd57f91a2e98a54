package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestServerLimits checks the session caps: their defaults, the flags,
// the config file's keys, flags over the file, and each mistake as one
// usage line naming the flag.
func TestServerLimits(t *testing.T) {
	cert, key, _ := keyFiles(t)
	base := []string{"--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "a"}
	args := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }
	file := writeFile(t, "server.toml", "max_sessions = 300\nmax_sessions_per_token = 3\n")
	zero := writeFile(t, "zero.toml", "max_sessions_per_token = 0\n")
	word := writeFile(t, "word.toml", "max_sessions = \"many\"\n")

	for _, tc := range []struct {
		name       string
		args       []string
		total, per int
	}{
		{"defaults", args(), 1024, 8},
		{"flags", args("--max-sessions", "100", "--max-sessions-per-token", "2"), 100, 2},
		{"file", args("--config", file), 300, 3},
		{"flags over file", args("--config", file, "--max-sessions-per-token", "5"), 300, 5},
		{"one flag over file", args("--config", file, "--max-sessions", "7"), 7, 3},
	} {
		cfg, err := parseServer(tc.args, io.Discard)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if cfg.MaxSessions != tc.total || cfg.MaxSessionsPerToken != tc.per {
			t.Errorf("%s: max sessions %d, per token %d; want %d, %d",
				tc.name, cfg.MaxSessions, cfg.MaxSessionsPerToken, tc.total, tc.per)
		}
	}

	for _, tc := range []struct {
		args []string
		want string // the whole stderr line, or its start
	}{
		{args("--max-sessions", "0"), "braid server: --max-sessions: must be at least 1"},
		{args("--max-sessions", "-5"), "braid server: --max-sessions: must be at least 1"},
		{args("--max-sessions-per-token", "0"), "braid server: --max-sessions-per-token: must be at least 1"},
		{args("--max-sessions-per-token", "two"), `braid server: invalid value "two" for flag -max-sessions-per-token`},
		{args("--config", zero), "braid server: --max-sessions-per-token: must be at least 1"},
		{args("--config", word), "braid server: --config " + word + ": toml: "},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"server"}, tc.args...), &stdout, &stderr, nil)
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) || stdout.Len() != 0 {
			t.Errorf("run %q = %d, stderr %q; want 2 and one line %q", tc.args, code, stderr.String(), tc.want)
		}
	}

	var stdout bytes.Buffer
	run([]string{"server", "-h"}, &stdout, io.Discard, nil)
	for _, want := range []string{"--max-sessions N\n", "(default 1024)", "--max-sessions-per-token N\n", "(default 8)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("server -h lacks %q", want)
		}
	}
}

// TestServerDestinationAndBudget checks --allow-own, --own-addr and
// --memory-budget, from flags and from the config file.
func TestServerDestinationAndBudget(t *testing.T) {
	cert, key, _ := keyFiles(t)
	base := []string{"--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "a"}
	args := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }
	file := writeFile(t, "server.toml", "allow_own = true\nown_addr = [\"203.0.113.9\"]\nmemory_budget = 64\n")
	cfg, err := parseServer(args(), io.Discard)
	if err != nil || cfg.AllowOwn || len(cfg.OwnAddrs) != 0 || cfg.MemoryBudget != 192<<20 {
		t.Fatalf("defaults: own %v %v budget %d, %v", cfg.AllowOwn, cfg.OwnAddrs, cfg.MemoryBudget, err)
	}
	cfg, err = parseServer(args("--allow-own", "--own-addr", "198.51.100.1", "--own-addr", "2001:db8::1", "--memory-budget", "32"), io.Discard)
	if err != nil || !cfg.AllowOwn || len(cfg.OwnAddrs) != 2 || cfg.OwnAddrs[1].String() != "2001:db8::1" || cfg.MemoryBudget != 32<<20 {
		t.Fatalf("flags: own %v %v budget %d, %v", cfg.AllowOwn, cfg.OwnAddrs, cfg.MemoryBudget, err)
	}
	cfg, err = parseServer(args("--config", file, "--memory-budget", "100"), io.Discard)
	if err != nil || !cfg.AllowOwn || len(cfg.OwnAddrs) != 1 || cfg.MemoryBudget != 100<<20 {
		t.Fatalf("file: own %v %v budget %d, %v", cfg.AllowOwn, cfg.OwnAddrs, cfg.MemoryBudget, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{args("--own-addr", "nowhere"), `braid server: --own-addr: "nowhere" is not an IP address`},
		{args("--memory-budget", "8"), "braid server: --memory-budget: 8 is outside 16..1048576 MiB"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"server"}, tc.args...), &stdout, &stderr, nil)
		if code != 2 || strings.TrimSpace(stderr.String()) != tc.want {
			t.Errorf("run %q = %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
