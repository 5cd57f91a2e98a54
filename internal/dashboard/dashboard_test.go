package dashboard

import (
	"bufio"
	"encoding/json"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"braid/internal/status"
)

// fake is a Source whose sample the test sets.
type fake struct {
	mu  sync.Mutex
	smp Sample
}

func (f *fake) set(s Sample) {
	f.mu.Lock()
	f.smp = s
	f.mu.Unlock()
}

func (f *fake) source(time.Time) Sample {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.smp
}

// newTest makes a dashboard whose ticker never fires during a test: the
// test takes each sample itself with d.sample.
func newTest(t *testing.T, f *fake, cfg Config) *Dashboard {
	t.Helper()
	cfg.Source = f.source
	if cfg.Step == 0 {
		cfg.Step = time.Hour
		cfg.Window = 10 * time.Hour
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func getState(t *testing.T, d *Dashboard) (*State, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://127.0.0.1/api/state", nil)
	d.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/state: %d %s: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var doc State
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(rec.Body.Bytes(), &raw)
	return &doc, raw
}

func twoPaths(p0 string) []status.Path {
	return []status.Path{
		{Name: "p0", State: p0, RTTMs: 20, Loss: 0.01, UploadBps: 1e6, DownloadBps: 3e6, CostUSD: 0.1},
		{Name: "p1", State: "up", RTTMs: 40, UploadBps: 0, Idle: true, Why: "the plan leaves it idle"},
	}
}

func TestStateDocument(t *testing.T) {
	f := &fake{}
	f.set(Sample{Sessions: []SessionSample{
		{ID: "b", Tier: "gold", Paths: twoPaths("up"), CostUSD: 1, RevenueUSD: 2,
			Plans: []status.Plan{{Class: "default", K: 4, M: 2, SLAMet: true, Text: "k=4 m=2", Shards: map[string]int{"p0": 6}}}},
		{ID: "a", Tier: "gold", Paths: twoPaths("up"), CostUSD: 0, RevenueUSD: 0,
			Plans: []status.Plan{{Class: "default", SLAMet: false, GoodputBps: math.Inf(1)}}},
	}})
	d := newTest(t, f, Config{Role: "concentrator"})
	t0 := time.Now()
	for i := 1; i <= 3; i++ {
		s := f.source(t0)
		s.Sessions[0].CostUSD += 0.5 * float64(i) // 0.05 $/s over 10 s steps
		s.Sessions[0].RevenueUSD += 1.0 * float64(i)
		if i == 3 {
			s.Sessions[0].Paths = twoPaths("down")
		}
		f.set(s)
		d.sample(t0.Add(time.Duration(i) * 10 * time.Second))
	}
	doc, raw := getState(t, d)
	for _, k := range []string{"role", "at", "step_s", "window_s", "times", "sessions_total", "sessions_shown",
		"cost_usd_per_s", "revenue_usd_per_s", "profit_usd_per_s", "tenants", "sessions"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("state lacks %q", k)
		}
	}
	if _, ok := raw["session_state"]; ok {
		t.Error("a concentrator's state has a session_state")
	}
	if doc.Role != "concentrator" || len(doc.Times) != 4 || doc.SessionsTotal != 2 || doc.SessionsShown != 2 {
		t.Fatalf("role %q, %d times, %d/%d sessions; want concentrator, 4, 2/2", doc.Role, len(doc.Times), doc.SessionsShown, doc.SessionsTotal)
	}
	if doc.Sessions[0].ID != "a" || doc.Sessions[1].ID != "b" {
		t.Errorf("sessions %s, %s: want a, b (by id)", doc.Sessions[0].ID, doc.Sessions[1].ID)
	}
	b := doc.Sessions[1]
	// The third step added 1.5 $ of cost and 3 $ of revenue in 10 s.
	if math.Abs(b.CostUSDPerS-0.15) > 1e-9 || math.Abs(b.RevenueUSDPerS-0.3) > 1e-9 {
		t.Errorf("session b: cost %v $/s, revenue %v $/s; want 0.15, 0.3", b.CostUSDPerS, b.RevenueUSDPerS)
	}
	if math.Abs(doc.ProfitUSDPerS-0.15) > 1e-9 {
		t.Errorf("profit %v $/s, want 0.15", doc.ProfitUSDPerS)
	}
	if b.SLAMet == nil || !*b.SLAMet || doc.Sessions[0].SLAMet == nil || *doc.Sessions[0].SLAMet {
		t.Errorf("SLA met: b %v, a %v; want true, false", b.SLAMet, doc.Sessions[0].SLAMet)
	}
	if len(doc.Tenants) != 1 || doc.Tenants[0].Name != "tier gold" || doc.Tenants[0].Sessions != 2 || doc.Tenants[0].SLAMet {
		t.Errorf("tenants %+v: want one, tier gold, 2 sessions, SLA missed (a misses it)", doc.Tenants)
	}
	p0 := b.Paths[0]
	if p0.Name != "p0" || p0.State != "down" || p0.History.States != "uuux" || len(p0.History.RTTMs) != 4 ||
		p0.History.RateBps[0] != 4e6 {
		t.Errorf("p0: %+v; want down, history uuux of 4 samples, rate 4e6", p0)
	}
	if p1 := b.Paths[1]; !p1.Idle || p1.History.States != "iiii" || p1.Why == "" {
		t.Errorf("p1: %+v; want idle with its why", p1)
	}
	if len(b.Plans) != 1 || b.Plans[0].Text != "k=4 m=2" || b.Plans[0].Shards["p0"] != 6 {
		t.Errorf("plans %+v", b.Plans)
	}
	if doc.Sessions[0].Plans[0].GoodputBps != 0 {
		t.Error("an infinite goodput went out as is")
	}
}

// TestPathAndSessionGone: a path that leaves reads gone, a session that
// ends leaves the page.
func TestPathAndSessionGone(t *testing.T) {
	f := &fake{}
	f.set(Sample{State: "up", Sessions: []SessionSample{{ID: "s", Paths: twoPaths("up")}}})
	d := newTest(t, f, Config{Role: "client"})
	now := time.Now()
	d.sample(now)
	f.set(Sample{State: "up", Sessions: []SessionSample{{ID: "s", Paths: twoPaths("up")[1:]}}})
	d.sample(now.Add(time.Hour))
	doc, _ := getState(t, d)
	if doc.SessionState != "up" || len(doc.Sessions) != 1 || len(doc.Sessions[0].Paths) != 2 {
		t.Fatalf("state %+v", doc)
	}
	if p := doc.Sessions[0].Paths[0]; p.State != "gone" || p.History.States != "uu-" {
		t.Errorf("p0 left: state %s, history %q; want gone, uu-", p.State, p.History.States)
	}
	f.set(Sample{State: "connecting"})
	d.sample(now.Add(2 * time.Hour))
	doc, _ = getState(t, d)
	if doc.SessionState != "connecting" || len(doc.Sessions) != 0 || doc.SessionsTotal != 0 || len(doc.Tenants) != 0 {
		t.Errorf("after the session ended: %+v", doc)
	}
}

// TestBounds: whatever the source claims, the dashboard keeps at most
// MaxSessions sessions of MaxPaths paths, names and texts cut short, a
// window of history.
func TestBounds(t *testing.T) {
	long := strings.Repeat("é", 5000)
	var smp Sample
	for i := range 300 {
		s := SessionSample{ID: string(rune('A'+i%26)) + strings.Repeat("x", i) + long, Tier: long,
			CostUSD: math.NaN(), RevenueUSD: math.Inf(1)}
		for j := range 100 {
			s.Paths = append(s.Paths, status.Path{Name: string(rune('a'+j%26)) + strings.Repeat("y", j), State: long,
				Why: long + long, RTTMs: math.NaN()})
		}
		for range 20 {
			s.Plans = append(s.Plans, status.Plan{Class: long, Text: long + long + long})
		}
		smp.Sessions = append(smp.Sessions, s)
	}
	f := &fake{}
	f.set(smp)
	d := newTest(t, f, Config{Step: 100 * time.Millisecond, Window: time.Second, MaxSessions: 5, MaxPaths: 3})
	d.Close() // the test samples by itself
	now := time.Now()
	for i := range 12 {
		d.sample(now.Add(time.Duration(i) * time.Second))
	}
	doc, _ := getState(t, d)
	if doc.SessionsTotal != 300 || len(doc.Sessions) != 5 || len(doc.Times) != 10 {
		t.Fatalf("%d of %d sessions, %d samples; want 5 of 300, 10", len(doc.Sessions), doc.SessionsTotal, len(doc.Times))
	}
	for _, s := range doc.Sessions {
		if len(s.ID) > maxName || len(s.Tier) > maxName || len(s.Paths) != 3 || len(s.Plans) != maxPlans {
			t.Fatalf("session %.20q: id %d B, tier %d B, %d paths, %d plans", s.ID, len(s.ID), len(s.Tier), len(s.Paths), len(s.Plans))
		}
		for _, p := range s.Paths {
			if len(p.Name) > maxName || len(p.State) > maxName || len(p.Why) > maxText || len(p.History.States) != 10 {
				t.Fatalf("path %.20q: %d B name, %d B why, %d samples", p.Name, len(p.Name), len(p.Why), len(p.History.States))
			}
		}
		for _, p := range s.Plans {
			if len(p.Text) > maxText || !json.Valid([]byte(`"`+p.Text+`"`)) {
				t.Fatalf("plan text of %d B", len(p.Text))
			}
		}
	}
	if len(doc.Tenants) > maxTenants {
		t.Errorf("%d tenants", len(doc.Tenants))
	}
	d.mu.Lock()
	size := len(d.last)
	d.mu.Unlock()
	if size > 1<<20 {
		t.Errorf("the state document is %d bytes for 5 sessions of 3 paths", size)
	}
}

func TestSourcePanics(t *testing.T) {
	d, err := New(Config{Source: func(time.Time) Sample { panic("boom") }, Step: time.Hour, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	doc, _ := getState(t, d)
	if doc.SessionState != "unknown" || len(doc.Sessions) != 0 {
		t.Errorf("after a panicking source: %+v", doc)
	}
}

func TestConfig(t *testing.T) {
	src := func(time.Time) Sample { return Sample{} }
	for _, c := range []Config{
		{},
		{Source: src, Step: time.Millisecond},
		{Source: src, Step: time.Second, Window: 2 * time.Hour},
		{Source: src, MaxSessions: -1},
		{Source: src, MaxPaths: 1000},
		{Source: src, MaxWatchers: 5000},
	} {
		if d, err := New(c); err == nil {
			d.Close()
			t.Errorf("New(%+v) took it", c)
		}
	}
}

func TestToken(t *testing.T) {
	d := newTest(t, &fake{}, Config{Token: "s3cret"})
	do := func(target string, set func(*http.Request)) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", target, nil)
		if set != nil {
			set(req)
		}
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		return rec
	}
	for name, set := range map[string]func(*http.Request){
		"none":          nil,
		"wrong bearer":  func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") },
		"wrong cookie":  func(r *http.Request) { r.AddCookie(&http.Cookie{Name: cookieName, Value: "s3cre"}) },
		"basic, not it": func(r *http.Request) { r.SetBasicAuth("s3cret", "s3cret") },
	} {
		rec := do("http://dash.example:8080/api/state", set)
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d, want 401 with WWW-Authenticate", name, rec.Code)
		}
	}
	if rec := do("http://dash.example/api/state?token=wrong", nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("a wrong ?token=: %d, want 401", rec.Code)
	}
	if rec := do("http://dash.example/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }); rec.Code != 200 {
		t.Errorf("the bearer token: %d, want 200", rec.Code)
	}
	rec := do("http://dash.example/?token=s3cret&x=1", nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/?x=1" {
		t.Fatalf("?token= on the page: %d to %q, want 303 to /?x=1", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != cookieName || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies %+v", cookies)
	}
	// The cookie holds no token: the browser sends it to every port of
	// the host. The token itself as a cookie opens nothing.
	if strings.Contains(cookies[0].Value, "s3cret") {
		t.Errorf("the cookie holds the token: %q", cookies[0].Value)
	}
	if rec := do("http://dash.example/", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: cookieName, Value: "s3cret"}) }); rec.Code != 401 {
		t.Errorf("the token as the cookie: %d, want 401", rec.Code)
	}
	rec = do("http://dash.example/", func(r *http.Request) { r.AddCookie(cookies[0]) })
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "app.js") {
		t.Errorf("the page with its cookie: %d", rec.Code)
	}
	if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("X-Frame-Options") != "DENY" {
		t.Error("the page lacks its security headers")
	}
}

