package cliflag

import (
	"bytes"
	"flag"
	"log/slog"
	"testing"
)

func TestPrintFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("out", "", "`DIR` for results")
	fs.Int("seed", 0, "the seed")
	fs.String("traces", "../t", "where traces are")
	fs.String("budget", "192MiB", "the budget (default: the machine's)")
	var b bytes.Buffer
	PrintFlags(&b, fs)
	want := "  --budget string\n      the budget (default: the machine's)\n" +
		"  --out DIR\n      DIR for results\n" +
		"  --seed int\n      the seed\n" +
		"  --traces string\n      where traces are (default ../t)\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestLevel(t *testing.T) {
	for name, want := range map[string]slog.Level{"debug": slog.LevelDebug, "": slog.LevelInfo, "INFO": slog.LevelInfo,
		"warning": slog.LevelWarn, "Warn": slog.LevelWarn, "error": slog.LevelError} {
		if l, ok := Level(name); !ok || l != want {
			t.Errorf("Level(%q) = %v, %v; want %v", name, l, ok, want)
		}
	}
	if _, ok := Level("loud"); ok {
		t.Error("Level(loud) is a level")
	}
}
