package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"braid/internal/cmdtest"
)

// statusPage serves body as a status page on loopback.
func statusPage(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

const clientDoc = `{"session":"up","sessions":1,"id":"9f2c4e1a00b1c2d3","scheduler":"cheapest","uptime_s":61,
"totals":{"bytes_up":1000,"bytes_down":2000000,"probe_bytes":300,"cost_usd":0.01,"upload_bps":0,"download_bps":8000000},
"paths":[{"name":"fiber","state":"up","download_bps":8000000,"download_share":1},
 {"name":"lte","state":"up","idle":true,"why":"cheaper paths carry the traffic while they have room (cheapest)"}],"flows":1}`

const serverDoc = `{"sessions":[{"id":"9f2c4e1a00b1c2d3","scheduler":"bestvalue","tier":"basic","paths":[{"name":"fiber","state":"down","why":"silent for 1.2s"}],"flows":0}]}`

func runOut(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr, nil)
	return code, stdout.String(), stderr.String()
}

func TestStatusCommand(t *testing.T) {
	cli, srv := statusPage(t, clientDoc), statusPage(t, serverDoc)
	code, out, errs := runOut("status", "--client", cli)
	for _, want := range []string{"session 9f2c4e1a00b1c2d3 up for 1m1s, scheduler cheapest, tier none, 1 flow(s)",
		"down 8.0 Mbit/s", "8.0 Mbit/s 100%", "idle", "cheaper paths carry the traffic"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status --client = %d, lacks %q:\n%s%s", code, want, out, errs)
		}
	}
	code, out, _ = runOut("status", "--server", srv)
	if code != 0 || !strings.Contains(out, "session 9f2c4e1a00b1c2d3, scheduler bestvalue, tier basic") || !strings.Contains(out, "silent for 1.2s") {
		t.Errorf("status --server = %d:\n%s", code, out)
	}
	if code, out, _ = runOut("status", "--client", cli, "--json"); code != 0 || out != clientDoc {
		t.Errorf("status --json = %d, %q", code, out)
	}
	// The wrong kind of page says which flag to use.
	if code, _, errs = runOut("status", "--server", cli); code != 1 || !strings.Contains(errs, "try --client") {
		t.Errorf("status --server on a client's page = %d, %q", code, errs)
	}
	if code, _, errs = runOut("status", "--client", srv); code != 1 || !strings.Contains(errs, "try --server") {
		t.Errorf("status --client on a concentrator's page = %d, %q", code, errs)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--client", cli, "--server", srv}, "--server"},
		{[]string{"--watch", "--interval", "10ms"}, "--interval"},
		{[]string{"--interval", "2s"}, "--interval is for --watch"},
		{[]string{"--client", "127.0.0.1:1:2"}, "--client"},
	} {
		code, _, errs := runOut(append([]string{"status"}, c.args...)...)
		if code != 2 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("status %v = %d, %q; want 2 and one line naming %s", c.args, code, errs, c.want)
		}
	}
}

// --watch redraws in place until a signal, and keeps watching a page
// that went away.
func TestStatusWatch(t *testing.T) {
	cli := statusPage(t, clientDoc)
	sig := make(chan os.Signal, 1)
	var stdout, stderr cmdtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"status", "--client", cli, "--watch", "--interval", "100ms"}, &stdout, &stderr, sig)
	}()
	deadline := time.After(10 * time.Second)
	for strings.Count(stdout.String(), clearHome) < 3 {
		select {
		case code := <-done:
			t.Fatalf("--watch ended with %d before a signal: %s", code, stderr.String())
		case <-deadline:
			t.Fatalf("no three redraws in 10 s:\n%s", stdout.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	sig <- os.Interrupt
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("--watch exited %d after Ctrl-C", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("--watch did not stop on a signal")
	}
	frames := strings.Split(stdout.String(), clearHome)
	if last := frames[len(frames)-1]; !strings.Contains(last, "session 9f2c4e1a00b1c2d3 up") || strings.Count(last, "PATH ") != 1 {
		t.Fatalf("a frame:\n%s", last)
	}

	// A page that does not answer is said in place; watching goes on.
	gone := freePort(t, "tcp")
	stdout = cmdtest.Buffer{}
	go func() {
		done <- run([]string{"status", "--client", gone, "--watch", "--interval", "100ms"}, &stdout, &stderr, sig)
	}()
	deadline = time.After(10 * time.Second)
	for strings.Count(stdout.String(), "no braid status page answers") < 2 {
		select {
		case code := <-done:
			t.Fatalf("--watch of a page that is gone ended with %d", code)
		case <-deadline:
			t.Fatalf("no two redraws of the error in 10 s:\n%s", stdout.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	sig <- os.Interrupt
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
}