// TestLoopbackOnly: without a token the dashboard answers only to
// loopback names, so a page elsewhere cannot read it by DNS rebinding.
func TestLoopbackOnly(t *testing.T) {
	d := newTest(t, &fake{}, Config{})
	for host, want := range map[string]int{
		"127.0.0.1:9": 200, "localhost:9": 200, "[::1]:9": 200, "LOCALHOST": 200, "127.1.2.3": 200,
		"evil.example:9": 403, "10.0.0.1:9": 403, "[::ffff:10.0.0.1]:9": 403, "": 403,
	} {
		req := httptest.NewRequest("GET", "/api/state", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q: %d, want %d", host, rec.Code, want)
		}
	}
	// Another site's page reaching 127.0.0.1 itself (a no-cors fetch, to
	// hold the live pages' slots) is marked so by the browser.
	for site, want := range map[string]int{"": 200, "same-origin": 200, "none": 200, "cross-site": 403} {
		req := httptest.NewRequest("GET", "/api/state", nil)
		req.Host = "127.0.0.1:9"
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Sec-Fetch-Site %q: %d, want %d", site, rec.Code, want)
		}
	}
}

// TestAssets: the page and its assets are in the binary and reach for
// nothing outside it.
func TestAssets(t *testing.T) {
	d := newTest(t, &fake{}, Config{})
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/app.css": "text/css"} {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1"+path, nil))
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), ctype) || rec.Body.Len() < 100 {
			t.Errorf("GET %s: %d %s, %d bytes", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
		}
	}
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/nothing", nil))
	if rec.Code != 404 {
		t.Errorf("GET /nothing: %d", rec.Code)
	}
	fs.WalkDir(assets, "assets", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, _ := assets.ReadFile(path)
		for _, bad := range []string{"http://", "https://", "innerHTML", "eval("} {
			if s := string(b); strings.Contains(s, bad) && !(bad == "http://" && strings.Count(s, bad) == strings.Count(s, "http://www.w3.org/2000/svg")) {
				t.Errorf("%s holds %q", path, bad)
			}
		}
		return nil
	})
}

