package main

import (
	"braid/scheduler"
	"braid/transport/wire"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"braid/client"
	"braid/internal/pki"
	"braid/transport"
)

type clientOpts struct {
	servers              strList
	pin, token           string
	tokenFile            string
	socks                string
	socksUser, socksPass string
	paths                strList
	fec, grace, sched    string
	status               string
	config, logLevel     string
	cpu                  string
	mtu                  int
	metered              bool
	packetCoding         string
	measuredPacing       string
	metrics              metricsOpts // metrics.go

	dash dashFlags
}

// clientFile is the client's --config file.
type clientFile struct {
	Server    string   `toml:"server"`
	Servers   []string `toml:"servers"`
	Pin       string   `toml:"pin"`
	Token     string   `toml:"token"`
	TokenFile string   `toml:"token_file"`
	Socks     string   `toml:"socks"`
	SocksUser string   `toml:"socks_user"`
	SocksPass string   `toml:"socks_pass"`
	LogLevel  string   `toml:"log_level"`
	FEC       string   `toml:"fec"`
	Grace     string   `toml:"grace"`
	Scheduler string   `toml:"scheduler"`
	Status    string   `toml:"status"`
	CPU       string   `toml:"cpu"`
	MTU       int      `toml:"mtu"`
	Metered   bool     `toml:"metered"`
	// PacketCoding is "on" or "off", as --packet-coding.
	PacketCoding string `toml:"packet_coding"`
	// MeasuredPacing is "on" or "off", as --measured-pacing.
	MeasuredPacing string      `toml:"measured_pacing"`
	Paths          []pathTable `toml:"path"`
	// metrics, metrics_token, metrics_token_file (metrics.go).
	metricsFile
	// The dashboard's keys (dashboard.go).
	dashFile
}

// pathTable is one [[path]] table: a name and either a spec as --path
// takes it or the spec's keys one by one.
type pathTable struct {
	Name     string  `toml:"name"`
	Spec     string  `toml:"spec"`
	IP       string  `toml:"ip"`
	Dev      string  `toml:"dev"`
	Server   string  `toml:"server"`
	Conns    int     `toml:"conns"`
	Price    float64 `toml:"price"`
	Medium   string  `toml:"medium"`
	Operator string  `toml:"operator"`
	STUN     string  `toml:"stun"`
}

const defaultSOCKS = "127.0.0.1:1080"

func clientFlags(o *clientOpts) *flag.FlagSet {
	fs := newFlagSet("client")
	fs.Var(&o.servers, "server", "concentrator `HOST:PORT` (required unless every path has server=); repeat it for others to move to when one drains or cannot be reached")
	fs.StringVar(&o.pin, "pin", "", "the concentrator's key `PIN` (sha256:..., printed by braid keygen)")
	fs.StringVar(&o.token, "token", "", "`TOKEN` the concentrator accepts (visible to other users in the process list: prefer --token-file)")
	fs.StringVar(&o.tokenFile, "token-file", "", "`FILE` whose first line (blank lines and #comments skipped) is the token")
	fs.StringVar(&o.socks, "socks", defaultSOCKS, "proxy listen `HOST:PORT`: SOCKS5 and HTTP (CONNECT and plain) on one port")
	fs.StringVar(&o.socksUser, "socks-user", "", "require this proxy `USER` (with --socks-pass), of SOCKS5 and HTTP (Proxy-Authorization: Basic) clients")
	fs.StringVar(&o.socksPass, "socks-pass", "", "require this proxy password `PASS` (with --socks-user)")
	fs.Var(&o.paths, "path", "a network path `NAME=SPEC` (repeatable; see above)")
	fs.StringVar(&o.fec, "fec", "", "erasure coding `K,M`: up to K data shards plus M parity shards per block (default 8,0)")
	fs.StringVar(&o.status, "status", "127.0.0.1:1081", "loopback `HOST:PORT` of the status page (GET /status; braid status reads it); \"off\" for none; the default, if taken, is skipped with a warning")
	fs.StringVar(&o.sched, "scheduler", "", "`POLICY` by which uploads are spread over the paths: weighted (the default; cheapest when paths have a price), bestvalue (by the tier the concentrator pushes), cheapest, minrtt, roundrobin, duplicate or single:PATH")
	fs.StringVar(&o.grace, "grace", "", "how long flows wait for a live path before failing, a `DURATION` like 30s (default 30s)")
	fs.StringVar(&o.cpu, "cpu", "mid", "this device's CPU `CLASS` (low, mid or high), for the concentrator's plan: a low one gets bigger shards")
	fs.IntVar(&o.mtu, "mtu", 0, "this device's path `MTU` in bytes (default 1500)")
	fs.BoolVar(&o.metered, "metered", false, "this device pays per byte itself (a phone's data plan)")
	fs.StringVar(&o.packetCoding, "packet-coding", "on", packetCodingUsage)
	fs.StringVar(&o.measuredPacing, "measured-pacing", "on", measuredPacingUsage)
	o.metrics.register(fs)
	fs.StringVar(&o.config, "config", "", "TOML config `FILE`; flags win over it")
	fs.StringVar(&o.logLevel, "log-level", "info", "`LEVEL` of logs on stderr: debug, info, warn or error")
	o.dash.add(fs)
	return fs
}

