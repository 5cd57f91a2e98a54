//go:build !linux

package ifwatch

// helperMain: the namespace helper exists on Linux only.
func helperMain() (int, bool) { return 0, false }
