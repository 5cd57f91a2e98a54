package dashboard

import (
	"braid/internal/netx"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// cookieName carries, once a browser gave the token as ?token=, a value
// derived from it (cookieValue), not the token: the browser sends its
// cookies to every port of the host.
const cookieName = "braid_dashboard"

// ServeHTTP serves the page, its assets and the state document.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.handler.ServeHTTP(w, r) }

func (d *Dashboard) routes() http.Handler {
	mux := http.NewServeMux()
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(static)
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /app.js", files)
	mux.Handle("GET /app.css", files)
	mux.HandleFunc("GET /api/state", d.serveState)
	mux.HandleFunc("GET /api/events", d.serveEvents)
	return d.guard(mux)
}

// guard checks the token (or, without one, that the page is asked for
// by a loopback name: a page elsewhere must not read it through DNS
// rebinding) and sets the headers every answer carries.
func (d *Dashboard) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("Cache-Control", "no-store")
		if d.cfg.Token == "" {
			if !netx.LocalRequest(r.Host, r.Header.Get("Sec-Fetch-Site")) {
				http.Error(w, "without a token the dashboard answers only this machine's own pages, at a loopback address (or start it with a token)", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query().Get("token"); q != "" {
			if !d.tokenOK(q) {
				d.unauthorized(w)
				return
			}
			// A browser gave the token once: keep it in a cookie and
			// take it out of the address bar and the history.
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: d.cookieValue(), Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			if r.URL.Path == "/" {
				u := url.URL{Path: "/"}
				rest := r.URL.Query()
				rest.Del("token")
				u.RawQuery = rest.Encode()
				http.Redirect(w, r, u.String(), http.StatusSeeOther)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && d.tokenOK(strings.TrimSpace(tok)) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(cookieName); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(d.cookieValue())) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		d.unauthorized(w)
	})
}

// tokenOK compares in time independent of where the two differ, and of
// their lengths.
func (d *Dashboard) tokenOK(tok string) bool {
	h := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(h[:], d.tokHash[:]) == 1
}

// cookieValue is what the cookie holds for the dashboard's token: an
// HMAC of a fixed label under the token, hex. It opens this dashboard
// and gives nothing else the token opens.
func (d *Dashboard) cookieValue() string {
	m := hmac.New(sha256.New, []byte(d.cfg.Token))
	m.Write([]byte("braid dashboard cookie"))
	return hex.EncodeToString(m.Sum(nil))
}

func (d *Dashboard) unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="braid dashboard"`)
	http.Error(w, "a dashboard token is required: open /?token=TOKEN or send Authorization: Bearer TOKEN", http.StatusUnauthorized)
}

func (d *Dashboard) serveState(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	b := d.last
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// serveEvents streams the state document as server-sent events, one per
// sample, to at most MaxWatchers pages at once. A slow page misses
// samples, never holds them: each watcher keeps only the newest.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	if int(d.watchers.Add(1)) > d.cfg.MaxWatchers {
		d.watchers.Add(-1)
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("too many live dashboards (at most %d): poll /api/state", d.cfg.MaxWatchers),
			http.StatusServiceUnavailable)
		return
	}
	defer d.watchers.Add(-1)
	rc := http.NewResponseController(w)
	ch := make(chan []byte, 1)
	d.subMu.Lock()
	select {
	case <-d.stop:
		d.subMu.Unlock()
		http.Error(w, "the dashboard is closing", http.StatusServiceUnavailable)
		return
	default:
	}
	d.subs[ch] = struct{}{}
	d.subMu.Unlock()
	defer func() {
		d.subMu.Lock()
		delete(d.subs, ch)
		d.subMu.Unlock()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	d.mu.Lock()
	first := d.last
	d.mu.Unlock()
	send := func(ev []byte) bool {
		// Each write has a deadline, so a page that stopped reading
		// lets its watcher go.
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(ev); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The first event is the whole state, history and all.
	if !send(event("state", first)) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.stop:
			return
		case ev := <-ch:
			if !send(ev) {
				return
			}
		}
	}
}

// event formats a server-sent event; data is JSON, one line.
func event(name string, data []byte) []byte {
	b := make([]byte, 0, len(data)+48)
	b = append(b, "retry: 2000\nevent: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// publish hands the newest event to every watcher, replacing what it
// has not sent yet.
func (d *Dashboard) publish(b []byte) {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	for ch := range d.subs {
		select {
		case <-ch:
		default:
		}
		ch <- b
	}
}

// Watchers returns the live pages now.
func (d *Dashboard) Watchers() int { return int(d.watchers.Load()) }
