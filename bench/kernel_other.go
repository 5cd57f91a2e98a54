//go:build !linux

package bench

import "context"

// startKernel: the kernel systems need Linux's network namespaces, TUN
// devices and MPTCP.
func startKernel(context.Context, *Scenario, System) (*env, error) {
	return nil, skipError("the kernel systems (mptcp, tcp) run on Linux only")
}
