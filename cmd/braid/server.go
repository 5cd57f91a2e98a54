package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"braid/internal/pki"
	"braid/internal/policyfile"
	"braid/server"
)

type serverOpts struct {
	listen, cert, key string
	tokens            strList
	tokenFile         string
	allowPrivate      bool
	allowOwn          bool
	ownAddrs          strList
	memoryBudget      int
	drainTimeout      time.Duration
	status            string
	scheduler, policy string
	config, logLevel  string
	packetCoding      string
	measuredPacing    string

	maxSessions, maxSessionsPerToken int

	metrics metricsOpts // metrics.go
	dash    dashFlags

	accounting, accountingID string // accounting.go
}

// serverFile is the server's --config file.
type serverFile struct {
	Listen       string   `toml:"listen"`
	Cert         string   `toml:"cert"`
	Key          string   `toml:"key"`
	Tokens       []string `toml:"tokens"`
	TokenFile    string   `toml:"token_file"`
	AllowPrivate bool     `toml:"allow_private"`
	LogLevel     string   `toml:"log_level"`
	Scheduler    string   `toml:"scheduler"`
	Policy       string   `toml:"policy"`
	// Pointers: 0 is an error, not the same as leaving the key out.
	AllowOwn            bool     `toml:"allow_own"`
	OwnAddrs            []string `toml:"own_addr"`
	MemoryBudget        *int     `toml:"memory_budget"`
	DrainTimeout        string   `toml:"drain_timeout"`
	Status              string   `toml:"status"`
	MaxSessions         *int     `toml:"max_sessions"`
	MaxSessionsPerToken *int     `toml:"max_sessions_per_token"`
	PacketCoding        string   `toml:"packet_coding"`
	// MeasuredPacing is "on" or "off", as --measured-pacing.
	MeasuredPacing string `toml:"measured_pacing"`
	// Accounting and AccountingID are --accounting and --accounting-id
	// (accounting.go).
	Accounting   string `toml:"accounting"`
	AccountingID string `toml:"accounting_id"`
	// metrics, metrics_token, metrics_token_file (metrics.go).
	metricsFile
	// The dashboard's keys (dashboard.go).
	dashFile
}

func serverFlags(o *serverOpts) *flag.FlagSet {
	fs := newFlagSet("server")
	fs.StringVar(&o.listen, "listen", "", "UDP `HOST:PORT` to listen on (required)")
	fs.StringVar(&o.cert, "cert", "", "certificate `FILE` from braid keygen (required)")
	fs.StringVar(&o.key, "key", "", "private key `FILE` from braid keygen (required)")
	fs.Var(&o.tokens, "token", "a `TOKEN` clients may use (repeatable)")
	fs.StringVar(&o.tokenFile, "token-file", "", "`FILE` of tokens, one per line; blank lines and #comments are ignored")
	fs.BoolVar(&o.allowPrivate, "allow-private", false, "let flows reach private, link-local and other special-purpose destinations (not this host's own: see --allow-own)")
	fs.BoolVar(&o.allowOwn, "allow-own", false, "let flows reach this host's own addresses, loopback included (whatever listens here, firewalled or not)")
	fs.Var(&o.ownAddrs, "own-addr", "an `IP` of this host on none of its interfaces (a public address behind 1:1 NAT), refused as a destination (repeatable)")
	fs.StringVar(&o.status, "status", "", "`HOST:PORT` serving every session's paths and plans as JSON (GET /status); it shows clients' traffic: keep it on loopback or a management network")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM or SIGINT, how long live flows may go on while clients move to a new session (a second signal ends them at once)")
	fs.IntVar(&o.memoryBudget, "memory-budget", 192, "`MiB` of flow data all sessions together may hold (sent and unacknowledged, or granted to receive)")
	fs.StringVar(&o.scheduler, "scheduler", "", "`POLICY` by which downloads are spread over a client's paths: bestvalue (the default with --policy), weighted (the default without; cheapest when the client's paths have a price), cheapest, minrtt, roundrobin, duplicate or single:PATH")
	fs.StringVar(&o.policy, "policy", "", "policy `FILE` (.toml, .yaml or .yml): tiers with revenue and SLAs, tokens to tiers, default path prices; SIGHUP reloads it")
	fs.IntVar(&o.maxSessions, "max-sessions", 1024, "at most `N` concurrent sessions, all tokens together")
	fs.IntVar(&o.maxSessionsPerToken, "max-sessions-per-token", 8, "at most `N` concurrent sessions of one token; a tier's max_sessions in the --policy file wins for its tokens")
	fs.StringVar(&o.packetCoding, "packet-coding", "on", packetCodingUsage)
	fs.StringVar(&o.measuredPacing, "measured-pacing", "on", measuredPacingUsage)
	o.metrics.register(fs)
	fs.StringVar(&o.config, "config", "", "TOML config `FILE`; flags win over it")
	fs.StringVar(&o.logLevel, "log-level", "info", "`LEVEL` of logs on stderr: debug, info, warn or error")
	accountingFlags(fs, o)
	o.dash.add(fs)
	return fs
}

