//go:build linux

package ifwatch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"braid/internal/notify"
)

// The namespace test re-executes the test binary under `ip netns exec`, so
// the whole helper process (netlink sockets, every goroutine's thread, and
// the /sys that `ip netns exec` remounts) lives in the test's namespace. A
// setns'd OS thread would not do: Watch's goroutines run on other threads.
const (
	helperEnv   = "BRAID_IFWATCH_HELPER" // "1" in the helper process
	eventPrefix = "IFWATCH-EVENT "
	donePrefix  = "IFWATCH-DONE"
	errPrefix   = "IFWATCH-ERROR "
)

// helperMain runs in the helper process: it watches every interface and
// prints each event as a JSON line, until its stdin closes; then it checks
// the watch stopped cleanly and leaked no goroutine.
func helperMain() (int, bool) {
	if os.Getenv(helperEnv) != "1" {
		return 0, false
	}
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		bufio.NewReader(os.Stdin).WriteTo(discard{})
		cancel()
	}()
	ch, err := Watch(ctx, nil)
	if err != nil {
		say("%s%v", errPrefix, err)
		return 1, true
	}
	for ev := range ch {
		b, err := json.Marshal(ev)
		if err != nil {
			say("%s%v", errPrefix, err)
			return 1, true
		}
		say("%s%s", eventPrefix, b)
	}
	<-stdinDone
	if err := goleak.Find(); err != nil {
		say("%sgoroutines left after the watch ended: %v", errPrefix, err)
		return 1, true
	}
	say(donePrefix)
	return 0, true
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// requireNetns skips unless the test can create network namespaces.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces and links (run as root: go test ./internal/ifwatch/)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("skipping: needs the ip binary from iproute2: %v", err)
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Errorf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

// newNetns creates a namespace named braidifw-<random><suffix> and
// deletes it in t.Cleanup, checking it is gone.
func newNetns(t *testing.T, suffix string) string {
	t.Helper()
	var r [4]byte
	rand.Read(r[:])
	name := "braidifw-" + hex.EncodeToString(r[:]) + suffix
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		t.Skipf("skipping: cannot create a network namespace: ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
		for _, line := range strings.Split(netnsList(t), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == name {
				t.Errorf("namespace %s still listed after deletion", name)
			}
		}
	})
	return name
}

// helperProc is the watcher running in a namespace. Its stdout is split
// into lines as they arrive.
type helperProc struct {
	cmd    *exec.Cmd
	stdin  interface{ Close() error }
	stderr bytes.Buffer

	mu      sync.Mutex
	partial []byte
	lines   []string
	events  []Event
	notify  chan struct{}
	next    int // events before this one were consumed by wait
	decodeE error
}

func (h *helperProc) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.partial = append(h.partial, p...)
	for {
		i := bytes.IndexByte(h.partial, '\n')
		if i < 0 {
			break
		}
		line := string(h.partial[:i])
		h.partial = h.partial[i+1:]
		h.lines = append(h.lines, line)
		if js, ok := strings.CutPrefix(line, eventPrefix); ok {
			var ev Event
			if err := json.Unmarshal([]byte(js), &ev); err != nil && h.decodeE == nil {
				h.decodeE = fmt.Errorf("bad event line %q: %v", line, err)
			}
			h.events = append(h.events, ev)
		}
	}
	notify.Signal(h.notify)
	return len(p), nil
}

