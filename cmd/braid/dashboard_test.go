package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"braid/internal/dashboard"
	"braid/internal/pki"
)

// TestDashboardFlagErrors: a dashboard off loopback without a token, and
// the other mistakes, end the command with one line and status 2.
func TestDashboardFlagErrors(t *testing.T) {
	cert, key, _ := keyFiles(t)
	srv := func(extra ...string) []string {
		return append([]string{"server", "--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "a"}, extra...)
	}
	cli := func(extra ...string) []string { return append([]string{"client"}, clientArgs(extra...)...) }
	empty := writeFile(t, "empty", "# no token here\n\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{srv("--dashboard", "0.0.0.0:8080"), "braid server: --dashboard: 0.0.0.0:8080 is not a loopback address: give --dashboard-token"},
		{srv("--dashboard", ":8080"), "braid server: --dashboard: :8080 is not a loopback address"},
		{srv("--dashboard", "dash.example:8080"), "braid server: --dashboard: dash.example:8080 is not a loopback address"},
		{cli("--dashboard", "192.0.2.1:8080"), "braid client: --dashboard: 192.0.2.1:8080 is not a loopback address"},
		{srv("--dashboard", "nowhere"), `braid server: --dashboard: "nowhere" is not HOST:PORT`},
		{srv("--dashboard", "127.0.0.1:http-alt-nope"), `braid server: --dashboard: "127.0.0.1:http-alt-nope": bad port`},
		{srv("--dashboard-token", "x"), "braid server: --dashboard-token is for --dashboard"},
		{cli("--dashboard", "0.0.0.0:1", "--dashboard-token", "a b"), "braid client: --dashboard-token is 1 to 255 bytes of printable ASCII without spaces, quotes, commas, semicolons or backslashes"},
		{cli("--dashboard", "0.0.0.0:1", "--dashboard-token", "a;b"), "braid client: --dashboard-token is 1 to 255 bytes of printable ASCII"},
		{srv("--dashboard", "0.0.0.0:1", "--dashboard-token-file", "/nonexistent/tok"), "braid server: --dashboard-token-file: open /nonexistent/tok: no such file or directory"},
		{srv("--dashboard", "0.0.0.0:1", "--dashboard-token-file", empty), "braid server: --dashboard-token-file: " + empty + " holds no token"},
		{srv("--dashboard", "0.0.0.0:1", "--dashboard-token-file", empty, "--dashboard-token", "x"), "braid server: --dashboard-token-file: give it or --dashboard-token, not both"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, &stdout, &stderr, nil)
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], tt.want) {
			t.Errorf("run %q = %d, stderr %q; want 2 and one line %q", tt.args, code, stderr.String(), tt.want)
		}
	}
	// A token makes any address acceptable.
	if _, err := parseServer(srv("--dashboard", "0.0.0.0:0", "--dashboard-token", "t")[1:], io.Discard); err != nil {
		t.Errorf("--dashboard 0.0.0.0:0 with a token: %v", err)
	}
}

