// Command braid-bench compares braid's dispersion policies with a
// single-path QUIC proxy, the kernel's MPTCP and TCP, and the paths'
// limit, over emulated provider paths, and writes the figures, a report
// and plots (docs/BENCH.md).
//
// It is a binary of its own so that the proxy, cmd/braid, links neither
// the harness (workloads, the kernel systems' namespaces and TUN devices)
// nor the plotting library and its fonts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"braid/bench"
	"braid/internal/accounting"
	"braid/internal/cliflag"
)

const help = `Usage: braid-bench --scenario NAME|FILE --out DIR [--duration D] [--systems A,B,...] [--seed N]
       braid-bench --list
       braid-bench                 (a short tour: two small scenarios, a few seconds each)

Runs a scenario: emulated provider paths on loopback, workloads through each
system in turn (braid under each policy, quic-direct, the kernel's MPTCP
and TCP, and the computed limit), and writes DIR/results.json, DIR/report.md and PNG plots. A scenario
is a built-in name (see --list) or a TOML file; docs/BENCH.md describes both
and every metric. Progress goes to stderr, a summary to stdout.
Systems: weighted, minrtt, roundrobin, duplicate, single:PATH (braid
policies; POLICY@PATH+PATH runs braid over only those paths, POLICY/uncoded
without packet coding, POLICY/unpaced without measured pacing), quic-direct
(one quic-go connection over the best path, or quic-direct@PATH), mptcp (Linux MPTCP with bbr over every path,
or mptcp@PATH+PATH), tcp (a Linux TCP connection with bbr per flow over
the best path, or tcp@PATH) and limit. mptcp and tcp cross the same
emulated paths as TUN devices in network namespaces of their own: they
need root on Linux and are reported as skipped, with the reason, without.
`

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sig))
}

type opts struct {
	scenario, out, systems, traces string
	logLevel                       string
	accounting                     string
	duration                       time.Duration
	seed                           int64
	list                           bool
}

func flags(o *opts) *flag.FlagSet {
	fs := flag.NewFlagSet("braid-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors come back from Parse, printed as one line
	fs.StringVar(&o.scenario, "scenario", "", "`NAME|FILE`: a built-in scenario (see --list) or a TOML file")
	fs.StringVar(&o.out, "out", "", "`DIR` for results.json, report.md and the plots (created if needed)")
	fs.DurationVar(&o.duration, "duration", 0, "run each system for `D` instead of the scenario's duration")
	fs.StringVar(&o.systems, "systems", "", "comma-separated `LIST` of systems instead of the scenario's")
	fs.Func("seed", "emulator and workload seed `N` instead of the scenario's", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		o.seed = n
		return nil
	})
	fs.StringVar(&o.traces, "traces", bench.DefaultTracesDir, "`DIR` where trace and schedule files are looked for")
	fs.BoolVar(&o.list, "list", false, "list the built-in scenarios")
	fs.StringVar(&o.logLevel, "log-level", "", "write braid's own logs at `LEVEL` (debug, info, warn, error) to stderr; default none")
	fs.StringVar(&o.accounting, "accounting", "", "keep each braid system's usage records in `DSN` (an SQLite file or a postgres:// URL), as braid server --accounting does, under the id SCENARIO/SYSTEM; compare with braid report --db DSN --by path --concentrator SCENARIO/SYSTEM")
	return fs
}

// tour is what braid-bench with no scenario runs: short and small.
var tour = []struct {
	scenario string
	duration time.Duration
	systems  []string
}{
	{"hetero", 5 * time.Second, []string{"weighted", "quic-direct", "limit"}},
	{"failover", 8 * time.Second, []string{"weighted", "quic-direct", "limit"}},
}

