// Package cliflag is what braid's binaries (cmd/braid, cmd/braid-bench)
// share on their command lines: flags listed the way the docs spell them,
// and log levels by name.
package cliflag

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// PrintFlags lists fs's flags like flag.PrintDefaults, but spelt with the
// -- the docs use. A zero default says nothing; a usage text that names
// its default (one computed elsewhere) says it once.
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "\n      %s", text)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" && f.DefValue != "0" && !strings.Contains(text, "(default") {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// Level is the log level called name (debug, info, warn or warning,
// error; any case; "" is info), and whether there is one.
func Level(name string) (slog.Level, bool) {
	switch strings.ToLower(name) {
	case "debug":
		return slog.LevelDebug, true
	case "info", "":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}
