//go:build unix && !darwin

package bench

// rusageShift: Linux and the BSDs count ru_maxrss in KiB.
const rusageShift = 10
