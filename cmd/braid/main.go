// Command braid is the front end of the braid multipath proxy. It makes the
// concentrator's key (keygen), runs the concentrator (server) or the local
// SOCKS5 proxy (client), or all of them on loopback with emulated provider
// paths (demo).
package main

import (
	"braid/internal/cliflag"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"
)

const usage = `braid is a multipath proxy: a local SOCKS5 proxy spreads every TCP flow over
several network paths to a concentrator, which puts it back together and
forwards it.

Usage:
  braid keygen --dir DIR [--host H ...] [--force]
  braid server --listen HOST:PORT --cert FILE --key FILE --token TOKEN [--token TOKEN ...]
               [--token-file FILE] [--allow-private] [--config FILE] [--log-level LEVEL]
  braid client --server HOST:PORT --pin PIN --token TOKEN [--socks HOST:PORT]
               [--socks-user USER --socks-pass PASS] [--path NAME=SPEC ...]
               [--fec K,M] [--grace DURATION] [--config FILE] [--log-level LEVEL]
  braid demo   [--socks HOST:PORT] [--duration D] [--log-level LEVEL]
  braid status [--client HOST:PORT | --server HOST:PORT] [--json] [--watch [--interval D]]
  braid report --db DSN [--since T] [--until T] [--by tenant|tier|class|path] [--format table|csv|json]
  braid version
  braid help

Commands:
  keygen  create the concentrator's key and certificate; prints the pin clients need
  server  run the concentrator
  client  run the local SOCKS5 proxy
  demo    run a concentrator, three emulated paths and a client on loopback
  status  show a running client's (or concentrator's) session: paths, rates, shares, state and why, cost, plan
  report  sum a concentrator's accounting (--accounting) into a bill: bytes, cost, revenue, profit, SLA
  version print braid's version, commit and platform
  help    print this text

Flags given on the command line win over the --config file (TOML, same names
with _ for -). Run 'braid COMMAND -h' for a command's flags.

The benchmark harness is a binary of its own, braid-bench (docs/BENCH.md).
`

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sig))
}

// run is the whole program behind main, so tests can drive it: it returns
// the exit status, 0 after a clean shutdown on a value from sig, 2 for a
// mistake in the command line or config, 1 for a failure at run time.
func run(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return 0
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "keygen":
		return runKeygen(rest, stdout, stderr)
	case "server":
		return runServer(rest, stdout, stderr, sig)
	case "client":
		return runClient(rest, stdout, stderr, sig)
	case "demo":
		return runDemo(rest, stdout, stderr, sig)
	case "status":
		return runStatus(rest, stdout, stderr, sig)
	case "report":
		return runReport(rest, stdout, stderr)
	case "version", "-version", "--version":
		return runVersion(rest, stdout, stderr)
	case "bench":
		// The harness and its plotting library stay out of the proxy.
		fmt.Fprintln(stderr, "braid bench: the benchmark is a separate binary: run braid-bench (go run ./cmd/braid-bench in the repository; docs/BENCH.md)")
		return 2
	default:
		fmt.Fprintf(stderr, "braid: unknown command %q (run 'braid help')\n", cmd)
		return 2
	}
}

// usageError is a mistake in the command line or the config file; it makes
// the exit status 2. Field names the flag, e.g. "--path lte".
type usageError struct{ field, reason string }

func (e *usageError) Error() string {
	switch {
	case e.field == "":
		return e.reason
	case strings.HasPrefix(e.reason, "is "), strings.HasPrefix(e.reason, "are "):
		// "--token is required" reads better than "--token: is required".
		return e.field + " " + e.reason
	default:
		return e.field + ": " + e.reason
	}
}

func badf(field, format string, a ...any) error {
	return &usageError{field, fmt.Sprintf(format, a...)}
}