// readEvent reads one server-sent event: its name and data.
func readEvent(t *testing.T, r *bufio.Reader) (name, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			name = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			return name, strings.TrimSpace(v)
		}
	}
}

func TestEventsAndWatcherCap(t *testing.T) {
	f := &fake{}
	f.set(Sample{Sessions: []SessionSample{{ID: "one", Paths: twoPaths("up")}}})
	d := newTest(t, f, Config{MaxWatchers: 2})
	srv := httptest.NewServer(d)
	defer srv.Close()
	open := func() *http.Response {
		resp, err := http.Get(srv.URL + "/api/events")
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	a, b := open(), open()
	defer a.Body.Close()
	defer b.Body.Close()
	ra, rb := bufio.NewReader(a.Body), bufio.NewReader(b.Body)
	var seq uint64
	for _, r := range []*bufio.Reader{ra, rb} {
		var doc State
		name, data := readEvent(t, r)
		if err := json.Unmarshal([]byte(data), &doc); err != nil || name != "state" || len(doc.Sessions) != 1 {
			t.Fatalf("first event %q: %v %+v", name, err, doc)
		}
		seq = doc.Seq
	}
	if a.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("events as %s", a.Header.Get("Content-Type"))
	}
	c := open()
	body, _ := io.ReadAll(c.Body)
	c.Body.Close()
	if c.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "at most 2") {
		t.Errorf("a third watcher: %d %s, want 503", c.StatusCode, body)
	}
	if d.Watchers() != 2 {
		t.Errorf("%d watchers, want 2", d.Watchers())
	}
	// A new sample reaches both watchers as a tick: the last sample
	// only, numbered next.
	f.set(Sample{Sessions: []SessionSample{{ID: "one", Paths: twoPaths("down")}, {ID: "two"}}})
	d.sample(time.Now().Add(time.Hour))
	for _, r := range []*bufio.Reader{ra, rb} {
		var doc State
		name, data := readEvent(t, r)
		if err := json.Unmarshal([]byte(data), &doc); err != nil || name != "tick" || doc.SessionsTotal != 2 || doc.Seq != seq+1 {
			t.Fatalf("second event %q: %v %+v; want a tick of 2 sessions, seq %d", name, err, doc, seq+1)
		}
		h := doc.Sessions[0].Paths[0].History
		if len(doc.Times) != 1 || h.States != "x" || len(h.RTTMs) != 1 || len(h.Loss) != 1 || len(h.RateBps) != 1 {
			t.Errorf("the tick carries %d times and history %+v; want the last sample only", len(doc.Times), h)
		}
	}
	// The state document still holds the whole history.
	if doc, _ := getState(t, d); doc.Sessions[0].Paths[0].History.States != "ux" || len(doc.Times) != 2 {
		t.Errorf("after a tick, /api/state: %d times, p0 %q; want 2, ux", len(doc.Times), doc.Sessions[0].Paths[0].History.States)
	}
	// One leaves: its place is free again.
	a.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for d.Watchers() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers after one left, want 1", d.Watchers())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c = open()
	if c.StatusCode != 200 {
		t.Errorf("a watcher after one left: %d", c.StatusCode)
	}
	c.Body.Close()
	// Close ends the streams.
	d.Close()
	if _, err := io.ReadAll(rb); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("stream after Close: %v", err)
	}
}

