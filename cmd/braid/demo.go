package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"braid/bench/emu"
	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/server"
)

// demoPath is one emulated provider path of the demo.
type demoPath struct {
	name, medium, operator string
	price                  float64 // USD per GB
	mbps                   float64 // each direction
	delay                  time.Duration
}

var demoPaths = []demoPath{
	{"fiber", "ethernet", "own", 0.1, 40, 10 * time.Millisecond},
	{"lte", "cellular", "partner", 3, 20, 25 * time.Millisecond},
	{"satellite", "satellite", "partner", 5, 10, 60 * time.Millisecond},
}

// maxDemoBytes caps /bytes/N so a typo cannot make the server stream forever.
const maxDemoBytes = 1 << 30

type demoOpts struct {
	socks    string
	status   string
	duration time.Duration
	logLevel string
	dash     string
}

func demoFlags(o *demoOpts) *flag.FlagSet {
	fs := newFlagSet("demo")
	fs.StringVar(&o.socks, "socks", defaultSOCKS, "proxy listen `HOST:PORT`: SOCKS5 and HTTP on one port")
	fs.StringVar(&o.status, "status", "127.0.0.1:1081", "loopback `HOST:PORT` of the client's status page; \"off\" for none")
	fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (0: run until interrupted)")
	fs.StringVar(&o.dash, "dashboard", "127.0.0.1:0", "loopback `HOST:PORT` of the concentrator's live web dashboard (port 0: any free one; the banner gives its address); \"off\" for none")
	// warn, not info: the demo's own status lines are what to watch.
	fs.StringVar(&o.logLevel, "log-level", "warn", "`LEVEL` of logs on stderr: debug, info, warn or error")
	return fs
}

