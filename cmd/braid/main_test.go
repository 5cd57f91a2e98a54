package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every command's shutdown stops all it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
