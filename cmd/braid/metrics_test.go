package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsFlags checks --metrics and its token at both ends: each
// mistake is one usage line naming the flag, exit 2, before anything
// starts; the config file's keys are read.
func TestMetricsFlags(t *testing.T) {
	cert, key, _ := keyFiles(t)
	srvBase := []string{"server", "--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "a"}
	cliBase := append([]string{"client"}, clientArgs("--socks", "127.0.0.1:0", "--status", "off")...)
	empty := writeFile(t, "empty", "# no token here\n\n")
	offLoopback := writeFile(t, "s.toml", "metrics = \"0.0.0.0:9100\"\n")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, base := range [][]string{srvBase, cliBase} {
		cmd := base[0]
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--metrics", "0.0.0.0:9100"}, "--metrics: 0.0.0.0:9100 is not a loopback address: give --metrics-token or --metrics-token-file"},
			{[]string{"--metrics", ":9100"}, "--metrics: :9100 is not a loopback address"},
			{[]string{"--metrics", "example.com:9100"}, "--metrics: example.com:9100 is not a loopback address"},
			{[]string{"--metrics", "127.0.0.1"}, `--metrics: "127.0.0.1" is not HOST:PORT`},
			{[]string{"--metrics", "127.0.0.1:http2x"}, `--metrics: "127.0.0.1:http2x" has no valid port`},
			{[]string{"--metrics-token", "x"}, "--metrics-token is for --metrics, which is not given"},
			{[]string{"--metrics", "127.0.0.1:0", "--metrics-token", "x", "--metrics-token-file", empty}, "--metrics-token-file: give either --metrics-token or --metrics-token-file"},
			{[]string{"--metrics", "0.0.0.0:0", "--metrics-token-file", empty}, "--metrics-token-file: " + empty + " holds no token"},
			{[]string{"--metrics", "0.0.0.0:0", "--metrics-token-file", filepath.Join(t.TempDir(), "none")}, "--metrics-token-file: open "},
			{[]string{"--config", offLoopback}, "--metrics: 0.0.0.0:9100 is not a loopback address"},
			{[]string{"--metrics", taken.Addr().String()}, "--metrics: cannot listen on " + taken.Addr().String() + ": bind: address already in use"},
		} {
			var stdout, stderr bytes.Buffer
			code := run(append(append([]string(nil), base...), tc.args...), &stdout, &stderr, nil)
			want := "braid " + cmd + ": " + tc.want
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
				t.Errorf("%s %q = %d, stderr %q; want 2 and one line %q", cmd, tc.args, code, stderr.String(), want)
			}
		}
	}
	// A token makes any address acceptable; loopback needs none.
	tokenFile := writeFile(t, "tok", "# the scrape token\ns3cret\n")
	for _, args := range [][]string{{"--metrics", "0.0.0.0:9100", "--metrics-token-file", tokenFile}, {"--metrics", "[::1]:9100"}, {"--metrics", "localhost:9100"}} {
		if c, err := serverMetrics(append(srvBase[1:], args...)); err != nil || c.Addr != args[1] {
			t.Errorf("server %q: %+v, %v", args, c, err)
		} else if len(args) > 2 && c.Token != "s3cret" {
			t.Errorf("server %q: token %q, want the file's", args, c.Token)
		}
	}
	file := writeFile(t, "c.toml", "metrics = \"0.0.0.0:9101\"\nmetrics_token_file = \""+tokenFile+"\"\n")
	if c, err := clientMetrics(append(cliBase[1:], "--config", file)); err != nil || c.Addr != "0.0.0.0:9101" || c.Token != "s3cret" {
		t.Errorf("client config file: %+v, %v", c, err)
	}
	if c, err := clientMetrics(append(cliBase[1:], "--config", file, "--metrics", "127.0.0.1:9102", "--metrics-token", "t2")); err != nil ||
		c.Addr != "127.0.0.1:9102" || c.Token != "t2" {
		t.Errorf("flags over the client's config file: %+v, %v", c, err)
	}
}

// scrape GETs url with token ("" for none) and returns the status and
// body.
func scrape(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// checkScrape parses a scrape with expfmt, lints it as promtool check
// metrics does (and with promtool itself where it is installed), and
// returns its families.
func checkScrape(t *testing.T, name string, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: the scrape does not parse: %v\n%s", name, err, body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("%s: lint: %v", name, err)
	}
	for _, pr := range problems {
		t.Errorf("%s: lint: %s: %s", name, pr.Metric, pr.Text)
	}
	promtool(t, name, body)
	return fams
}

