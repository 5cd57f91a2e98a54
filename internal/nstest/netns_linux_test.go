//go:build linux

package nstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment of the helper subprocesses. A helper test runs only when
// envRole names its role, so an ordinary `go test` skips it.
const (
	envRole     = "BRAID_NSTEST_ROLE"      // "server" or "client"
	envDir      = "BRAID_NSTEST_DIR"       // holds cert.pem and key.pem
	envPin      = "BRAID_NSTEST_PIN"       // the concentrator's pin
	envSrvPort  = "BRAID_NSTEST_SRV_PORT"  // the concentrator's UDP port
	envDestPort = "BRAID_NSTEST_DEST_PORT" // the destination's TCP port
	envSize     = "BRAID_NSTEST_SIZE"      // bytes to echo; transferSize if unset
	linePrefix  = "NSTEST "                // helpers' machine-readable lines
	token       = "nstest-token"
)

// logger logs to stderr (which the parent shows on failure) when
// BRAID_TEST_LOG is set, as in internal/e2e.
func logger() *slog.Logger {
	if os.Getenv("BRAID_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// requireRoot skips unless the test can build namespaces: root and the
// iproute2 binaries.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces, veth links and tc qdiscs (run as root: go test ./internal/nstest/)")
	}
	for _, bin := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipping: needs the %q binary from iproute2: %v", bin, err)
		}
	}
}