// BenchmarkSample is one step at a concentrator of 1000 sessions of 4
// paths (the source's own cost, status.Describe, aside): history, money,
// tenants and the document for the 64 sessions shown.
func BenchmarkSample(b *testing.B) {
	var smp Sample
	for i := range 1000 {
		s := SessionSample{ID: strings.Repeat("s", 4) + string(rune('a'+i%26)) + strings.Repeat("x", i%40), Tier: "gold",
			Plans: []status.Plan{{Class: "default", K: 4, M: 2, SLAMet: true, Text: strings.Repeat("plan text ", 20)}}}
		s.ID += string(rune(0x4e00 + i))
		for j := range 4 {
			s.Paths = append(s.Paths, status.Path{Name: "path" + string(rune('0'+j)), State: "up", RTTMs: 20, UploadBps: 1e6})
		}
		smp.Sessions = append(smp.Sessions, s)
	}
	f := &fake{}
	f.set(smp)
	d, err := New(Config{Source: f.source, Step: time.Hour, Window: 150 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.sample(now.Add(time.Duration(i) * time.Second))
	}
	b.StopTimer()
	d.mu.Lock()
	b.ReportMetric(float64(len(d.last)), "doc-bytes")
	d.mu.Unlock()
}

// TestBadRequests: odd requests get an error status, never a panic or
// a page.
func TestBadRequests(t *testing.T) {
	d := newTest(t, &fake{}, Config{Token: "tok"})
	huge := strings.Repeat("x", 1<<16)
	for _, tt := range []struct {
		method, target string
		set            func(*http.Request)
		want           int
	}{
		{"POST", "/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 405},
		{"GET", "/etc/passwd", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 404},
		{"GET", "/assets/app.js", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 404},
		{"GET", "/api/state?token=" + huge, nil, 401},
		{"GET", "/api/state?token=%ff%00", nil, 401},
		{"GET", "/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+huge) }, 401},
		{"GET", "/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer") }, 401},
		{"GET", "/api/state", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: cookieName, Value: huge}) }, 401},
		{"GET", "/api/state", func(r *http.Request) { r.Header.Set("Cookie", cookieName+"=;;;==") }, 401},
	} {
		req := httptest.NewRequest(tt.method, "http://dash.example"+tt.target, nil)
		if tt.set != nil {
			tt.set(req)
		}
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s %.60s: %d, want %d", tt.method, tt.target, rec.Code, tt.want)
		}
	}
}

func TestClamp(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 2, "ab"}, {"abc", 3, "abc"}, {"aé", 2, "a"}, {"ééé", 4, "éé"}, {"ééé", 5, "éé"},
		{"a€b", 3, "a"}, {"a€b", 4, "a€"}, {"", 0, ""}, {"\xff\xff\xffx", 2, ""},
	} {
		if got := clamp(tt.in, tt.n); got != tt.want {
			t.Errorf("clamp(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