// parseClient turns the client's command line (and config file) into a
// validated client.Config whose Logger writes to logOut. It starts nothing.
// With no path given, Paths stays empty: one path over the default route.
func parseClient(args []string, logOut io.Writer) (client.Config, error) {
	var o clientOpts
	fs := clientFlags(&o)
	if err := parseFlags(fs, args); err != nil {
		return client.Config{}, err
	}
	if _, _, err := clientDashboard(args); err != nil {
		return client.Config{}, err
	}
	var filePaths []pathTable
	set := setFlags(fs)
	statusGiven := set["status"]
	if o.config != "" {
		var f clientFile
		if err := decodeFile(o.config, &f); err != nil {
			return client.Config{}, err
		}
		statusGiven = statusGiven || f.Status != ""
		if !set["server"] {
			if f.Server != "" {
				o.servers = append(o.servers, f.Server)
			}
			o.servers = append(o.servers, f.Servers...)
		}
		fromFile(&o.pin, f.Pin, set["pin"])
		fromFile(&o.token, f.Token, set["token"] || set["token-file"])
		fromFile(&o.tokenFile, f.TokenFile, set["token-file"] || set["token"])
		fromFile(&o.socks, f.Socks, set["socks"])
		fromFile(&o.socksUser, f.SocksUser, set["socks-user"])
		fromFile(&o.socksPass, f.SocksPass, set["socks-pass"])
		fromFile(&o.fec, f.FEC, set["fec"])
		fromFile(&o.grace, f.Grace, set["grace"])
		fromFile(&o.sched, f.Scheduler, set["scheduler"])
		fromFile(&o.cpu, f.CPU, set["cpu"])
		fromFile(&o.packetCoding, f.PacketCoding, set["packet-coding"])
		fromFile(&o.measuredPacing, f.MeasuredPacing, set["measured-pacing"])
		if !set["mtu"] && f.MTU != 0 {
			o.mtu = f.MTU
		}
		if !set["metered"] && f.Metered {
			o.metered = true
		}
		fromFile(&o.status, f.Status, set["status"])
		fromFile(&o.logLevel, f.LogLevel, set["log-level"])
		if !set["path"] {
			filePaths = f.Paths
		}
	}

	logger, err := newLogger(logOut, o.logLevel)
	if err != nil {
		return client.Config{}, err
	}
	if o.tokenFile != "" {
		if o.token != "" {
			return client.Config{}, badf("--token-file", "give either --token or --token-file")
		}
		toks, err := readTokenFile(o.tokenFile)
		if err != nil {
			return client.Config{}, badf("--token-file", "%v", err)
		}
		if len(toks) == 0 {
			return client.Config{}, badf("--token-file", "%s holds no token", o.tokenFile)
		}
		o.token = toks[0]
	}
	cfg := client.Config{
		Server:    first(o.servers),
		Token:     o.token,
		SOCKS:     o.socks,
		SOCKSUser: o.socksUser,
		SOCKSPass: o.socksPass,
		Logger:    logger,
	}
	cfg.Transport.Logger = logger
	if len(o.servers) > 1 {
		cfg.MoreServers = o.servers[1:]
	}
	switch {
	case o.socksUser != "" && o.socksPass == "":
		return client.Config{}, badf("--socks-user", "needs --socks-pass too")
	case o.socksUser == "" && o.socksPass != "":
		return client.Config{}, badf("--socks-pass", "needs --socks-user too")
	}
	if o.pin != "" {
		if cfg.Pin, err = pki.ParsePin(o.pin); err != nil {
			return client.Config{}, badf("--pin", "%s", strings.TrimPrefix(err.Error(), "pki: pin "))
		}
	}
	if o.fec != "" {
		if cfg.Transport.K, cfg.Transport.M, err = parseFEC(o.fec); err != nil {
			return client.Config{}, err
		}
	}
	cfg.Transport.Policy = o.sched
	cpu, err := scheduler.ParseCPUClass(o.cpu)
	if err != nil {
		return client.Config{}, badf("--cpu", "%q is not low, mid or high", o.cpu)
	}
	if o.mtu != 0 && (o.mtu < 576 || o.mtu > 65535) {
		return client.Config{}, badf("--mtu", "%d is outside 576..65535", o.mtu)
	}
	cfg.Transport.Device = wire.Device{MTU: uint16(o.mtu), CPU: uint8(cpu), Metered: o.metered}
	if cfg.Transport.NoMeasuredPacing, err = parseOff("--measured-pacing", o.measuredPacing); err != nil {
		return client.Config{}, err
	}
	if cfg.Transport.NoPacketCoding, err = parseOff("--packet-coding", o.packetCoding); err != nil {
		return client.Config{}, err
	}
	if o.status != "off" {
		cfg.Status = o.status
		// The default address is one the user did not ask for: a second
		// client on the host finds it taken and runs without a status page.
		cfg.StatusOptional = !statusGiven
	}
	if o.grace != "" {
		if cfg.Transport.Grace, err = time.ParseDuration(o.grace); err != nil {
			return client.Config{}, badf("--grace", "%q is not a duration like 30s or 2m", o.grace)
		}
		if cfg.Transport.Grace == 0 {
			// Zero means "default" to the transport; say so rather than
			// silently waiting 30 s.
			return client.Config{}, badf("--grace", "must be more than 0")
		}
	}
	for _, arg := range o.paths {
		if strings.TrimSpace(arg) == "auto" {
			cfg.AutoPaths = true // one path per usable interface, following hot-plug
			continue
		}
		p, err := parsePath(arg)
		if err != nil {
			return client.Config{}, err
		}
		cfg.Paths = append(cfg.Paths, p)
	}
	for i, t := range filePaths {
		p, err := pathFromTable(i, t)
		if err != nil {
			return client.Config{}, err
		}
		cfg.Paths = append(cfg.Paths, p)
	}
	seen := map[string]bool{}
	for _, p := range cfg.Paths {
		if seen[p.Name] {
			return client.Config{}, badf("--path "+p.Name, "name used twice")
		}
		seen[p.Name] = true
	}

	// Validate a filled copy (with its own Paths, as Fill writes defaults
	// into them): the caller gets the config as given and client.Start
	// applies the same defaults.
	check := cfg
	check.Paths = append([]client.PathConfig(nil), cfg.Paths...)
	check.Fill()
	if err := check.Validate(); err != nil {
		return client.Config{}, clientConfigError(err)
	}
	if _, err := clientMetrics(args); err != nil {
		return client.Config{}, err
	}
	return cfg, nil
}

