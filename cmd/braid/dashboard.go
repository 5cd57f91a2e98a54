package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"braid/client"
	"braid/internal/dashboard"
	"braid/internal/netx"
	"braid/server"
	"braid/transport"
)

// dashFlags are the --dashboard flags of braid server and braid client.
type dashFlags struct {
	addr, token, tokenFile string
}

func (d *dashFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&d.addr, "dashboard", "", "`HOST:PORT` serving a live web dashboard (sessions, paths, plans, cost and revenue) at /; loopback unless a --dashboard-token is given")
	fs.StringVar(&d.token, "dashboard-token", "", "`TOKEN` the dashboard asks for (bearer header, or open /?token=TOKEN once in a browser); required for a non-loopback --dashboard (visible in the process list: prefer --dashboard-token-file)")
	fs.StringVar(&d.tokenFile, "dashboard-token-file", "", "`FILE` whose first line (blank lines and #comments skipped) is the --dashboard-token")
}

// resolve checks the flags and returns the dashboard's token: a
// non-loopback address without one is a usage error, since the page
// shows every session's traffic and money.
func (d *dashFlags) resolve() (string, error) {
	tok := d.token
	if d.tokenFile != "" {
		if tok != "" {
			return "", badf("--dashboard-token-file", "give it or --dashboard-token, not both")
		}
		toks, err := readTokenFile(d.tokenFile)
		if err != nil {
			return "", badf("--dashboard-token-file", "%v", err)
		}
		if len(toks) == 0 {
			return "", badf("--dashboard-token-file", "%s holds no token", d.tokenFile)
		}
		tok = toks[0]
	}
	if d.addr == "" {
		if tok != "" {
			return "", badf("--dashboard-token", "is for --dashboard")
		}
		return "", nil
	}
	host, port, err := net.SplitHostPort(d.addr)
	if err != nil {
		return "", badf("--dashboard", "%q is not HOST:PORT: %v", d.addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", badf("--dashboard", "%q: bad port", d.addr)
	}
	if tok == "" && !netx.LoopbackHost(host) {
		return "", badf("--dashboard", "%s is not a loopback address: give --dashboard-token (or --dashboard-token-file) to serve it there", d.addr)
	}
	// A browser keeps the token in a cookie: bytes a cookie cannot hold
	// would be dropped from it, and the page would never load.
	if len(tok) > 255 || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' || strings.ContainsRune("\";,\\", r) }) {
		return "", badf("--dashboard-token", "is 1 to 255 bytes of printable ASCII without spaces, quotes, commas, semicolons or backslashes")
	}
	return tok, nil
}

// dashServer is a running dashboard and its HTTP server.
type dashServer struct {
	d    *dashboard.Dashboard
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
}

// startDashboard serves a dashboard of src at addr (nothing when addr
// is "").
func startDashboard(addr, token, role string, src dashboard.Source, log *slog.Logger) (*dashServer, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard listener: %w", err)
	}
	d, err := dashboard.New(dashboard.Config{Role: role, Source: src, Token: token, Logger: log})
	if err != nil {
		ln.Close()
		return nil, err
	}
	// No write timeout: the live stream is one long response, with a
	// deadline per event of its own.
	ds := &dashServer{d: d, ln: ln, done: make(chan struct{}), srv: &http.Server{Handler: d,
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}}
	go func() {
		defer close(ds.done)
		if err := ds.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && log != nil {
			log.Error("dashboard stopped", "err", err)
		}
	}()
	if log != nil {
		log.Info("dashboard", "url", ds.URL())
	}
	return ds, nil
}

// URL is the address to open in a browser.
func (ds *dashServer) URL() string { return "http://" + ds.ln.Addr().String() + "/" }

// Close ends the dashboard: its live pages, then its server.
func (ds *dashServer) Close() {
	if ds == nil {
		return
	}
	ds.d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ds.srv.Shutdown(ctx) != nil {
		ds.srv.Close()
	}
	<-ds.done
}

