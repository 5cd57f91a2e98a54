package netx

import "golang.org/x/sys/unix"

// getBindToDevice reads back SO_BINDTODEVICE so the test checks the kernel
// state rather than trusting that setsockopt did what we asked.
func getBindToDevice(fd int) (string, error) {
	return unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
}