// run runs a command and returns its output; the error carries the
// command line and its output.
func run(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// topology is two namespaces, a client host and a concentrator host,
// joined by two veth pairs shaped by tbf:
//
//	braidc-X                        braids-X
//	vethA-c 10.99.1.1/24 <--A--> vethA-s 10.99.1.2/24
//	vethB-c 10.99.2.1/24 <--B--> vethB-s 10.99.2.2/24
type topology struct {
	cli, srv string // namespace names
}

// link is one veth pair and its rate in both directions.
type link struct {
	cliDev, srvDev string
	cliIP, srvIP   string // with prefix length
	rate           string // tc rate
}

var links = []link{
	{"vethA-c", "vethA-s", "10.99.1.1/24", "10.99.1.2/24", "50mbit"},
	{"vethB-c", "vethB-s", "10.99.2.1/24", "10.99.2.2/24", "20mbit"},
}

// newNamespaces creates a client and a server namespace with random
// names; t.Cleanup deletes them. It skips where namespaces cannot be made.
func newNamespaces(t *testing.T, ctx context.Context) *topology {
	t.Helper()
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(rnd[:])
	tp := &topology{cli: "braidc-" + suffix, srv: "braids-" + suffix}
	for _, ns := range []string{tp.cli, tp.srv} {
		if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
			t.Skipf("skipping: cannot create a network namespace: %v", err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := run(cctx, "ip", "netns", "del", ns); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	return tp
}

// newTopology builds the namespaces and links; t.Cleanup deletes the
// namespaces, which destroys the veths in them. It skips when the kernel
// or the container does not allow namespaces, veth or tbf.
func newTopology(t *testing.T, ctx context.Context) *topology {
	t.Helper()
	tp := newNamespaces(t, ctx)
	must := func(skip bool, args ...string) {
		t.Helper()
		if _, err := run(ctx, args...); err != nil {
			if skip {
				t.Skipf("skipping: %v", err)
			}
			t.Fatal(err)
		}
	}
	for _, ns := range []string{tp.cli, tp.srv} {
		must(false, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	for _, l := range links {
		// Both ends are created inside the namespaces, so no name is ever
		// taken in the root namespace.
		must(true, "ip", "-n", tp.cli, "link", "add", l.cliDev, "type", "veth", "peer", "name", l.srvDev, "netns", tp.srv)
		must(false, "ip", "-n", tp.cli, "addr", "add", l.cliIP, "dev", l.cliDev)
		must(false, "ip", "-n", tp.srv, "addr", "add", l.srvIP, "dev", l.srvDev)
		for _, e := range []struct{ ns, dev string }{{tp.cli, l.cliDev}, {tp.srv, l.srvDev}} {
			// tbf shapes egress, so each end shapes its own direction.
			must(true, "ip", "netns", "exec", e.ns, "tc", "qdisc", "add", "dev", e.dev, "root",
				"tbf", "rate", l.rate, "burst", "64kb", "latency", "50ms")
			must(false, "ip", "-n", e.ns, "link", "set", e.dev, "up")
		}
	}
	return tp
}

// ifStats is an interface's byte counters.
type ifStats struct{ rx, tx uint64 }

// stats reads dev's byte counters in namespace ns.
func stats(t *testing.T, ctx context.Context, ns, dev string) ifStats {
	t.Helper()
	out, err := run(ctx, "ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	var v []struct {
		Stats64 struct {
			RX struct{ Bytes uint64 } `json:"rx"`
			TX struct{ Bytes uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v) != 1 {
		t.Fatalf("parse stats of %s in %s: %v: %s", dev, ns, err, out)
	}
	return ifStats{rx: v[0].Stats64.RX.Bytes, tx: v[0].Stats64.TX.Bytes}
}

// helper is a subprocess running one helper test of this binary inside a
// namespace. It prints lines starting with linePrefix that the parent
// waits for; everything it prints is kept and shown on failure.
type helper struct {
	role  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []string // fields of the linePrefix lines
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status, once done is closed

	mu      sync.Mutex
	out     bytes.Buffer
	partial []byte
}

// startHelper runs TestHelper<role> in namespace ns with env added. The
// helper ends when its stdin closes (the cleanup closes it, and so does
// the parent's death) or, at the latest, when ctx ends; the cleanup waits
// a while for it, then kills it. A helper that fails fails the test.
func startHelper(t *testing.T, ctx context.Context, ns, role string, env ...string) *helper {
	t.Helper()
	exe, err := os.Executable() // not /proc/self/exe: ip resolves that to itself
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{role: role, lines: make(chan []string, 1024), done: make(chan struct{})}
	// ip netns exec execs the command (no fork), so the process it
	// starts is the helper itself and killing it kills the helper.
	h.cmd = exec.CommandContext(ctx, "ip", "netns", "exec", ns, exe,
		"-test.run=^TestHelper"+role+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	h.cmd.Env = append(append(os.Environ(), envRole+"="+strings.ToLower(role)), env...)
	h.cmd.Stdout = h
	h.cmd.Stderr = stderrOf{h}
	h.cmd.WaitDelay = 5 * time.Second
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		h.err = h.cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.stdin.Close()
		select {
		case <-h.done:
		case <-time.After(15 * time.Second):
			t.Errorf("%s helper did not exit within 15 s of its stdin closing; killing it", role)
			h.cmd.Process.Kill()
			<-h.done
		}
		if h.err != nil && !t.Failed() {
			t.Errorf("%s helper failed: %v", role, h.err)
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("%s helper (in %s) exited with %v; its output:\n%s", role, ns, h.err, h.output())
		}
	})
	return h
}

// Write takes the helper's stdout.
func (h *helper) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out.Write(p)
	h.partial = append(h.partial, p...)
	for {
		i := bytes.IndexByte(h.partial, '\n')
		if i < 0 {
			break
		}
		line := string(h.partial[:i])
		h.partial = h.partial[i+1:]
		if rest, ok := strings.CutPrefix(line, linePrefix); ok {
			select {
			case h.lines <- strings.Fields(rest):
			default: // nobody will wait for that many lines
			}
		}
	}
	return len(p), nil
}

type stderrOf struct{ h *helper }

func (s stderrOf) Write(p []byte) (int, error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.h.out.Write(p)
}

func (h *helper) output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

// expect waits for the helper's next line tagged tag and returns the
// fields after the tag; other tags are passed over.
func (h *helper) expect(t *testing.T, ctx context.Context, tag string) []string {
	t.Helper()
	for {
		select {
		case f := <-h.lines:
			if len(f) > 0 && f[0] == tag {
				return f[1:]
			}
		case <-h.done:
			// Wait returns only after all output is copied: what is
			// buffered is all there is.
			for {
				select {
				case f := <-h.lines:
					if len(f) > 0 && f[0] == tag {
						return f[1:]
					}
				default:
					t.Fatalf("%s helper exited (%v) before printing %s", h.role, h.err, tag)
				}
			}
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s from the %s helper", tag, h.role)
		}
	}
}

// wait waits for the helper to exit and returns its exit status.
func (h *helper) wait(t *testing.T, ctx context.Context) error {
	t.Helper()
	select {
	case <-h.done:
		return h.err
	case <-ctx.Done():
		t.Fatalf("timed out waiting for the %s helper to exit", h.role)
		return nil
	}
}
