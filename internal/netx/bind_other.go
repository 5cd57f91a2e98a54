//go:build !linux

package netx

import (
	"fmt"
	"runtime"
	"syscall"
)

// bindToDevice fails on platforms without SO_BINDTODEVICE: silently
// ignoring the device would send the path's traffic out of whatever
// interface the routing table picks, defeating multipath.
func bindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, _ syscall.RawConn) error {
		return fmt.Errorf("binding to device %q is not supported on %s", dev, runtime.GOOS)
	}
}
