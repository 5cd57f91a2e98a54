package bench

// rusageShift: macOS counts ru_maxrss in bytes.
const rusageShift = 0
