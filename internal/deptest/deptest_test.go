// Package deptest holds the dependency rules of docs/ARCHITECTURE.md as a
// test, so a wrong import fails CI instead of slowly eroding the layers:
// cmd -> client | server | bench -> transport -> scheduler.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// deps returns the packages pkg depends on, transitively (tests excluded).
func deps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	m := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		m[l] = true
	}
	return m
}

// TestSchedulerDoesNoIO: the scheduler is pure policy; it imports nothing
// that reaches the operating system itself (fmt does, underneath, for its
// Print functions, which the scheduler does not call).
func TestSchedulerDoesNoIO(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", "braid/scheduler").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range strings.Fields(string(out)) {
		switch imp {
		case "os", "os/exec", "net", "net/http", "syscall", "io/ioutil", "log", "log/slog":
			t.Errorf("braid/scheduler imports %s", imp)
		}
	}
}

func TestLayers(t *testing.T) {
	forbidden := map[string][]string{
		"braid/scheduler": {"braid/transport", "braid/client", "braid/server", "braid/bench", "braid/cmd/braid", "net"},
		"braid/transport": {"braid/client", "braid/server", "braid/bench", "braid/bench/emu", "braid/cmd/braid"},
		"braid/client":    {"braid/server", "braid/bench", "braid/cmd/braid"},
		"braid/server":    {"braid/client", "braid/bench", "braid/cmd/braid"},
		"braid/bench/emu": {"braid/transport", "braid/client", "braid/server", "braid/cmd/braid"},
	}
	for pkg, bad := range forbidden {
		d := deps(t, pkg)
		if !d[pkg] {
			t.Fatalf("go list did not list %s itself", pkg)
		}
		for _, b := range bad {
			if d[b] {
				t.Errorf("%s depends on %s", pkg, b)
			}
		}
	}
}
