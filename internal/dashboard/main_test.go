package dashboard

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a sampler or a live stream outlives
// its dashboard.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
