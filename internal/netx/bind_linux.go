package netx

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// DeviceBind reports whether sockets can be pinned to an interface here.
const DeviceBind = true

// bindToDevice returns a net.ListenConfig Control func that applies
// SO_BINDTODEVICE before the socket is bound, so the first packet already
// leaves through dev. The errno is wrapped so callers can test for EPERM
// (older kernels require CAP_NET_RAW) or ENODEV.
func bindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_BINDTODEVICE %q: %w", dev, serr)
		}
		return nil
	}
}