func runDemo(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	var o demoOpts
	fs := demoFlags(&o)
	err := parseFlags(fs, args)
	var logger *slog.Logger
	if err == nil {
		logger, err = newLogger(stderr, o.logLevel)
	}
	if err == nil && o.duration < 0 {
		err = badf("--duration", "must not be negative")
	}
	if err == nil && o.dash != "off" {
		// The demo's dashboard asks for no token: loopback only.
		_, err = (&dashFlags{addr: o.dash}).resolve()
	}
	if err != nil {
		return fail(stdout, stderr, "demo", fs, err)
	}
	failed := func(err error) int { return fail(stdout, stderr, "demo", fs, err) }

	// Everything started is stopped in reverse order on the way out.
	var stops []func() error
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		return failed(err)
	}
	pin, err := pki.ParsePin(pinStr)
	if err != nil {
		return failed(err)
	}
	token := crand.Text()
	srv, err := server.Start(server.Config{
		Listen:       "127.0.0.1:0",
		Cert:         cert,
		Tokens:       []string{token},
		AllowPrivate: true, // the test HTTP server is on loopback,
		AllowOwn:     true, // the concentrator's own host
		Logger:       logger.With("side", "server"),
	})
	if err != nil {
		return failed(fmt.Errorf("start concentrator: %w", err))
	}
	stops = append(stops, srv.Close)

	relays := make([]*emu.Relay, len(demoPaths))
	paths := make([]client.PathConfig, len(demoPaths))
	for i, dp := range demoPaths {
		link := emu.Link{RateBps: dp.mbps * 1e6, Delay: dp.delay}
		r, err := emu.NewRelay("127.0.0.1:0", srv.Addr(), link, link, int64(i+1))
		if err != nil {
			return failed(fmt.Errorf("start %s relay: %w", dp.name, err))
		}
		stops = append(stops, r.Close)
		relays[i] = r
		paths[i] = client.PathConfig{
			Name:     dp.name,
			Bind:     netx.Bind{IP: netip.MustParseAddr("127.0.0.1")},
			Server:   r.Addr().String(),
			PriceGB:  dp.price,
			Medium:   dp.medium,
			Operator: dp.operator,
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return failed(fmt.Errorf("start HTTP server: %w", err))
	}
	hs := &http.Server{Handler: demoHandler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	stops = append(stops, hs.Close)

	// The demo's status address, like the client's, is optional unless
	// given: a second demo on the host runs without it.
	statusGiven := setFlags(fs)["status"]
	c, err := client.Start(context.Background(), client.Config{
		Server:         srv.Addr().String(),
		Pin:            pin,
		Token:          token,
		SOCKS:          o.socks,
		Status:         map[bool]string{true: "", false: o.status}[o.status == "off"],
		StatusOptional: !statusGiven,
		Paths:          paths,
		Logger:         logger.With("side", "client"),
	})
	if err != nil {
		return failed(clientConfigError(err))
	}
	stops = append(stops, c.Close)
	var dash *dashServer
	if o.dash != "off" {
		if dash, err = startDashboard(o.dash, "", "concentrator", serverSource(srv), logger); err != nil {
			return failed(err)
		}
		stops = append(stops, func() error { dash.Close(); return nil })
	}

	banner := func() {
		socks := c.SOCKSAddr().String()
		fmt.Fprintf(stdout, "braid demo: a concentrator on %s, reached over three emulated paths:\n", srv.Addr())
		for _, dp := range demoPaths {
			fmt.Fprintf(stdout, "  %-9s  %2.0f Mbit/s, %2d ms one way, %-9s  $%.2f/GB  %s\n",
				dp.name, dp.mbps, dp.delay.Milliseconds(), dp.medium, dp.price, dp.operator)
		}
		fmt.Fprintf(stdout, "SOCKS5 and HTTP proxy on %s; test web server on http://%s/\n", socks, ln.Addr())
		fmt.Fprintf(stdout, "Try:\n  curl --socks5-hostname %s -o /dev/null http://%s/bytes/100000000\n", socks, ln.Addr())
		fmt.Fprintf(stdout, "or, as an HTTP proxy:\n  http_proxy=http://%s curl -o /dev/null http://%s/bytes/100000000\n", socks, ln.Addr())
		if a := c.StatusAddr(); a != nil {
			fmt.Fprintf(stdout, "and, while it runs:\n  go run ./cmd/braid status --client %s\n", a)
		}
		if dash != nil {
			fmt.Fprintf(stdout, "The concentrator's live dashboard: %s\n", dash.URL())
		}
		if o.duration > 0 {
			fmt.Fprintf(stdout, "Stopping after %v.\n", o.duration)
		} else {
			fmt.Fprintln(stdout, "Stop with Ctrl-C.")
		}
	}

	var timeout <-chan time.Time
	if o.duration > 0 {
		t := time.NewTimer(o.duration)
		defer t.Stop()
		timeout = t.C
	}
	const every = 5 * time.Second
	tick := time.NewTicker(every)
	defer tick.Stop()
	// The banner waits until every path has joined (the client joins the
	// others in the background), so the first curl already uses all three.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	start := time.Now()
	last := make([]emu.Stats, len(relays))
	for {
		select {
		case <-sig:
		case <-timeout:
		case <-c.Done():
			err := c.Err()
			if err == nil {
				err = errors.New("client stopped")
			}
			return failed(err)
		case <-poll.C:
			if allPathsUp(c) || time.Since(start) > 10*time.Second {
				poll.Stop()
				banner()
			}
			continue
		case <-tick.C:
			fmt.Fprintln(stdout, statusLine(time.Since(start), every, relays, last))
			continue
		}
		break
	}
	// Stop in reverse order and report the first failure.
	var first error
	for i := len(stops) - 1; i >= 0; i-- {
		if err := stops[i](); err != nil && first == nil {
			first = err
		}
	}
	stops = nil
	if first != nil {
		return failed(fmt.Errorf("shutdown: %w", first))
	}
	return 0
}

// allPathsUp reports whether a session is up with every path up. It does
// not wait: the client may still be joining.
func allPathsUp(c *client.Client) bool {
	st := c.Status()
	if st.Session != "up" {
		return false
	}
	for _, p := range st.Paths {
		if p.State != "up" {
			return false
		}
	}
	return len(st.Paths) > 0
}

// statusLine reports each path's throughput over the last interval and its
// total, as carried by its relay (QUIC and coding overhead included).
func statusLine(elapsed, interval time.Duration, relays []*emu.Relay, last []emu.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]", elapsed.Round(time.Second))
	for i, r := range relays {
		st := r.Stats()
		down := float64(st.Down.DeliveredBytes-last[i].Down.DeliveredBytes) * 8 / interval.Seconds() / 1e6
		up := float64(st.Up.DeliveredBytes-last[i].Up.DeliveredBytes) * 8 / interval.Seconds() / 1e6
		last[i] = st
		sep := " "
		if i > 0 {
			sep = " | "
		}
		fmt.Fprintf(&b, "%s%s down %.1f up %.1f Mbit/s, %s total", sep, demoPaths[i].name, down, up,
			humanBytes(st.Down.DeliveredBytes+st.Up.DeliveredBytes))
	}
	return b.String()
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// demoHandler serves / (a short page) and /bytes/N (N random bytes, so no
// compression anywhere flatters the numbers).
func demoHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "braid demo web server.\nGET /bytes/N returns N random bytes (at most %d).\n", maxDemoBytes)
	})
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "N must be a number >= 0", http.StatusBadRequest)
			return
		}
		n = min(n, maxDemoBytes)
		var seed [32]byte
		crand.Read(seed[:])
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.CopyN(w, rand.NewChaCha8(seed), n)
	})
	return mux
}