// clientConfigError names the flag behind a client.Start error that the
// user fixes on the command line: a bad setting or an address that cannot
// be listened on.
func clientConfigError(err error) error {
	var ce *client.ConfigError
	if errors.As(err, &ce) {
		return flagForField(ce.Field, ce.Reason)
	}
	var le *client.ListenError
	if errors.As(err, &le) {
		reason := le.Err.Error()
		var se *os.SyscallError
		if errors.As(le.Err, &se) {
			reason = se.Err.Error() // "address already in use", not the whole call
		}
		return flagForField(le.Field, fmt.Sprintf("cannot listen on %s: %s", le.Addr, reason))
	}
	return err
}

// parseFEC parses --fec K,M.
func parseFEC(s string) (k, m int, err error) {
	ks, ms, ok := strings.Cut(s, ",")
	if ok {
		k, err = strconv.Atoi(strings.TrimSpace(ks))
		if err == nil {
			m, err = strconv.Atoi(strings.TrimSpace(ms))
		}
	}
	if !ok || err != nil || k < 1 || m < 0 {
		return 0, 0, badf("--fec", "%q is not K,M with K >= 1 and M >= 0 (e.g. 8,2)", s)
	}
	return k, m, nil
}

// parsePath parses one --path NAME=SPEC.
func parsePath(arg string) (client.PathConfig, error) {
	name, spec, ok := strings.Cut(arg, "=")
	name = strings.TrimSpace(name)
	switch {
	case !ok:
		return client.PathConfig{}, badf("--path", "%q is not NAME=SPEC", arg)
	case name == "":
		return client.PathConfig{}, badf("--path", "%q has no name before =", arg)
	}
	return pathFromSpec(name, spec)
}