// TestServerDashboard runs braid server --dashboard with a token file
// and reads the state document with the token.
func TestServerDashboard(t *testing.T) {
	cert, key, _ := keyFiles(t)
	addr := freePort(t, "tcp")
	tok := writeFile(t, "tok", "# the dashboard's\nd-token\n")
	r := start("server", "--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "a",
		"--dashboard", addr, "--dashboard-token-file", tok, "--log-level", "info")
	get := func(bearer string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/state", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		return http.DefaultClient.Do(req)
	}
	deadline := time.Now().Add(15 * time.Second)
	var resp *http.Response
	for {
		var err error
		if resp, err = get("d-token"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dashboard at %s: %v; stderr:\n%s", addr, err, r.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var doc dashboard.State
	err := json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || doc.Role != "concentrator" || doc.Sessions == nil {
		t.Errorf("GET /api/state with the token: %d, %v, %+v", resp.StatusCode, err, doc)
	}
	if resp, err := get(""); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/state without the token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if code := r.Stop(t); code != 0 {
		t.Errorf("server exit %d; stderr:\n%s", code, r.Stderr)
	}
	if !strings.Contains(r.Stderr.String(), "msg=dashboard url=http://"+addr+"/") {
		t.Errorf("the log does not give the dashboard's address:\n%s", r.Stderr)
	}
	if _, err := get("d-token"); err == nil {
		t.Error("the dashboard still answers after the server stopped")
	}
}

// TestDashboardConfigFile: the dashboard's keys in a --config file;
// flags win over them.
func TestDashboardConfigFile(t *testing.T) {
	cert, key, _ := keyFiles(t)
	base := []string{"--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "a"}
	open := writeFile(t, "s.toml", "dashboard = \"0.0.0.0:8081\"\n")
	if _, err := parseServer(append(base, "--config", open), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("a file's non-loopback dashboard without a token: %v", err)
	}
	tok := writeFile(t, "tok", "from-file\n")
	withTok := writeFile(t, "t.toml", "dashboard = \"0.0.0.0:8081\"\ndashboard_token_file = \""+tok+"\"\n")
	d, token, err := serverDashboard(append(base, "--config", withTok))
	if err != nil || d.addr != "0.0.0.0:8081" || token != "from-file" {
		t.Errorf("file with a token file: %+v %q %v", d, token, err)
	}
	d, token, err = serverDashboard(append(base, "--config", withTok, "--dashboard", "127.0.0.1:9", "--dashboard-token-file", "", "--dashboard-token", "flag"))
	if err != nil || d.addr != "127.0.0.1:9" || token != "flag" {
		t.Errorf("flags over the file: %+v %q %v", d, token, err)
	}
	cli := writeFile(t, "c.toml", "dashboard = \"127.0.0.1:8082\"\ndashboard_token = \"c\"\n")
	d, token, err = clientDashboard(clientArgs("--config", cli))
	if err != nil || d.addr != "127.0.0.1:8082" || token != "c" {
		t.Errorf("client file: %+v %q %v", d, token, err)
	}
	if _, err := parseClient(clientArgs("--config", cli), io.Discard); err != nil {
		t.Errorf("parseClient with the dashboard's keys: %v", err)
	}
}

// TestClientDashboard runs braid client --dashboard: it says
// "connecting" while the concentrator is down and shows the session and
// its path once it is up; a taken dashboard address ends the client
// with one line.
func TestClientDashboard(t *testing.T) {
	listen := freePort(t, "udp")
	cert, pin, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t, "tcp")
	cli := start("client", "--server", listen, "--pin", pin, "--token", "secret", "--socks", "127.0.0.1:0",
		"--status", "off", "--path", "a=127.0.0.1", "--dashboard", addr, "--log-level", "error")
	state := func(want func(*dashboard.State) bool) *dashboard.State {
		t.Helper()
		var doc dashboard.State
		deadline := time.Now().Add(15 * time.Second)
		for {
			if resp, err := http.Get("http://" + addr + "/api/state"); err == nil {
				doc = dashboard.State{}
				err = json.NewDecoder(resp.Body).Decode(&doc)
				resp.Body.Close()
				if err == nil && want(&doc) {
					return &doc
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the client's dashboard at %s: %+v; stderr:\n%s", addr, doc, cli.Stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	state(func(d *dashboard.State) bool {
		return d.Role == "client" && d.SessionState == "connecting" && len(d.Sessions) == 0
	})
	concentratorWith(t, listen, cert)
	doc := state(func(d *dashboard.State) bool { return d.SessionState == "up" && len(d.Sessions) == 1 })
	if p := doc.Sessions[0].Paths; len(p) != 1 || p[0].Name != "a" {
		t.Errorf("the session's paths: %+v, want one, a", p)
	}
	if code := cli.Stop(t); code != 0 {
		t.Errorf("client exit %d; stderr:\n%s", code, cli.Stderr)
	}

	taken := takenTCP(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"client", "--server", listen, "--pin", pin, "--token", "secret", "--socks", "127.0.0.1:0",
		"--status", "off", "--path", "a=127.0.0.1", "--dashboard", taken, "--log-level", "error"}, &stdout, &stderr, nil)
	if code != 1 || !strings.HasPrefix(stderr.String(), "braid client: dashboard listener: listen tcp "+taken) ||
		strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("a taken --dashboard: %d, %q; want 1 and one line", code, stderr.String())
	}
}