// promtool runs promtool check metrics on a scrape: $PROMTOOL, else
// promtool on PATH. Without it the check is logged as skipped; with it
// any complaint fails the test.
func promtool(t *testing.T, name string, body []byte) {
	t.Helper()
	bin := os.Getenv("PROMTOOL")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("promtool"); err != nil {
			t.Logf("%s: promtool check metrics skipped: no promtool on PATH and PROMTOOL unset (.ci/run installs it); promlint ran instead", name)
			return
		}
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s: %s check metrics: %v\n%s", name, bin, err, out)
		return
	}
	t.Logf("%s: %s check metrics: passed %s", name, bin, bytes.TrimSpace(out))
}

// value is the sum of the samples of family name whose labels include
// every label of want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
metric:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue metric
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		}
	}
	return sum, found
}

// TestMetricsLive starts a concentrator and a client on loopback, both
// with --metrics, pushes bytes through, and scrapes both ends over HTTP:
// the concentrator's needs its token, both parse and lint clean, and
// they show the session, its paths' bytes and a refused join.
func TestMetricsLive(t *testing.T) {
	cert, key, pin := keyFiles(t)
	listen := freePort(t, "udp")
	srvMetrics, cliMetrics := freePort(t, "tcp"), freePort(t, "tcp")
	tokenFile := writeFile(t, "metrics-token", "scrape-me\n")
	policy := writeFile(t, "policy.toml", "[tiers.gold]\nrevenue_usd_per_gb = 2\nmin_goodput_mbps = 1\n[tokens]\nsecret = 'gold'\n")
	srv := start("server", "--listen", listen, "--cert", cert, "--key", key, "--policy", policy,
		"--allow-private", "--allow-own", "--log-level", "warn",
		"--metrics", srvMetrics, "--metrics-token-file", tokenFile)
	defer func() {
		if code := srv.Stop(t); code != 0 {
			t.Errorf("server exited with %d; stderr:\n%s", code, srv.Stderr)
		}
	}()
	echo := echoServer(t)
	socksAddr := freePort(t, "tcp")
	cli := start("client", "--server", listen, "--pin", pin, "--token", "secret", "--socks", socksAddr, "--status", "off",
		"--path", "a=127.0.0.1,medium=ethernet", "--path", "b=127.0.0.1,medium=cellular,price=3",
		"--scheduler", "bestvalue", "--log-level", "warn", "--metrics", cliMetrics)
	defer func() {
		if code := cli.Stop(t); code != 0 {
			t.Errorf("client exited with %d; stderr:\n%s", code, cli.Stderr)
		}
	}()
	waitSOCKS(t, cli, socksAddr)

	c, err := socksDial(socksAddr, echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := make([]byte, 1<<20)
	rand.Read(want)
	go c.Write(want)
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echoed bytes differ")
	}

	// A client with a wrong token is refused, and ends.
	bad := start("client", "--server", listen, "--pin", pin, "--token", "wrong",
		"--socks", "127.0.0.1:0", "--status", "off", "--path", "a=127.0.0.1", "--log-level", "error")
	if code := bad.Wait(t, 20*time.Second); code != 1 {
		t.Errorf("client with a wrong token exited with %d, want 1; stderr:\n%s", code, bad.Stderr)
	}

	srvURL, cliURL := "http://"+srvMetrics+"/metrics", "http://"+cliMetrics+"/metrics"
	for _, tok := range []string{"", "wrong"} {
		if code, _ := scrape(t, srvURL, tok); code != http.StatusUnauthorized {
			t.Errorf("concentrator's metrics with token %q: status %d, want 401", tok, code)
		}
	}
	if code, _ := scrape(t, "http://"+srvMetrics+"/status", "scrape-me"); code != http.StatusNotFound {
		t.Errorf("GET /status on the metrics address: %d, want 404", code)
	}

	// The SLA windows come once a second: wait for the first of each end.
	var sfams, cfams map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, sbody := scrape(t, srvURL, "scrape-me")
		if code != http.StatusOK {
			t.Fatalf("concentrator's metrics: status %d: %s", code, sbody)
		}
		code, cbody := scrape(t, cliURL, "")
		if code != http.StatusOK {
			t.Fatalf("client's metrics: status %d: %s", code, cbody)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		sfams, _ = p.TextToMetricFamilies(bytes.NewReader(sbody))
		cfams, _ = p.TextToMetricFamilies(bytes.NewReader(cbody))
		_, sOK := value(sfams, "braid_sla_windows_total", map[string]string{"tier": "gold"})
		_, cOK := value(cfams, "braid_sla_windows_total", map[string]string{"tier": "gold"})
		if sOK && cOK {
			sfams = checkScrape(t, "concentrator", sbody)
			cfams = checkScrape(t, "client", cbody)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SLA windows of tier gold after 10 s: concentrator %v, client %v", sOK, cOK)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, tc := range []struct {
		name   string
		fams   map[string]*dto.MetricFamily
		metric string
		labels map[string]string
		min    float64
	}{
		{"concentrator", sfams, "braid_sessions", nil, 1},
		{"concentrator", sfams, "braid_server_sessions_opened_total", nil, 1},
		{"concentrator", sfams, "braid_server_joins_refused_total", map[string]string{"reason": "auth"}, 1},
		{"concentrator", sfams, "braid_path_received_bytes_total", map[string]string{"path": "a"}, 0},
		{"concentrator", sfams, "braid_path_received_bytes_total", nil, 1 << 20},
		{"concentrator", sfams, "braid_path_state", map[string]string{"path": "b", "state": "up"}, 1},
		{"concentrator", sfams, "braid_sla_windows_total", map[string]string{"tier": "gold", "class": "default"}, 1},
		{"client", cfams, "braid_client_session_up", nil, 1},
		{"client", cfams, "braid_client_sessions_opened_total", nil, 1},
		{"client", cfams, "braid_path_sent_bytes_total", nil, 1 << 20},
		{"client", cfams, "braid_path_cost_usd_total", map[string]string{"path": "b"}, 0},
		{"client", cfams, "braid_plan_data_shards", nil, 1},
		{"client", cfams, "braid_class_sent_bytes_total", map[string]string{"class": "default"}, 1 << 20},
		{"client", cfams, "braid_class_delivered_bytes_total", map[string]string{"class": "default"}, 1 << 20},
		{"client", cfams, "braid_class_block_ack_p99_seconds", map[string]string{"class": "default"}, 1e-6},
		{"concentrator", sfams, "braid_class_sent_bytes_total", map[string]string{"class": "default"}, 1 << 20},
		{"client", cfams, "braid_sla_windows_total", map[string]string{"tier": "gold"}, 1},
	} {
		v, ok := value(tc.fams, tc.metric, tc.labels)
		if !ok || v < tc.min {
			t.Errorf("%s: %s%v = %v (present %v), want at least %v", tc.name, tc.metric, tc.labels, v, ok, tc.min)
		}
	}
	for _, r := range []string{"refused", "too_many", "unresolved", "limited", "stranger", "send_error"} {
		if _, ok := value(sfams, "braid_server_udp_dropped_datagrams_total", map[string]string{"reason": r}); !ok {
			t.Errorf("concentrator: no braid_server_udp_dropped_datagrams_total{reason=%q}", r)
		}
	}
	if _, ok := cfams["braid_server_joins_refused_total"]; ok {
		t.Error("the client serves the concentrator's counters")
	}
}

// TestPromtoolCatchesBadScrape makes sure the scrape checks fail on a
// malformed exposition: the parser and, where it is installed, promtool.
func TestPromtoolCatchesBadScrape(t *testing.T) {
	bad := []byte("# TYPE braid_x counter\nbraid_x{a=\"1\" 3\n")
	p := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := p.TextToMetricFamilies(bytes.NewReader(bad)); err == nil {
		t.Error("expfmt parsed a malformed scrape")
	}
	bin := os.Getenv("PROMTOOL")
	if bin == "" {
		bin, _ = exec.LookPath("promtool")
	}
	if bin == "" {
		t.Skip("promtool not installed (PROMTOOL unset, none on PATH): its half of this check skipped; expfmt's ran")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(bad)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("%s check metrics passed a malformed scrape: %s", bin, out)
	}
}