// parseServer turns the server's command line (and config file) into a
// validated server.Config whose Logger writes to logOut. It starts nothing.
func parseServer(args []string, logOut io.Writer) (server.Config, error) {
	var o serverOpts
	fs := serverFlags(&o)
	if err := parseFlags(fs, args); err != nil {
		return server.Config{}, err
	}
	if _, _, err := serverDashboard(args); err != nil {
		return server.Config{}, err
	}
	if o.config != "" {
		var f serverFile
		if err := decodeFile(o.config, &f); err != nil {
			return server.Config{}, err
		}
		set := setFlags(fs)
		fromFile(&o.listen, f.Listen, set["listen"])
		fromFile(&o.cert, f.Cert, set["cert"])
		fromFile(&o.key, f.Key, set["key"])
		fromFile(&o.tokenFile, f.TokenFile, set["token-file"])
		fromFile(&o.logLevel, f.LogLevel, set["log-level"])
		fromFile(&o.scheduler, f.Scheduler, set["scheduler"])
		fromFile(&o.policy, f.Policy, set["policy"])
		if !set["token"] {
			o.tokens = f.Tokens
		}
		if !set["allow-private"] {
			o.allowPrivate = f.AllowPrivate
		}
		if !set["allow-own"] {
			o.allowOwn = f.AllowOwn
		}
		if !set["own-addr"] {
			o.ownAddrs = f.OwnAddrs
		}
		fromFile(&o.status, f.Status, set["status"])
		fromFile(&o.packetCoding, f.PacketCoding, set["packet-coding"])
		fromFile(&o.measuredPacing, f.MeasuredPacing, set["measured-pacing"])
		if f.DrainTimeout != "" && !set["drain-timeout"] {
			d, err := time.ParseDuration(f.DrainTimeout)
			if err != nil {
				return server.Config{}, badf("--drain-timeout", "%q is not a duration like 30s", f.DrainTimeout)
			}
			o.drainTimeout = d
		}
		if f.MemoryBudget != nil && !set["memory-budget"] {
			o.memoryBudget = *f.MemoryBudget
		}
		if f.MaxSessions != nil && !set["max-sessions"] {
			o.maxSessions = *f.MaxSessions
		}
		if f.MaxSessionsPerToken != nil && !set["max-sessions-per-token"] {
			o.maxSessionsPerToken = *f.MaxSessionsPerToken
		}
	}
	// server.Config takes 0 for its default; here 0 is a mistake.
	if o.drainTimeout < 0 {
		return server.Config{}, badf("--drain-timeout", "must not be negative")
	}
	if o.memoryBudget < 16 || o.memoryBudget > 1<<20 {
		return server.Config{}, badf("--memory-budget", "%d is outside 16..1048576 MiB", o.memoryBudget)
	}
	var own []netip.Addr
	for _, a := range o.ownAddrs {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return server.Config{}, badf("--own-addr", "%q is not an IP address", a)
		}
		own = append(own, ip)
	}
	if o.maxSessions < 1 {
		return server.Config{}, badf("--max-sessions", "must be at least 1")
	}
	if o.maxSessionsPerToken < 1 {
		return server.Config{}, badf("--max-sessions-per-token", "must be at least 1")
	}

	logger, err := newLogger(logOut, o.logLevel)
	if err != nil {
		return server.Config{}, err
	}
	tokens := append([]string(nil), o.tokens...)
	if o.tokenFile != "" {
		more, err := readTokenFile(o.tokenFile)
		if err != nil {
			return server.Config{}, badf("--token-file", "%v", err)
		}
		tokens = append(tokens, more...)
	}
	// Read each file first so the error names the flag that points at the
	// unreadable one; LoadServerCert's own errors name the file.
	switch {
	case o.cert == "":
		return server.Config{}, badf("--cert", "is required (braid keygen writes one)")
	case o.key == "":
		return server.Config{}, badf("--key", "is required (braid keygen writes one)")
	}
	if _, err := os.ReadFile(o.cert); err != nil {
		return server.Config{}, badf("--cert", "%v", err)
	}
	if _, err := os.ReadFile(o.key); err != nil {
		return server.Config{}, badf("--key", "%v", err)
	}
	cert, _, err := pki.LoadServerCert(o.cert, o.key)
	if err != nil {
		return server.Config{}, badf("--cert", "%s", strings.TrimPrefix(err.Error(), "pki: "))
	}

	cfg := server.Config{
		Listen:       o.listen,
		Cert:         cert,
		Tokens:       tokens,
		AllowPrivate: o.allowPrivate,
		AllowOwn:     o.allowOwn,
		OwnAddrs:     own,
		MemoryBudget: int64(o.memoryBudget) << 20,
		DrainTimeout: o.drainTimeout,
		Status:       o.status,
		Logger:       logger,

		MaxSessions:         o.maxSessions,
		MaxSessionsPerToken: o.maxSessionsPerToken,
	}
	cfg.Transport.Logger = logger
	cfg.Transport.Policy = o.scheduler
	if cfg.Transport.NoMeasuredPacing, err = parseOff("--measured-pacing", o.measuredPacing); err != nil {
		return cfg, err
	}
	if cfg.Transport.NoPacketCoding, err = parseOff("--packet-coding", o.packetCoding); err != nil {
		return server.Config{}, err
	}
	if o.policy != "" {
		p, err := policyfile.Load(o.policy)
		if err != nil {
			return server.Config{}, badf("--policy", "%v", err)
		}
		cfg.Policy = p
		if o.scheduler == "" {
			cfg.Transport.Policy = "bestvalue"
		}
	}
	// Validate a filled copy: the caller gets the config as given and
	// server.Start applies the same defaults.
	check := cfg
	check.Fill()
	if err := check.Validate(); err != nil {
		return server.Config{}, serverConfigError(err)
	}
	if _, err := serverMetrics(args); err != nil {
		return server.Config{}, err
	}
	return cfg, nil
}

