//go:build !linux

package accounting

import (
	"path/filepath"
	"testing"
)

type pgServer struct{}

func (s *pgServer) stop()  {}
func (s *pgServer) start() {}

func backends(t *testing.T) map[string]func(t *testing.T) (string, *pgServer) {
	return map[string]func(t *testing.T) (string, *pgServer){
		"sqlite": func(t *testing.T) (string, *pgServer) {
			return filepath.Join(t.TempDir(), "acct.db"), nil
		},
		"postgres": func(t *testing.T) (string, *pgServer) {
			t.Skip("the PostgreSQL tests start a server from Debian's binaries, on Linux only")
			return "", nil
		},
	}
}
