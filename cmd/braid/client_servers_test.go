package main

import (
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestClientServers: --server repeats, the first is the one in use, the
// others (and a config file's servers list) are where a client moves when
// one drains or cannot be reached; flags win over the file.
func TestClientServers(t *testing.T) {
	_, _, pin := keyFiles(t)
	base := []string{"--pin", pin, "--token", "t", "--status", "off"}
	file := writeFile(t, "client.toml", "server = \"10.0.0.1:4433\"\nservers = [\"10.0.0.2:4433\", \"10.0.0.3:4433\"]\n")
	for _, tc := range []struct {
		name  string
		args  []string
		first string
		more  []string
	}{
		{"one", []string{"--server", "a:1"}, "a:1", nil},
		{"several", []string{"--server", "a:1", "--server", "b:2", "--server", "c:3"}, "a:1", []string{"b:2", "c:3"}},
		{"file", []string{"--config", file}, "10.0.0.1:4433", []string{"10.0.0.2:4433", "10.0.0.3:4433"}},
		{"flags over file", []string{"--config", file, "--server", "x:9"}, "x:9", nil},
	} {
		cfg, err := parseClient(append(append([]string(nil), base...), tc.args...), io.Discard)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if cfg.Server != tc.first || !reflect.DeepEqual(cfg.MoreServers, tc.more) {
			t.Errorf("%s: server %q, more %q; want %q, %q", tc.name, cfg.Server, cfg.MoreServers, tc.first, tc.more)
		}
	}
	_, err := parseClient(append(append([]string(nil), base...), "--server", "a:1", "--server", "nope"), io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"nope" is not HOST:PORT`) {
		t.Errorf("a bad second server: %v", err)
	}
}