// serverSource reads every live session of a concentrator.
func serverSource(srv *server.Server) dashboard.Source {
	return dashboard.Live(srv.Sessions, nil, srv.Tenant)
}

// clientSource reads a client's session, if one is up, and its state.
func clientSource(c *client.Client) dashboard.Source {
	done, cancel := context.WithCancel(context.Background())
	cancel() // WaitSession with a done context returns at once
	return dashboard.Live(func() []*transport.Session {
		if s, err := c.WaitSession(done); err == nil {
			return []*transport.Session{s}
		}
		return nil
	}, func() string {
		select {
		case <-c.Done():
			return "stopped"
		default:
		}
		if _, err := c.WaitSession(done); err == nil {
			return "up"
		}
		return "connecting"
	}, nil)
}

// dashFile is the dashboard's keys in a --config file, server's or
// client's.
type dashFile struct {
	Dashboard          string `toml:"dashboard"`
	DashboardToken     string `toml:"dashboard_token"`
	DashboardTokenFile string `toml:"dashboard_token_file"`
}

// fill takes the file's keys where no flag was given.
func (d *dashFlags) fill(f dashFile, set map[string]bool) {
	fromFile(&d.addr, f.Dashboard, set["dashboard"])
	fromFile(&d.token, f.DashboardToken, set["dashboard-token"])
	fromFile(&d.tokenFile, f.DashboardTokenFile, set["dashboard-token-file"])
}

// serverEdge parses a concentrator's command line and its config file
// for the settings of the edge's own servers (dashboard, metrics,
// accounting), the file's keys taken where no flag was given.
func serverEdge(args []string) (*serverOpts, error) {
	var o serverOpts
	fs := serverFlags(&o)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if o.config != "" {
		var f serverFile
		if err := decodeFile(o.config, &f); err != nil {
			return nil, err
		}
		set := setFlags(fs)
		o.dash.fill(f.dashFile, set)
		o.metrics.fromFile(f.metricsFile, set)
		fromFile(&o.accounting, f.Accounting, set["accounting"])
		fromFile(&o.accountingID, f.AccountingID, set["accounting-id"])
	}
	return &o, nil
}

// clientEdge is serverEdge for a client's command line.
func clientEdge(args []string) (*clientOpts, error) {
	var o clientOpts
	fs := clientFlags(&o)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if o.config != "" {
		var f clientFile
		if err := decodeFile(o.config, &f); err != nil {
			return nil, err
		}
		set := setFlags(fs)
		o.dash.fill(f.dashFile, set)
		o.metrics.fromFile(f.metricsFile, set)
	}
	return &o, nil
}

// serverDashboard returns the dashboard settings of a concentrator's
// command line and config file, and its token.
func serverDashboard(args []string) (dashFlags, string, error) {
	o, err := serverEdge(args)
	if err != nil {
		return dashFlags{}, "", err
	}
	tok, err := o.dash.resolve()
	return o.dash, tok, err
}

// clientDashboard is serverDashboard for a client's command line.
func clientDashboard(args []string) (dashFlags, string, error) {
	o, err := clientEdge(args)
	if err != nil {
		return dashFlags{}, "", err
	}
	tok, err := o.dash.resolve()
	return o.dash, tok, err
}

// startServerDashboard starts the dashboard a concentrator's command
// line asks for (parseServer has checked it).
func startServerDashboard(args []string, srv *server.Server, log *slog.Logger) (*dashServer, error) {
	d, tok, err := serverDashboard(args)
	if err != nil {
		return nil, err
	}
	return startDashboard(d.addr, tok, "concentrator", serverSource(srv), log)
}

// startClientDashboard starts the dashboard a client's command line asks
// for (parseClient has checked it).
func startClientDashboard(args []string, c *client.Client, log *slog.Logger) (*dashServer, error) {
	d, tok, err := clientDashboard(args)
	if err != nil {
		return nil, err
	}
	return startDashboard(d.addr, tok, "client", clientSource(c), log)
}
