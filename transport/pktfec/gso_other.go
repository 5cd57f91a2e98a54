//go:build !linux

package pktfec

import (
	"errors"
	"net"
	"net/netip"
)

// Segmented UDP writes are Linux's; elsewhere each packet is a write.
func gsoSupported(*net.UDPConn) bool { return false }

func writeSegments(*net.UDPConn, []byte, []byte, int, netip.AddrPort) error {
	return errors.New("pktfec: segmented writes need Linux")
}

func isGSOError(error) bool { return false }

func segmentOOB() []byte { return nil }

func enableGRO(*net.UDPConn) bool { return false }

func groSize([]byte) int { return 0 }