func serverConfigError(err error) error {
	var ce *server.ConfigError
	if errors.As(err, &ce) {
		return flagForField(ce.Field, ce.Reason)
	}
	return err
}

// readTokenFile reads one token per line, ignoring surrounding spaces,
// blank lines and lines starting with #.
func readTokenFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var tokens []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tokens = append(tokens, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return tokens, nil
}

// policyPath is the --policy file of a command line (or its config file).
func policyPath(args []string) string {
	var o serverOpts
	fs := serverFlags(&o)
	if parseFlags(fs, args) != nil {
		return ""
	}
	if o.config != "" && !setFlags(fs)["policy"] {
		var f serverFile
		if decodeFile(o.config, &f) == nil {
			return f.Policy
		}
	}
	return o.policy
}

func runServer(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	cfg, err := parseServer(args, stderr)
	if err != nil {
		return fail(stdout, stderr, "server", serverFlags(new(serverOpts)), err)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit a little above the flow data the budget allows
		// makes the collector work harder before the heap doubles past
		// it (GOGC's default), so the process stays near its budget.
		debug.SetMemoryLimit(cfg.MemoryBudget + 256<<20)
	}
	closeAccounting, err := startAccounting(args, &cfg)
	if err != nil {
		return fail(stdout, stderr, "server", nil, err)
	}
	defer closeAccounting()
	var ms *metricsServer
	mc, err := serverMetrics(args) // metrics.go
	if err == nil {
		ms, err = listenMetrics(mc, cfg.Logger)
	}
	if err != nil {
		return fail(stdout, stderr, "server", nil, err)
	}
	defer ms.Close()
	srv, err := server.Start(cfg)
	if err != nil {
		return fail(stdout, stderr, "server", nil, serverConfigError(err))
	}
	ms.serve(metricsServerSource(srv))
	dash, err := startServerDashboard(args, srv, cfg.Logger)
	if err != nil {
		srv.Close()
		return fail(stdout, stderr, "server", nil, err)
	}
	defer dash.Close()
	// The pin is what clients need; saying it here saves a trip to keygen's output.
	cfg.Logger.Info("concentrator key", "addr", srv.Addr().String(), "pin", pki.Pin(cfg.Cert.Leaf))
	var s os.Signal
	for s = range sig {
		if s != syscall.SIGHUP {
			break
		}
		// Reload the policy file; a broken one leaves the old in force.
		path := policyPath(args)
		if path == "" {
			cfg.Logger.Warn("SIGHUP: no --policy file to reload")
			continue
		}
		p, err := policyfile.Load(path)
		if err != nil {
			cfg.Logger.Error("policy not reloaded, the old one stays", "file", path, "err", err)
			continue
		}
		srv.SetPolicy(p)
		cfg.Logger.Info("policy reloaded", "file", path, "tiers", len(p.Tiers))
	}
	// Drain: no new sessions, clients told to go elsewhere, live flows
	// finish up to the drain timeout or a second signal.
	cfg.Logger.Info("draining", "signal", s, "timeout", cfg.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	drained := make(chan struct{})
	defer close(drained)
	go func() {
		for {
			select {
			case s := <-sig:
				if s != syscall.SIGHUP {
					cfg.Logger.Info("second signal: closing now", "signal", s)
					cancel()
					return
				}
			case <-drained:
				return
			}
		}
	}()
	if err := srv.Drain(ctx); err != nil {
		return fail(stdout, stderr, "server", nil, fmt.Errorf("shutdown: %w", err))
	}
	cfg.Logger.Info("concentrator stopped")
	return 0
}