// pathFromSpec parses SPEC: a binding (IP address, ip:ADDR, dev:IFNAME or
// any) followed by KEY=VALUE settings, all separated by commas. The binding
// may be left out when the settings say ip= or dev=, or nothing at all.
func pathFromSpec(name, spec string) (client.PathConfig, error) {
	field := "--path " + name
	parts := strings.Split(spec, ",")
	head := strings.TrimSpace(parts[0])
	var kvs [][2]string
	switch {
	case head == "":
		return client.PathConfig{}, badf(field, "no binding (want an IP address, dev:IFNAME or any)")
	case strings.Contains(head, "="):
		// No binding: every part is a setting.
	case head == "any":
		kvs = append(kvs, [2]string{"any", ""})
		parts = parts[1:]
	default:
		if dev, ok := strings.CutPrefix(head, "dev:"); ok {
			kvs = append(kvs, [2]string{"dev", dev})
		} else {
			ip, _ := strings.CutPrefix(head, "ip:")
			if _, err := netip.ParseAddr(ip); err != nil {
				return client.PathConfig{}, badf(field, "%q is not an IP address, ip:ADDR, dev:IFNAME or any", head)
			}
			kvs = append(kvs, [2]string{"ip", ip})
		}
		parts = parts[1:]
	}
	for _, part := range parts {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return client.PathConfig{}, badf(field, "%q is not KEY=VALUE", part)
		}
		kvs = append(kvs, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return buildPath(name, field, kvs)
}

// pathFromTable turns the i-th [[path]] table into a path.
func pathFromTable(i int, t pathTable) (client.PathConfig, error) {
	if t.Name == "" {
		return client.PathConfig{}, badf("--path", "[[path]] number %d has no name", i+1)
	}
	field := "--path " + t.Name
	if t.Spec != "" {
		if t.IP != "" || t.Dev != "" || t.Server != "" || t.Conns != 0 || t.Price != 0 || t.Medium != "" || t.Operator != "" {
			return client.PathConfig{}, badf(field, "give either spec or ip, dev, server, conns, price, medium and operator")
		}
		return pathFromSpec(t.Name, t.Spec)
	}
	// Feed the keys through the same checks as a spec's.
	var kvs [][2]string
	add := func(k, v string) {
		if v != "" {
			kvs = append(kvs, [2]string{k, v})
		}
	}
	add("ip", t.IP)
	add("dev", t.Dev)
	add("server", t.Server)
	if t.Conns != 0 {
		add("conns", strconv.Itoa(t.Conns))
	}
	if t.Price != 0 {
		add("price", strconv.FormatFloat(t.Price, 'g', -1, 64))
	}
	add("medium", t.Medium)
	add("operator", t.Operator)
	add("stun", t.STUN)
	return buildPath(t.Name, field, kvs)
}

// buildPath applies a path's settings in order; each key may appear once.
func buildPath(name, field string, kvs [][2]string) (client.PathConfig, error) {
	p := client.PathConfig{Name: name}
	seen := map[string]bool{}
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		if k == "any" {
			// An unbound path: nothing to set, but ip= or dev= would
			// contradict it.
			seen["ip"], seen["dev"] = true, true
			continue
		}
		if seen[k] {
			return p, badf(field, "%s given twice", k)
		}
		seen[k] = true
		switch k {
		case "ip":
			ip, err := netip.ParseAddr(v)
			if err != nil {
				return p, badf(field, "ip %q is not an IP address", v)
			}
			p.Bind.IP = ip
		case "dev":
			if v == "" {
				return p, badf(field, "dev needs an interface name")
			}
			p.Bind.Device = v
		case "server":
			if _, _, err := net.SplitHostPort(v); err != nil {
				return p, badf(field, "server %q is not HOST:PORT", v)
			}
			p.Server = v
		case "conns":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 16 {
				return p, badf(field, "conns %q is not a number from 1 to 16", v)
			}
			p.Conns = n
		case "price":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return p, badf(field, "price %q is not a number >= 0 (USD per GB)", v)
			}
			p.PriceGB = f
		case "rate":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return p, badf(field, "rate %q is not a number >= 0 (Mbit/s)", v)
			}
			p.RateMbps = f
		case "medium":
			m := strings.ToLower(v)
			if _, ok := client.Media[m]; !ok {
				return p, badf(field, "medium %q is not ethernet, wifi, cellular, satellite or other", v)
			}
			p.Medium = m
		case "operator":
			op := strings.ToLower(v)
			if _, ok := client.Operators[op]; !ok {
				return p, badf(field, "operator %q is not own or partner", v)
			}
			p.Operator = op
		case "stun":
			if _, _, err := net.SplitHostPort(v); err != nil {
				return p, badf(field, "stun %q is not HOST:PORT", v)
			}
			p.STUN = v
		default:
			return p, badf(field, "unknown key %q (want ip, dev, server, conns, price, medium, operator or stun)", k)
		}
	}
	return p, nil
}