func startHelper(t *testing.T, ns string) *helperProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &helperProc{notify: make(chan struct{}, 1)}
	h.cmd = exec.Command("ip", "netns", "exec", ns, exe)
	h.cmd.Env = append(os.Environ(), helperEnv+"=1")
	h.cmd.Stdout = h
	h.cmd.Stderr = &h.stderr
	stdin, err := h.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdin = stdin
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- h.cmd.Wait() }()
	t.Cleanup(func() {
		// Closing stdin asks the helper to cancel its watch; kill it if
		// it does not stop.
		h.stdin.Close()
		var err error
		select {
		case err = <-exited:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			err = <-exited
			t.Errorf("helper did not stop within 10 s of its stdin closing")
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil || !slices.Contains(h.lines, donePrefix) {
			t.Errorf("helper: %v\nstdout:\n%s\nstderr:\n%s", err, strings.Join(h.lines, "\n"), h.stderr.String())
		}
		if h.decodeE != nil {
			t.Error(h.decodeE)
		}
	})
	return h
}

// wait returns the first event not yet consumed that satisfies pred,
// within timeout, and consumes every event up to it.
func (h *helperProc) wait(t *testing.T, what string, timeout time.Duration, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		for h.next < len(h.events) {
			ev := h.events[h.next]
			h.next++
			if pred(ev) {
				h.mu.Unlock()
				return ev
			}
		}
		for _, l := range h.lines {
			if strings.HasPrefix(l, errPrefix) {
				h.mu.Unlock()
				t.Fatalf("helper: %s", l)
			}
		}
		h.mu.Unlock()
		select {
		case <-h.notify:
		case <-deadline.C:
			h.mu.Lock()
			lines := strings.Join(h.lines, "\n")
			h.mu.Unlock()
			t.Fatalf("no event with %s within %v; helper output so far:\n%s", what, timeout, lines)
		}
	}
}

// pending returns the events not yet consumed, without consuming them.
func (h *helperProc) pending() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events[h.next:])
}

func find(is []Interface, name string) (Interface, bool) {
	for _, i := range is {
		if i.Name == name {
			return i, true
		}
	}
	return Interface{}, false
}

