package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"time"

	"braid/client"
	"braid/internal/metrics"
	"braid/internal/netx"
	"braid/internal/status"
	"braid/server"
	"braid/transport"
)

// metricsOpts are the --metrics flags, the same at both ends.
type metricsOpts struct {
	addr, token, tokenFile string
}

// metricsFile is the metrics keys of either end's --config file.
type metricsFile struct {
	Metrics          string `toml:"metrics"`
	MetricsToken     string `toml:"metrics_token"`
	MetricsTokenFile string `toml:"metrics_token_file"`
}

func (o *metricsOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "metrics", "", "`HOST:PORT` serving Prometheus metrics (GET /metrics); off unless given; an address off loopback needs --metrics-token or --metrics-token-file")
	fs.StringVar(&o.token, "metrics-token", "", "bearer `TOKEN` a scrape of --metrics must carry (Authorization: Bearer TOKEN; visible in the process list: prefer --metrics-token-file)")
	fs.StringVar(&o.tokenFile, "metrics-token-file", "", "`FILE` whose first line (blank lines and #comments skipped) is the --metrics-token")
}

// fromFile takes the config file's metrics keys the command line did
// not give.
func (o *metricsOpts) fromFile(f metricsFile, set map[string]bool) {
	fromFile(&o.addr, f.Metrics, set["metrics"])
	tokenSet := set["metrics-token"] || set["metrics-token-file"]
	fromFile(&o.token, f.MetricsToken, tokenSet)
	fromFile(&o.tokenFile, f.MetricsTokenFile, tokenSet)
}

// metricsConf is the resolved --metrics: Addr "" serves none.
type metricsConf struct {
	Addr, Token string
}

// resolve checks the flags: an address, a token from at most one place,
// and a token whenever the address is not loopback (the metrics show
// every session's paths, traffic and plans).
func (o *metricsOpts) resolve() (metricsConf, error) {
	if o.addr == "" {
		switch {
		case o.token != "":
			return metricsConf{}, badf("--metrics-token", "is for --metrics, which is not given")
		case o.tokenFile != "":
			return metricsConf{}, badf("--metrics-token-file", "is for --metrics, which is not given")
		}
		return metricsConf{}, nil
	}
	host, port, err := net.SplitHostPort(o.addr)
	if err != nil {
		return metricsConf{}, badf("--metrics", "%q is not HOST:PORT", o.addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return metricsConf{}, badf("--metrics", "%q has no valid port", o.addr)
	}
	c := metricsConf{Addr: o.addr, Token: o.token}
	if o.tokenFile != "" {
		if o.token != "" {
			return metricsConf{}, badf("--metrics-token-file", "give either --metrics-token or --metrics-token-file")
		}
		toks, err := readTokenFile(o.tokenFile)
		if err != nil {
			return metricsConf{}, badf("--metrics-token-file", "%v", err)
		}
		if len(toks) == 0 {
			return metricsConf{}, badf("--metrics-token-file", "%s holds no token", o.tokenFile)
		}
		c.Token = toks[0]
	}
	if c.Token == "" && !netx.LoopbackHost(host) {
		return metricsConf{}, badf("--metrics", "%s is not a loopback address: give --metrics-token or --metrics-token-file, or listen on 127.0.0.1", o.addr)
	}
	return c, nil
}

// serverMetrics returns the server command line's --metrics settings
// (with its config file's), checked.
func serverMetrics(args []string) (metricsConf, error) {
	o, err := serverEdge(args)
	if err != nil {
		return metricsConf{}, err
	}
	return o.metrics.resolve()
}

// clientMetrics is serverMetrics for the client's command line.
func clientMetrics(args []string) (metricsConf, error) {
	o, err := clientEdge(args)
	if err != nil {
		return metricsConf{}, err
	}
	return o.metrics.resolve()
}

// metricsServer serves GET /metrics.
type metricsServer struct {
	ln    net.Listener
	token string
	log   *slog.Logger
	srv   *http.Server // set by serve
}

// listenMetrics listens on c.Addr, before the end it serves starts, so
// that an address it cannot have is a usage error (naming --metrics)
// with nothing started; with no address it returns nil. serve starts
// answering.
func listenMetrics(c metricsConf, log *slog.Logger) (*metricsServer, error) {
	if c.Addr == "" {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		reason := err.Error()
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			reason = oe.Err.Error()
		}
		return nil, badf("--metrics", "cannot listen on %s: %s", c.Addr, reason)
	}
	return &metricsServer{ln: ln, token: c.Token, log: log}, nil
}

