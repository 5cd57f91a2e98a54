//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestKernelSystems runs a tiny scenario (a lossy path, downloads, an
// upload, requests) through kernel MPTCP and kernel TCP
// over TUN paths in namespaces of their own. As root it checks that both
// carry every byte, that MPTCP uses both paths and TCP only the best one,
// and that the namespaces are gone afterwards; without root, that both
// are reported as skipped, with the reason.
func TestKernelSystems(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sc, err := Load("testdata/kernel.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, sc, Options{DrainTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Systems) != 2 {
		t.Fatalf("%d results, want 2", len(res.Systems))
	}
	for _, r := range res.Systems {
		if why := kernelSkip(r.Name); why != "" {
			if r.Error != "skipped: "+why {
				t.Errorf("%s on a host that cannot run it (%s): error %q", r.Name, why, r.Error)
			}
			continue
		}
		if r.Error != "" {
			t.Errorf("%s failed: %s", r.Name, r.Error)
			continue
		}
		if r.GoodputBps == nil || *r.GoodputBps <= 0 {
			t.Errorf("%s: goodput %v", r.Name, r.GoodputBps)
		}
		if r.BytesLost == nil || *r.BytesLost != 0 {
			t.Errorf("%s: bytes lost %v; notes %v", r.Name, r.BytesLost, r.Notes)
		}
		a, b := r.BytesPerPath["a"], r.BytesPerPath["b"]
		switch r.Name {
		case "mptcp":
			if a == 0 || b == 0 {
				t.Errorf("mptcp: bytes per path %v: a subflow did not carry traffic", r.BytesPerPath)
			}
		case "tcp":
			if a == 0 || b != 0 {
				t.Errorf("tcp: bytes per path %v, want all on a (the best path)", r.BytesPerPath)
			}
		}
	}
	if os.Geteuid() == 0 {
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil {
			t.Fatalf("ip netns list: %v: %s", err, out)
		}
		if prefix := fmt.Sprintf("braidbench-%d-", os.Getpid()); strings.Contains(string(out), prefix) {
			t.Errorf("namespaces left behind:\n%s", out)
		}
	}
}
