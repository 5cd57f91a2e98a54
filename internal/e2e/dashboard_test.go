package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"braid/internal/dashboard"
	"braid/internal/usage"
	"braid/scheduler"
	"braid/transport"
)

// browser returns a Chromium or Chrome to drive, or "" when none is
// installed.
func browser() string {
	if p := os.Getenv("BRAID_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium"
	}
	return ""
}

// serveDashboard serves a dashboard of src on loopback and returns its
// base URL.
func serveDashboard(t *testing.T, cfg dashboard.Config) string {
	t.Helper()
	if cfg.Step == 0 {
		cfg.Step = 200 * time.Millisecond
	}
	cfg.Window = time.Minute
	d, err := dashboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		d.Close()
		srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// TestDashboardInBrowser opens the concentrator's dashboard in a real
// headless Chromium while a client's session runs over two emulated
// paths: the page shows both paths up, then one path is killed and the
// page, updated live, shows it down, as does the client's own page; on
// a phone-sized screen nothing runs off the side; a screenshot goes to
// the test's directory.
func TestDashboardInBrowser(t *testing.T) {
	exe := browser()
	if exe == "" {
		t.Skip("no Chromium found (install Debian's chromium package, or set BRAID_CHROMIUM): the dashboard's browser test cannot run")
	}
	// bestvalue with a tier, so both ends plan and the page has plans,
	// a tier and money to show.
	terms := transport.Terms{Tier: "basic", RevenueGB: 2, SLA: scheduler.SLA{MinGoodput: 1e6 / 8}}
	w := newWorld(t, options{links: twoLinks(), prices: []float64{0.1, 0.5},
		transport: transport.Config{Policy: "bestvalue", Terms: terms}})
	t0 := time.Now()
	t.Cleanup(func() { t.Logf("%5.1fs all closed", time.Since(t0).Seconds()) })
	conn, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echoCheck(conn, 1<<20, 7); err != nil {
		t.Fatal(err)
	}

	const token = "dash-secret"
	srvURL := serveDashboard(t, dashboard.Config{Role: "concentrator", Token: token,
		Source: dashboard.Live(w.srv.Sessions, nil, w.srv.Tenant)})
	cliURL := serveDashboard(t, dashboard.Config{Role: "client", Source: dashboard.Live(func() []*transport.Session {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if s, err := w.cli.WaitSession(ctx); err == nil {
			return []*transport.Session{s}
		}
		return nil
	}, func() string { return "up" }, nil)})

	// The client's page, without a browser: its document names both
	// paths of its one session.
	resp, err := http.Get(cliURL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	var doc dashboard.State
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if doc.Role != "client" || len(doc.Sessions) != 1 || len(doc.Sessions[0].Paths) != 2 {
		t.Fatalf("client dashboard: role %q, %d sessions (want client, 1 session of 2 paths): %+v", doc.Role, len(doc.Sessions), doc)
	}

	// Everything the browser does ends within a minute, whatever it does.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true), chromedp.WindowSize(1200, 900))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	// pollJS waits, polling the page, until expr is true.
	began := time.Now()
	pollJS := func(what, expr string) {
		t.Helper()
		defer func() { t.Logf("%5.1fs %s", time.Since(began).Seconds(), what) }()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond),
			chromedp.WithPollingTimeout(40*time.Second))); err != nil {
			page, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: %v\npage text: %s", what, err, page)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// Without the token the page is refused; with ?token= once, the
	// browser keeps a cookie and the address loses the token.
	if err := chromedp.Do(bctx, chromedp.Navigate(srvURL+"/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	if refused := text("body"); !strings.Contains(refused, "token is required") {
		t.Errorf("the dashboard without a token shows %q, want a refusal", refused)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(srvURL+"/?token="+token)); err != nil {
		t.Fatalf("open the dashboard with its token: %v", err)
	}
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if loc != srvURL+"/" {
		t.Errorf("after ?token= the page is at %s, want %s/ (the token dropped from the address)", loc, srvURL)
	}

	// Up, or idle: up and left without shards by the plan.
	pollJS("the page lists the session's two paths, up",
		`Array.from(document.querySelectorAll('.session .path')).filter(e => (e.dataset.path === "p0" || e.dataset.path === "p1") &&
		 (e.dataset.state === "up" || e.dataset.state === "idle")).length === 2`)
	// "live", not "live (polling)": the server-sent events arrive.
	pollJS("the page says it is live, by server-sent events", `document.getElementById("conn").textContent === "live"`)
	if n := text("#sessions"); n != "1" {
		t.Errorf("the page counts %q sessions, want 1", n)
	}
	pollJS("the page gives the plan and its explanation, and the tenant's row (the token's hash, never the token)",
		`(() => { const p = document.querySelector('.session .plan pre');
		  return p !== null && p.textContent.includes("k=") && document.querySelector('#tenants tr[data-tenant="`+usage.TenantID("secret-token")+`"]') !== null &&
		    !document.body.innerHTML.includes("secret-token"); })()`)

	// Traffic while the page watches: cost and revenue per second show.
	busy, err := w.dialSOCKS(t, w.dest.addr())
	if err != nil {
		t.Fatal(err)
	}
	stop, moved := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(moved)
		buf := make([]byte, 32<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := busy.Write(buf); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stop)
		busy.Close()
		<-moved
	}()
	pollJS("the page shows revenue and cost per second while traffic flows",
		`document.getElementById("revenue").textContent !== "$0/s" && document.getElementById("cost").textContent !== "$0/s"`)

	// Kill p0: the page, with no reload, shows it down and p1 still up.
	w.relays[0].SetBroken(true)
	pollJS("the page shows p0 down after its link died",
		`document.querySelector('.session .path[data-path="p0"][data-state="down"]') !== null &&
		 document.querySelector('.session .path[data-path="p1"][data-state="up"], .session .path[data-path="p1"][data-state="idle"]') !== null`)
	pollJS("p0's state strip ends down", `(() => {
		const s = document.querySelectorAll('.session .path[data-path="p0"] .strip span');
		return s.length > 1 && s[s.length-1].dataset.s === "x" && Array.from(s).some(e => e.dataset.s === "u" || e.dataset.s === "i");
	})()`)

	// The client's own page, on loopback without a token, shows the same.
	if err := chromedp.Do(bctx, chromedp.Navigate(cliURL+"/")); err != nil {
		t.Fatalf("open the client's dashboard: %v", err)
	}
	pollJS("the client's page shows its session up, p0 down and p1 up", `document.getElementById("role").textContent === "client · session up" &&
		document.querySelector('.session .path[data-path="p0"][data-state="down"]') !== null &&
		document.querySelector('.session .path[data-path="p1"][data-state="up"], .session .path[data-path="p1"][data-state="idle"]') !== null`)

	// A phone's screen: the page reflows, nothing runs off the side.
	if err := chromedp.Do(bctx, chromedp.Navigate(srvURL+"/")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	pollJS("the page on a phone shows p0 down", `document.querySelector('.path[data-path="p0"][data-state="down"]') !== null`)
	pollJS("nothing on a phone's screen is wider than it", `document.documentElement.scrollWidth <= window.innerWidth`)
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot: %d bytes, not a PNG", len(png))
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("screenshot %s not written: %v", shot, err)
	}
	t.Logf("%5.1fs screenshot: %s (%d bytes)", time.Since(t0).Seconds(), shot, len(png))
	if keep := os.Getenv("BRAID_DASHBOARD_SHOT"); keep != "" {
		// To look at it after the test: the temporary directory goes.
		os.WriteFile(keep, png, 0o644)
	}
}
