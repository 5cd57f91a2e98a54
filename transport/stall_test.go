//go:build linux

package transport

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/transport/pathmon"
)

// A process that does not run for a while (a loaded machine, a stop of
// the world) could not hear its peers meanwhile: the time its probe
// timers fired late is not the paths' silence, and no path goes down.
// The whole test process (both ends and the emulated links) is stopped
// for 400 ms with SIGSTOP, twice the 200 ms after which a silent
// connection is down.
func TestProcessStallNotAnOutage(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to stop and continue this process")
	}
	ts := newTestServer(t, Config{}, nil)
	link := emu.Link{Delay: 5 * time.Millisecond}
	pds, _ := relayPaths(t, ts, link, link)
	c := dialClient(t, Config{}, pds)
	up := func() bool {
		for _, p := range c.Paths() {
			if p.Stats().State != pathmon.StateUp {
				return false
			}
		}
		return len(c.Paths()) == 2
	}
	if !eventually(5*time.Second, up) {
		t.Fatal("two paths did not come up")
	}
	time.Sleep(500 * time.Millisecond)
	for round := range 2 {
		stop := exec.Command("sh", "-c", fmt.Sprintf("kill -STOP %d; sleep 0.4; kill -CONT %d", os.Getpid(), os.Getpid()))
		before := time.Now()
		if err := stop.Run(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(before); d < 300*time.Millisecond {
			t.Fatalf("the process was not stopped (back after %v)", d)
		}
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			for _, s := range append([]*Session{c.Session}, ts.list()...) {
				for _, p := range s.Paths() {
					if st := p.Stats(); st.State != pathmon.StateUp {
						t.Fatalf("round %d: path %s went %s at the %s after a 400 ms stop of the process: %s",
							round, p.info.Name, st.State, map[bool]string{true: "client", false: "concentrator"}[s.client], st.Why)
					}
				}
			}
		}
	}
}