// fail reports err for command cmd and returns the exit status: usage on
// stdout and 0 for -h, one line on stderr and 2 for a usage error, one line
// and 1 otherwise.
func fail(stdout, stderr io.Writer, cmd string, fs *flag.FlagSet, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, cmd, fs)
		return 0
	}
	// One line, whatever the error text holds, so scripts and log
	// collectors see exactly one record per failure.
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintf(stderr, "braid %s: %s\n", cmd, msg)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// commandHelp is the text before a command's flag list.
var commandHelp = map[string]string{
	"keygen": `Usage: braid keygen --dir DIR [--host H ...] [--force]

Creates DIR/cert.pem and DIR/key.pem for the concentrator and prints the pin
(sha256:...) that clients pass as --pin.
`,
	"server": `Usage: braid server --listen HOST:PORT --cert FILE --key FILE --token TOKEN [flags]

Runs the concentrator. Tokens come from --token (repeatable) and --token-file
(one per line; blank lines and lines starting with # are ignored).
`,
	"client": `Usage: braid client --server HOST:PORT --pin PIN --token TOKEN [--path NAME=SPEC ...] [flags]

Runs the local SOCKS5 proxy. Each --path is one network path:
  SPEC = BIND[,KEY=VALUE...]
  BIND = an IP address (192.168.1.10), ip:ADDR, dev:IFNAME or any
  KEY  = ip (with dev:), server=HOST:PORT, conns=N (1..16; default: as the bestvalue plan asks), price=USD_PER_GB,
         rate=MBIT_PER_S (the path's nominal rate: the bestvalue planner counts
         on it and shards are paced to 95% of it both ways),
         medium=ethernet|wifi|cellular|satellite|other, operator=own|partner,
         stun=HOST:PORT (a public STUN server to learn the path's public
         address from, instead of the concentrator)
e.g. --path fiber=192.168.1.10,price=0.1,medium=ethernet
     --path lte=dev:wwan0,price=3,medium=cellular,operator=partner,conns=2
--path auto makes one path per usable network interface (up, with an
address and a route), named after it, and follows interfaces as they come
and go. Without --path, one path follows the default route. In a --config file a
path is a [[path]] table with name and spec, or name and the keys above.

The client waits for an unreachable concentrator and opens a new session
when one ends (a restarted concentrator, every path down past --grace);
only a refused token, pin or protocol version ends it (exit 1).
`,
	"status": `Usage: braid status [--client HOST:PORT | --server HOST:PORT] [--json] [--watch [--interval D]]

Shows what a running client knows about its session, from its status page
(braid client --status, 127.0.0.1:1081 by default), or with --server what a
concentrator knows about each of its sessions (braid server --status): the
scheduler, tier and flows; rates and totals each way; per path its state and
why, its share of the traffic, RTT, loss, bytes and cost; the plan in force.
--watch redraws it in place until Ctrl-C. The fields: docs/STATUS.md.
`,
	"demo": `Usage: braid demo [--socks HOST:PORT] [--duration D] [--log-level LEVEL]

Starts a concentrator, three emulated provider paths (fiber, lte, satellite),
a client and a test HTTP server, all on loopback, and prints a curl command
to try. Runs until interrupted or until --duration has passed.
`,
}

func printHelp(w io.Writer, cmd string, fs *flag.FlagSet) {
	fmt.Fprint(w, commandHelp[cmd])
	fmt.Fprintln(w, "\nFlags:")
	cliflag.PrintFlags(w, fs)
}

// newFlagSet returns a flag set that reports errors only through Parse's
// return value, so every failure prints as one line.
func newFlagSet(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args and turns the flag package's errors into usage
// errors; stray positional arguments are an error too.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{"", err.Error()}
	}
	if fs.NArg() > 0 {
		return badf("", "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// setFlags returns the names of the flags given on the command line: only
// those override the config file.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

const packetCodingUsage = "`on` or off: parity packets beneath QUIC on every path, so that random loss costs a little bandwidth, not the window (docs/PROTOCOL.md, Packet coding); a connection codes only when both ends have it on"

const measuredPacingUsage = "`on` or off: pace each path without rate= to the bottleneck rate braid measures on it (docs/STATUS.md, pace_bps), so that quic-go's window does not fill the link's queue; off leaves such paths to quic-go alone"

// parseOff parses an on/off flag; it returns true for off.
func parseOff(flag, s string) (off bool, err error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "":
		return false, nil
	case "off":
		return true, nil
	}
	return false, badf(flag, "%q is not on or off", s)
}

// fromFile sets *dst to the file's value v unless the flag was given or
// the file left the key out.
func fromFile(dst *string, v string, flagSet bool) {
	if !flagSet && v != "" {
		*dst = v
	}
}

// strList is a repeatable string flag.
type strList []string

func (s *strList) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, " ")
}

func (s *strList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// newLogger returns a text logger on w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	l, ok := cliflag.Level(level)
	if !ok {
		return nil, badf("--log-level", "%q is not debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// flagForField maps a client or server ConfigError field to the flag that
// sets it, so the user is told what to change on the command line.
func flagForField(field, reason string) *usageError {
	if field == "transport" {
		// The transport's own field is the first word of the reason.
		if f, r, ok := strings.Cut(reason, ": "); ok {
			switch f {
			case "k":
				return &usageError{"--fec", "K " + r}
			case "m":
				return &usageError{"--fec", "M " + r}
			case "grace":
				return &usageError{"--grace", r}
			case "policy":
				return &usageError{"--scheduler", r}
			}
		}
		return &usageError{"transport", reason}
	}
	return &usageError{"--" + field, reason}
}

// decodeFile reads the TOML config file path into v. Unknown keys are an
// error, so a misspelt key does not silently leave a default in place.
func decodeFile(path string, v any) error {
	md, err := toml.DecodeFile(path, v)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return badf("--config", "%v", err)
		}
		return badf("--config "+path, "%v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = fmt.Sprintf("%q", k.String())
		}
		word := "key"
		if len(keys) > 1 {
			word = "keys"
		}
		return badf("--config "+path, "unknown %s %s", word, strings.Join(keys, ", "))
	}
	return nil
}