// TestNetnsHotplug watches a fresh network namespace and plugs interfaces
// in and out of it: two veth pairs whose other ends live in a second
// namespace, so each one's carrier follows its peer there. (veth rather
// than dummy: kernels built without the dummy module still have veth.)
func TestNetnsHotplug(t *testing.T) {
	requireNetns(t)
	ns := newNetns(t, "")
	peer := newNetns(t, "-p")
	h := startHelper(t, ns) // its cleanup runs before the namespaces'

	const within = 2 * time.Second
	first := h.wait(t, "the initial listing", 15*time.Second, func(Event) bool { return true })
	if !first.empty() {
		t.Fatalf("first event in a fresh namespace: %+v, want nothing (lo is loopback)", first)
	}

	// a0 gets an address and comes up with its peer: the prefix route
	// makes it usable.
	ipCmd(t, "-n", ns, "link", "add", "a0", "type", "veth", "peer", "name", "a1", "netns", peer)
	ipCmd(t, "-n", peer, "link", "set", "a1", "up")
	ipCmd(t, "-n", ns, "addr", "add", "10.199.0.1/24", "dev", "a0")
	ipCmd(t, "-n", ns, "link", "set", "a0", "up")
	up := time.Now()
	start := waitCarrier(t, ns, "a0", true)
	ev := h.wait(t, "a0 added", within-time.Since(start), func(ev Event) bool { _, ok := find(ev.Added, "a0"); return ok })
	t.Logf("a0 added %v after it got carrier (%v after link up): %+v", time.Since(start), time.Since(up), ev)
	a0, _ := find(ev.Added, "a0")
	if !slices.Equal(a0.Addrs, pfxs("10.199.0.1/24")) || a0.Medium != MediumOther || a0.HasDefaultRoute || a0.Index <= 0 {
		t.Errorf("a0 added as %+v, want 10.199.0.1/24, medium other, no default route", a0)
	}

	// A default route through it.
	ipCmd(t, "-n", ns, "route", "add", "default", "via", "10.199.0.254", "dev", "a0")
	h.wait(t, "a0 gaining a default route", within, func(ev Event) bool {
		i, ok := find(ev.Changed, "a0")
		return ok && i.HasDefaultRoute
	})

	// A second address, IPv6.
	ipCmd(t, "-n", ns, "addr", "add", "2001:db8:199::1/64", "dev", "a0", "nodad")
	h.wait(t, "a0 gaining an IPv6 address", within, func(ev Event) bool {
		i, ok := find(ev.Changed, "a0")
		return ok && slices.Equal(i.Addrs, pfxs("10.199.0.1/24", "2001:db8:199::1/64"))
	})

	// b0 without carrier (its peer is down) is not usable...
	ipCmd(t, "-n", ns, "link", "add", "b0", "type", "veth", "peer", "name", "b1", "netns", peer)
	ipCmd(t, "-n", ns, "addr", "add", "10.199.1.1/24", "dev", "b0")
	ipCmd(t, "-n", ns, "link", "set", "b0", "up")
	time.Sleep(time.Second)
	for _, ev := range h.pending() {
		if i, ok := find(ev.Added, "b0"); ok {
			t.Fatalf("b0 added without carrier: %+v", i)
		}
	}
	// ...until its peer comes up.
	ipCmd(t, "-n", peer, "link", "set", "b1", "up")
	start = waitCarrier(t, ns, "b0", true)
	ev = h.wait(t, "b0 added", within-time.Since(start), func(ev Event) bool { _, ok := find(ev.Added, "b0"); return ok })
	t.Logf("b0 added %v after it got carrier", time.Since(start))
	if b0, _ := find(ev.Added, "b0"); !slices.Equal(b0.Addrs, pfxs("10.199.1.1/24")) || b0.Medium != MediumOther {
		t.Errorf("b0 added as %+v", b0)
	}

	// a0 is deleted.
	ipCmd(t, "-n", ns, "link", "del", "a0")
	start = time.Now()
	ev = h.wait(t, "a0 removed", within, func(ev Event) bool { _, ok := find(ev.Removed, "a0"); return ok })
	t.Logf("a0 removed %v after deletion", time.Since(start))
	if _, ok := find(ev.Removed, "b0"); ok {
		t.Errorf("b0 removed with a0: %+v", ev)
	}

	// b0 loses carrier when its peer goes down...
	ipCmd(t, "-n", peer, "link", "set", "b1", "down")
	start = waitCarrier(t, ns, "b0", false)
	h.wait(t, "b0 removed (no carrier)", within-time.Since(start), func(ev Event) bool { _, ok := find(ev.Removed, "b0"); return ok })
	t.Logf("b0 removed %v after it lost carrier", time.Since(start))

	// ...comes back with it...
	ipCmd(t, "-n", peer, "link", "set", "b1", "up")
	start = waitCarrier(t, ns, "b0", true)
	h.wait(t, "b0 back", within-time.Since(start), func(ev Event) bool { _, ok := find(ev.Added, "b0"); return ok })

	// ...and goes for good when the pair is deleted.
	ipCmd(t, "-n", peer, "link", "del", "b1")
	start = time.Now()
	h.wait(t, "b0 removed (deleted)", within, func(ev Event) bool { _, ok := find(ev.Removed, "b0"); return ok })
	t.Logf("b0 removed %v after deletion", time.Since(start))
}

// waitCarrier waits until dev in namespace ns has (want) or has lost
// (!want) carrier, and returns when it saw the change. The kernel's link
// watch applies carrier changes up to a second late when another link
// event happened just before (a veth coming up right after its peer),
// which is no latency of the watcher's, so the tests time events from
// here.
func waitCarrier(t *testing.T, ns, dev string, want bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", dev).CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s link show dev %s: %v: %s", ns, dev, err, bytes.TrimSpace(out))
		}
		s := string(out)
		has := strings.Contains(s, "state UP") && !strings.Contains(s, "NO-CARRIER")
		if has == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s: carrier still %v after 5 s: %s", dev, ns, has, bytes.TrimSpace(out))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
