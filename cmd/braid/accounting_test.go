package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"braid/internal/accounting"
)

// TestAccountingFlags: a DSN braid cannot use stops the concentrator at
// start with one line and exit 2.
func TestAccountingFlags(t *testing.T) {
	cert, key, _ := keyFiles(t)
	for _, dsn := range []string{"mysql://db/x", filepath.Join(t.TempDir(), "no", "dir", "a.db"),
		"postgres://braid@127.0.0.1:1/x?connect_timeout=2"} {
		srv := start("server", "--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "t",
			"--accounting", dsn, "--log-level", "warn")
		code := srv.Wait(t, 20*time.Second)
		out := srv.Stderr.String()
		if code != 2 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "braid server: --accounting: ") {
			t.Errorf("%s: exit %d, stderr %q; want 2 and one line", dsn, code, out)
		}
	}
	srv := start("server", "--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", "t", "--accounting-id", "x")
	if code := srv.Wait(t, 20*time.Second); code != 2 || !strings.Contains(srv.Stderr.String(), "--accounting-id: needs --accounting") {
		t.Errorf("--accounting-id alone: exit %d, stderr %q", code, srv.Stderr)
	}
}

// TestAccountingReport: a concentrator with --accounting carries an echo
// over two paths; after it stops, braid report's lines by path add up to
// its total, and name both paths.
func TestAccountingReport(t *testing.T) {
	cert, key, pin := keyFiles(t)
	db := filepath.Join(t.TempDir(), "acct.db")
	listen := freePort(t, "udp")
	srv := start("server", "--listen", listen, "--cert", cert, "--key", key, "--token", "secret",
		"--allow-private", "--allow-own", "--accounting", db, "--accounting-id", "edge-1", "--log-level", "warn")
	echo := echoServer(t)
	socksAddr := freePort(t, "tcp")
	cli := start("client", "--server", listen, "--pin", pin, "--token", "secret", "--socks", socksAddr, "--status", "127.0.0.1:0",
		"--path", "a=127.0.0.1,medium=ethernet,price=0.5", "--path", "b=127.0.0.1,medium=cellular,price=3",
		"--scheduler", "roundrobin", "--log-level", "warn")
	waitSOCKS(t, cli, socksAddr)
	c, err := socksDial(socksAddr, echo)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	go c.Write(want)
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, len(want))); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	c.Close()
	if code := cli.Stop(t); code != 0 {
		t.Errorf("client exited with %d; stderr:\n%s", code, cli.Stderr)
	}
	if code := srv.Stop(t); code != 0 {
		t.Fatalf("server exited with %d; stderr:\n%s", code, srv.Stderr)
	}

	rep := start("report", "--db", db, "--by", "path", "--format", "json")
	if code := rep.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("report: exit %d, stderr %s", code, rep.Stderr)
	}
	var r accounting.Report
	if err := json.Unmarshal([]byte(rep.Stdout.String()), &r); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, rep.Stdout)
	}
	var sum accounting.Line
	keys := []string{}
	for _, l := range r.Lines {
		keys = append(keys, l.Key)
		sum.BytesUp += l.BytesUp
		sum.BytesDown += l.BytesDown
		sum.CostUSD += l.CostUSD
		sum.Records += l.Records
	}
	if strings.Join(keys, ",") != "a,b" {
		t.Errorf("paths %v, want a,b", keys)
	}
	if sum.BytesUp != r.Total.BytesUp || sum.BytesDown != r.Total.BytesDown || sum.CostUSD != r.Total.CostUSD || sum.Records != r.Total.Records {
		t.Errorf("lines sum to %+v, total %+v", sum, r.Total)
	}
	if r.Total.BytesUp < int64(len(want)) || r.Total.BytesDown < int64(len(want)) {
		t.Errorf("total %+v for a %d-byte echo", r.Total, len(want))
	}
	for _, by := range []string{"tenant", "tier", "class"} {
		rep := start("report", "--db", db, "--by", by, "--format", "csv", "--since", "1h")
		if code := rep.Wait(t, 20*time.Second); code != 0 || !strings.Contains(rep.Stdout.String(), "TOTAL,") {
			t.Errorf("report --by %s: exit %d, stdout %s stderr %s", by, code, rep.Stdout, rep.Stderr)
		}
		if by == "tenant" && strings.Contains(rep.Stdout.String(), "secret") {
			t.Errorf("the report shows the token:\n%s", rep.Stdout)
		}
	}
	rep = start("report", "--db", db)
	if code := rep.Wait(t, 20*time.Second); code != 0 || !strings.Contains(rep.Stdout.String(), "TOTAL") {
		t.Errorf("report table: exit %d\n%s%s", code, rep.Stdout, rep.Stderr)
	}
	t.Logf("report:\n%s", rep.Stdout)
	for _, args := range [][]string{{"--db", db, "--by", "user"}, {"--db", db, "--format", "xml"}, {"--db", db, "--since", "yesterday"}, {}} {
		rep := start(append([]string{"report"}, args...)...)
		if code := rep.Wait(t, 20*time.Second); code != 2 || strings.Count(rep.Stderr.String(), "\n") != 1 {
			t.Errorf("report %v: exit %d, stderr %q; want 2 and one line", args, code, rep.Stderr)
		}
	}
}

// TestAccountingConfigFile: accounting and accounting_id in the server's
// --config file, the flags winning over them.
func TestAccountingConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.toml")
	db := filepath.Join(dir, "acct.db")
	if err := os.WriteFile(conf, []byte("accounting = \""+db+"\"\naccounting_id = \"from-file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if dsn, id := accountingOpts([]string{"--config", conf}); dsn != db || id != "from-file" {
		t.Errorf("from the file: %q %q", dsn, id)
	}
	if dsn, id := accountingOpts([]string{"--config", conf, "--accounting-id", "flag"}); dsn != db || id != "flag" {
		t.Errorf("flag over the file: %q %q", dsn, id)
	}
	if _, err := parseServer([]string{"--config", conf, "--listen", "127.0.0.1:0"}, io.Discard); err != nil && strings.Contains(err.Error(), "unknown key") {
		t.Errorf("the server's config file does not take the accounting keys: %v", err)
	}
}
