//go:build !linux

package netx

import "errors"

// getBindToDevice is never reached off Linux: listenLo skips first.
func getBindToDevice(int) (string, error) {
	return "", errors.New("SO_BINDTODEVICE is Linux-only")
}