// usageError is a mistake in the command line or the scenario; it makes
// the exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func badf(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// run is the whole program behind main, so tests can drive it: it returns
// the exit status, 0 when the run completed (or for -h and --list), 2 for
// a mistake in the flags or the scenario, 1 when the run could not be
// made or was interrupted by a value from sig.
func run(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	var o opts
	fs := flags(&o)
	failed := func(err error) int {
		// One line, whatever the error text holds, so scripts see exactly
		// one record per failure.
		fmt.Fprintf(stderr, "braid-bench: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		var ue *usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, fs)
			return 0
		}
		return failed(&usageError{err.Error()})
	}
	if fs.NArg() > 0 {
		return failed(badf("unexpected argument %q", fs.Arg(0)))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.list {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, b := range bench.Builtin() {
			fmt.Fprintf(tw, "%s\t%s\n", b[0], b[1])
		}
		tw.Flush()
		return 0
	}
	if o.duration < 0 || (set["duration"] && o.duration == 0) {
		return failed(badf("--duration: must be > 0"))
	}
	var systems []string
	if o.systems != "" {
		for _, s := range strings.Split(o.systems, ",") {
			systems = append(systems, strings.TrimSpace(s))
		}
	}
	opt := bench.Options{Duration: o.duration, Systems: systems, Progress: stderr}
	if o.logLevel != "" {
		l, err := newLogger(stderr, o.logLevel)
		if err != nil {
			return failed(err)
		}
		opt.Logger = l
	}
	if set["seed"] {
		opt.Seed = &o.seed
	}
	if o.accounting != "" {
		w, err := accounting.NewWriter(context.Background(), accounting.Config{DSN: o.accounting, Logger: opt.Logger})
		if err != nil {
			return failed(badf("--accounting: %v", err))
		}
		// Closed after every run: the concentrators' last records are in.
		defer w.Close()
		opt.Accounting = w
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-stopped:
		}
	}()

	lopt := bench.LoadOptions{TracesDir: o.traces}
	if o.scenario == "" {
		if set["systems"] || set["duration"] {
			return failed(badf("--scenario is required with --systems or --duration"))
		}
		out := o.out
		if out == "" {
			d, err := os.MkdirTemp("", "braid-bench-tour-")
			if err != nil {
				return failed(err)
			}
			out = d
		}
		fmt.Fprintf(stdout, "A short tour of braid-bench: two small scenarios, a few seconds each.\n"+
			"Run 'braid-bench --list' for all scenarios, 'braid-bench -h' for the flags.\n\n")
		for _, t := range tour {
			o := opt
			o.Duration, o.Systems = t.duration, t.systems
			if code := runOne(ctx, t.scenario, filepath.Join(out, t.scenario), lopt, o, stdout, failed); code != 0 {
				return code
			}
		}
		return 0
	}
	if o.out == "" {
		return failed(badf("--out is required with --scenario"))
	}
	return runOne(ctx, o.scenario, o.out, lopt, opt, stdout, failed)
}

func runOne(ctx context.Context, scenario, out string, lopt bench.LoadOptions, opt bench.Options,
	stdout io.Writer, failed func(error) int) int {
	sc, err := bench.Load(scenario, lopt)
	if err != nil {
		return failed(&usageError{err.Error()})
	}
	if _, err := sc.With(opt); err != nil {
		return failed(badf("scenario %s: %v", sc.Name, err))
	}
	res, err := bench.Run(ctx, sc, opt)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return failed(errors.New("interrupted"))
		}
		return failed(err)
	}
	files, err := bench.Write(out, res)
	if err != nil {
		return failed(err)
	}
	fmt.Fprintf(stdout, "%s: %v per system, seed %d\n", res.Scenario, time.Duration(res.DurationS*float64(time.Second)), res.Seed)
	bench.Summary(stdout, res)
	fmt.Fprintf(stdout, "wrote %s: %s\n\n", out, strings.Join(files, ", "))
	return 0
}

// printHelp prints the help text and the flags, spelt with the -- the docs
// use.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, help)
	fmt.Fprintln(w, "\nFlags:")
	cliflag.PrintFlags(w, fs)
}

// newLogger returns a text logger on w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	l, ok := cliflag.Level(level)
	if !ok {
		return nil, badf("--log-level: %q is not debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
