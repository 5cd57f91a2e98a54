package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version describes this binary: the module's version (a tagged release,
// or "(devel)" for a build from a checkout), the commit it was built from
// when the build recorded one, and the Go toolchain and platform.
func version() string {
	v, commit, dirty := "(devel)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	out := "braid " + v
	if commit != "" {
		if len(commit) > 12 {
			commit = commit[:12]
		}
		out += " commit " + commit
		if dirty {
			out += " (modified)"
		}
	}
	return fmt.Sprintf("%s, %s %s/%s", out, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "braid version: unexpected argument %q\n", args[0])
		return 2
	}
	fmt.Fprintln(stdout, version())
	return 0
}