// serve answers GET /metrics with src's metrics until Close; nil is
// fine (no --metrics).
func (m *metricsServer) serve(src metrics.Source) {
	if m == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(src, m.token))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelDebug)}
	go m.srv.Serve(m.ln)
	m.log.Info("metrics listening", "addr", m.ln.Addr().String(), "token", m.token != "")
}

// Close stops serving and listening; nil is fine.
func (m *metricsServer) Close() {
	switch {
	case m == nil:
	case m.srv != nil:
		m.srv.Close() // and ln
	default:
		m.ln.Close()
	}
}

// metricsSession is one live session as the metrics show it; u is
// scratch space, reused from one session to the next.
func metricsSession(ss *transport.Session, now time.Time, u *transport.Usage) metrics.Session {
	paths, plans, sum := status.Describe(ss, nil, now)
	held := ss.Held()
	st := ss.Stats()
	m := metrics.Session{ID: ss.Name(), Paths: paths, Plans: plans, Tier: sum.Tier,
		Flows: ss.NumFlows(), FlowsByClass: sum.FlowsByClass, Started: ss.Started(),
		HeldSend: held.Send, HeldWindow: held.Window, HeldReassembly: held.Reassembly,
		MalformedDatagrams: st.DatagramsMalformed.Load(), ProtocolErrors: st.ProtocolErrors.Load()}
	ss.Usage(u)
	m.Classes = make([]metrics.Class, 0, len(u.Classes))
	for i, c := range u.Classes {
		p99, n := ss.BlockAckP99(i)
		m.Classes = append(m.Classes, metrics.Class{Name: c.Name, Offered: c.Offered, Delivered: c.Delivered, AckP99: p99, AckBlocks: n})
	}
	return m
}

func slaWindows(counts []transport.SLACount) []metrics.SLAWindow {
	out := make([]metrics.SLAWindow, len(counts))
	for i, c := range counts {
		out[i] = metrics.SLAWindow{Tier: c.Tier, Class: c.Class, Met: c.Met, Missed: c.Missed}
	}
	return out
}

// metricsServerSource reads a concentrator's metrics.
func metricsServerSource(srv *server.Server) metrics.Source {
	return metrics.SourceFunc(func() metrics.Snapshot {
		now := time.Now()
		c := srv.Counters()
		snap := metrics.Snapshot{Server: &metrics.ServerCounters{
			JoinsRefused:        c.JoinsRefused,
			BadJoins:            c.UnreadableJoins,
			HandshakesRefused:   c.HandshakesRefused,
			Retries:             c.Retries,
			DestinationsRefused: c.DestinationsRefused,
			SessionsOpened:      c.SessionsOpened,
			MaxSessions:         c.MaxSessions,
			UDPDrops: map[string]uint64{"refused": c.UDP.Refused, "too_many": c.UDP.TooMany, "unresolved": c.UDP.Unresolved,
				"limited": c.UDP.Limited, "stranger": c.UDP.Stranger, "send_error": c.UDP.SendError},
		}, SLAWindows: slaWindows(c.SLAWindows)}
		sessions := srv.Sessions()
		snap.Sessions = make([]metrics.Session, 0, len(sessions))
		var u transport.Usage
		for _, ss := range sessions {
			snap.Sessions = append(snap.Sessions, metricsSession(ss, now, &u))
		}
		return snap
	})
}

// metricsClientSource reads a client's metrics; sla counts its sessions' SLA
// windows (its transport config's SLAWindows).
func metricsClientSource(c *client.Client, sla *transport.SLAWindows) metrics.Source {
	return metrics.SourceFunc(func() metrics.Snapshot {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the session up now, without waiting for one
		ss, _ := c.WaitSession(ctx)
		snap := metrics.Snapshot{Client: &metrics.ClientCounters{Up: ss != nil, SessionsOpened: uint64(c.Status().Sessions)},
			SLAWindows: slaWindows(sla.Counts())}
		if ss != nil {
			snap.Sessions = []metrics.Session{metricsSession(ss, time.Now(), new(transport.Usage))}
		}
		return snap
	})
}
