package transport

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"braid/bench/emu"
	"braid/internal/cmdtest"
)

func TestSessionLogNamesSession(t *testing.T) {
	var logs cmdtest.Buffer
	name := new(atomic.Pointer[string])
	log := slog.New(sessionLog{h: slog.NewTextHandler(&logs, nil), name: name}).With("side", "client")
	log.Info("before")
	n := sessionName([16]byte{0xab, 0xcd, 1, 2, 3, 4, 5, 6, 7})
	name.Store(&n)
	log.Info("after", "path", "lte")
	l := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(l) != 2 || strings.Contains(l[0], "session=") || !strings.Contains(l[1], "session=abcd010203040506") ||
		!strings.Contains(l[1], "side=client") || !strings.Contains(l[1], "path=lte") {
		t.Fatalf("lines:\n%s", logs.String())
	}
}

// Both ends name the session on every line the session logs.
func TestSessionLinesNamed(t *testing.T) {
	var slogs, clogs cmdtest.Buffer
	ts := newTestServer(t, Config{Logger: slog.New(slog.NewTextHandler(&slogs, nil))}, nil)
	pds, relays := relayPaths(t, ts, emu.Link{Delay: 5 * time.Millisecond}, emu.Link{Delay: 5 * time.Millisecond})
	c := dialClient(t, Config{Logger: slog.New(slog.NewTextHandler(&clogs, nil))}, pds)
	if !eventually(3*time.Second, func() bool { return c.Paths()[1].Up() }) {
		t.Fatal("paths not up")
	}
	relays[1].SetBroken(true) // lines: a connection down, a path state
	if !eventually(3*time.Second, func() bool { return !c.Paths()[1].Up() }) {
		t.Fatal("path not down")
	}
	// The line comes right after the state it reports: give it a moment.
	eventually(3*time.Second, func() bool { return strings.Contains(clogs.String(), "down") && slogs.String() != "" })
	want := "session=" + c.Name()
	for side, out := range map[string]string{"client": clogs.String(), "concentrator": slogs.String()} {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if out == "" {
			t.Fatalf("%s logged nothing", side)
		}
		for _, l := range lines {
			if !strings.Contains(l, want) {
				t.Errorf("%s line without %s: %s", side, want, l)
			}
		}
	}
}