// runClient runs the client until a signal (exit 0) or until the
// concentrator refuses it for good (exit 1). The network never ends it:
// the client waits for an unreachable concentrator and rejoins one that
// restarts. A listener it cannot open is exit 2, before any join.
func runClient(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	cfg, err := parseClient(args, stderr)
	if err != nil {
		return fail(stdout, stderr, "client", clientFlags(new(clientOpts)), err)
	}
	var ms *metricsServer
	mc, err := clientMetrics(args) // metrics.go
	if err == nil {
		ms, err = listenMetrics(mc, cfg.Logger)
	}
	if err != nil {
		return fail(stdout, stderr, "client", nil, err)
	}
	defer ms.Close()
	sla := transport.NewSLAWindows() // the metrics' SLA windows
	cfg.Transport.SLAWindows = sla
	c, err := client.Start(context.Background(), cfg)
	if err != nil {
		return fail(stdout, stderr, "client", nil, clientConfigError(err))
	}
	ms.serve(metricsClientSource(c, sla))
	dash, err := startClientDashboard(args, c, cfg.Logger)
	if err != nil {
		c.Close()
		return fail(stdout, stderr, "client", nil, err)
	}
	defer dash.Close()
	select {
	case s := <-sig:
		cfg.Logger.Info("shutting down", "signal", s)
		if err := c.Close(); err != nil {
			return fail(stdout, stderr, "client", nil, fmt.Errorf("shutdown: %w", err))
		}
		return 0
	case <-c.Done():
		c.Close()
		err := c.Err()
		if err == nil {
			err = errors.New("client stopped")
		}
		return fail(stdout, stderr, "client", nil, err)
	}
}

// first returns l's first element, or "".
func first(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}
