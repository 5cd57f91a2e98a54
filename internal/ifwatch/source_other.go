//go:build !linux

package ifwatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// platformMedium: media are only guessed on Linux.
func platformMedium(string) string { return MediumOther }

// systemLinks lists interfaces with the standard library. Routes are not
// inspected: an interface is taken to be routed and to have no default
// route.
func systemLinks() ([]rawLink, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("ifwatch: list interfaces: %w", err)
	}
	links := make([]rawLink, 0, len(ifs))
	for _, ifi := range ifs {
		l := rawLink{
			Name:     ifi.Name,
			Index:    ifi.Index,
			Up:       ifi.Flags&net.FlagUp != 0,
			Running:  ifi.Flags&net.FlagRunning != 0,
			Loopback: ifi.Flags&net.FlagLoopback != 0,
			HasRoute: true,
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue // vanished meanwhile
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			if ip.Is4In6() {
				ip = ip.Unmap()
				if ones >= 96 {
					ones -= 96
				}
			}
			l.Addrs = append(l.Addrs, netip.PrefixFrom(ip, ones))
		}
		links = append(links, l)
	}
	return links, nil
}

// platformWaker: no change notifications here; Watch polls.
func platformWaker() (waker, error) {
	return nil, errors.New("ifwatch: change notifications not implemented on this system")
}
