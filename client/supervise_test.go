package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"braid/internal/pki"
	"braid/transport"
	"braid/transport/wire"
)

func TestFatal(t *testing.T) {
	join := func(code uint8) error { return &transport.JoinError{Code: code, Reason: "r"} }
	pin := fmt.Errorf("path a: CRYPTO_ERROR 0x12a (local): %w: expected x, server presented y", pki.ErrPinMismatch)
	cases := []struct {
		name  string
		err   error
		fatal bool
	}{
		{"token refused", join(wire.JoinErrAuth), true},
		{"version refused", join(wire.JoinErrVersion), true},
		{"wrapped token refusal", fmt.Errorf("join concentrator: %w", join(wire.JoinErrAuth)), true},
		{"pin refused", pin, true},
		{"unknown session (a restarted concentrator)", fmt.Errorf("rejoin over path a: %w", join(wire.JoinErrSession)), false},
		{"too many sessions", join(wire.JoinErrLimit), false},
		{"malformed", join(wire.JoinErrMalformed), false},
		{"shutting down", join(wire.JoinErrShutdown), false},
		{"no path within the grace period", transport.ErrNoPath, false},
		{"closed by peer", fmt.Errorf("%w by peer: bye", transport.ErrSessionClosed), false},
		{"timeout", fmt.Errorf("path a: %w", context.DeadlineExceeded), false},
		{"no interface", errNoPaths, false},
		{"resolve", errors.New("resolve nowhere.invalid:4433: no such host"), false},
	}
	for _, tc := range cases {
		if got := fatal(tc.err); got != tc.fatal {
			t.Errorf("%s: fatal(%v) = %v, want %v", tc.name, tc.err, got, tc.fatal)
		}
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	step := minBackoff
	for i := range 10 {
		d := b.wait()
		if d < step/2 || d > step {
			t.Fatalf("wait %d: %v, want within [%v, %v]", i, d, step/2, step)
		}
		step = min(2*step, maxBackoff)
	}
	if step != maxBackoff {
		t.Fatalf("backoff did not reach its cap: %v", step)
	}
	b.reset()
	if d := b.wait(); d > minBackoff {
		t.Fatalf("after reset: %v, want at most %v", d, minBackoff)
	}
}

func TestWaitSessionEndsWithClient(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{ctx: ctx, cancel: cancel}
	short, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	if _, err := c.waitSession(short); !errors.Is(err, errNoSession) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no session, deadline: %v", err)
	}
	cancel()
	if _, err := c.waitSession(context.Background()); !errors.Is(err, errNoSession) {
		t.Fatalf("client ended: %v", err)
	}
}
