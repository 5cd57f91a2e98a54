package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeygenTokens: --tokens adds distinct tokens to DIR/tokens, mode
// 0600, which braid server --token-file and braid client --token-file
// read; stdout stays the pin alone.
func TestKeygenTokens(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"keygen", "--dir", dir, "--tokens", "3"}, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("keygen = %d: %s", code, stderr.String())
	}
	if out := strings.TrimSpace(stdout.String()); !strings.HasPrefix(out, "sha256:") || strings.Contains(out, "\n") {
		t.Fatalf("stdout %q, want the pin alone", stdout.String())
	}
	path := filepath.Join(dir, "tokens")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, fi.Mode())
	}
	toks, err := readTokenFile(path)
	if err != nil || len(toks) != 3 || toks[0] == toks[1] || len(toks[0]) < 32 {
		t.Fatalf("tokens %q, %v", toks, err)
	}
	if !strings.Contains(stderr.String(), "--token-file "+path) {
		t.Errorf("no word on how to use the tokens: %q", stderr.String())
	}
	// The client takes the first.
	_, _, pin := keyFiles(t)
	cfg, err := parseClient([]string{"--server", "127.0.0.1:1", "--pin", pin, "--token-file", path}, io.Discard)
	if err != nil || cfg.Token != toks[0] {
		t.Fatalf("client token %q, %v; want %q", cfg.Token, err, toks[0])
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keygen", "--dir", t.TempDir(), "--tokens", "-1"}, "braid keygen: --tokens: -1 is outside 0..10000"},
		{[]string{"client", "--server", "127.0.0.1:1", "--pin", pin, "--token", "x", "--token-file", path}, "braid client: --token-file: give either --token or --token-file"},
		{[]string{"client", "--server", "127.0.0.1:1", "--pin", pin, "--token-file", filepath.Join(dir, "none")}, "braid client: --token-file: open "},
		{[]string{"version", "x"}, `braid version: unexpected argument "x"`},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := run(tc.args, &stdout, &stderr, nil); code != 2 || !strings.HasPrefix(stderr.String(), tc.want) {
			t.Errorf("run %q = %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestVersionAndHelp: braid version names itself and its toolchain; help
// texts print each default once, and braid status -h is help, not an
// error.
func TestVersionAndHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr, nil); code != 0 || !strings.HasPrefix(stdout.String(), "braid ") || !strings.Contains(stdout.String(), "go1.") {
		t.Fatalf("version = %d, %q %q", code, stdout.String(), stderr.String())
	}
	for _, cmd := range []string{"client", "server", "status", "keygen", "demo"} {
		stdout.Reset()
		stderr.Reset()
		if code := run([]string{cmd, "-h"}, &stdout, &stderr, nil); code != 0 || stderr.Len() != 0 {
			t.Errorf("%s -h = %d, stderr %q", cmd, code, stderr.String())
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if strings.Count(line, "(default") > 1 {
				t.Errorf("%s -h: %q says its default twice", cmd, line)
			}
			if strings.Contains(line, "(default 0)") {
				t.Errorf("%s -h: %q", cmd, line)
			}
		}
		if strings.Contains(stdout.String(), " string\n") {
			t.Errorf("%s -h: a flag's value is called just \"string\":\n%s", cmd, stdout.String())
		}
	}
}

// TestBenchMoved: braid bench, with any arguments, is one line on stderr
// that names braid-bench, and exit status 2; the help does not offer it.
func TestBenchMoved(t *testing.T) {
	for _, args := range [][]string{{"bench"}, {"bench", "--list"}, {"bench", "-h"}} {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr, nil)
		msg := stderr.String()
		if code != 2 || stdout.Len() != 0 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "go run ./cmd/braid-bench") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), msg)
		}
	}
	var stdout bytes.Buffer
	run([]string{"help"}, &stdout, io.Discard, nil)
	if strings.Contains(stdout.String(), "braid bench") || !strings.Contains(stdout.String(), "braid-bench") {
		t.Errorf("help:\n%s", stdout.String())
	}
}

// TestServerStatusFlag: braid server --status serves the status page
// docs/STATUS.md describes, from the flag or the config file.
func TestServerStatusFlag(t *testing.T) {
	cert, key, _ := keyFiles(t)
	base := []string{"--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "a"}
	cfg, err := parseServer(append(base, "--status", "127.0.0.1:9999"), io.Discard)
	if err != nil || cfg.Status != "127.0.0.1:9999" {
		t.Fatalf("--status: %q, %v", cfg.Status, err)
	}
	file := writeFile(t, "s.toml", "status = \"127.0.0.1:9998\"\n")
	cfg, err = parseServer(append(base, "--config", file), io.Discard)
	if err != nil || cfg.Status != "127.0.0.1:9998" {
		t.Fatalf("status in the file: %q, %v", cfg.Status, err)
	}
	cfg, err = parseServer(base, io.Discard)
	if err != nil || cfg.Status != "" {
		t.Fatalf("default: %q, %v", cfg.Status, err)
	}
}
