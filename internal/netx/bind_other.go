//go:build !linux

package netx

import (
	"fmt"
	"runtime"
	"syscall"
)

// DeviceBind reports whether sockets can be pinned to an interface here.
const DeviceBind = false

// bindToDevice fails on platforms without SO_BINDTODEVICE: silently
// ignoring the device would send the path's traffic out of whatever
// interface the routing table picks, defeating multipath.
func bindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, _ syscall.RawConn) error {
		return fmt.Errorf("binding to device %q is not supported on %s: bind the path to the interface's address instead", dev, runtime.GOOS)
	}
}
