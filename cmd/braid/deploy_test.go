package main

import (
	"io"
	"path/filepath"
	"testing"
	"time"
)

// The example configs in deploy/ parse, with every key they set taking
// effect: only the files they name (key, certificate, tokens,
// interfaces) are replaced by this test's own.
func TestDeployExamples(t *testing.T) {
	cert, key, _ := keyFiles(t)
	tokens := writeFile(t, "tokens", "# users\nalpha\nbeta\n")
	scfg, err := parseServer([]string{"--config", filepath.Join("..", "..", "deploy", "server.toml"),
		"--cert", cert, "--key", key, "--token-file", tokens}, io.Discard)
	if err != nil {
		t.Fatalf("deploy/server.toml: %v", err)
	}
	if scfg.Listen != "0.0.0.0:4433" || len(scfg.Tokens) != 2 || scfg.AllowPrivate || scfg.AllowOwn ||
		scfg.MaxSessions != 1024 || scfg.MaxSessionsPerToken != 8 || scfg.MemoryBudget != 192<<20 || scfg.DrainTimeout != 30*time.Second {
		t.Errorf("deploy/server.toml: %+v", scfg)
	}

	file := filepath.Join("..", "..", "deploy", "client.toml")
	var f clientFile
	if err := decodeFile(file, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Paths) != 2 {
		t.Fatalf("deploy/client.toml: %d paths, want 2", len(f.Paths))
	}
	for i, p := range f.Paths {
		if _, err := pathFromTable(i, p); err != nil {
			t.Errorf("deploy/client.toml path %d: %v", i, err)
		}
	}
	// Its interfaces are not this machine's: paths from flags instead.
	ccfg, err := parseClient([]string{"--config", file, "--token", "x", "--path", "only=any"}, io.Discard)
	if err != nil {
		t.Fatalf("deploy/client.toml: %v", err)
	}
	if ccfg.Server != "concentrator.example.net:4433" || ccfg.SOCKS != "127.0.0.1:1080" || ccfg.Status != "127.0.0.1:1081" ||
		ccfg.Transport.Policy != "weighted" || ccfg.Transport.Grace != 30*time.Second {
		t.Errorf("deploy/client.toml: %+v", ccfg)
	}
}
