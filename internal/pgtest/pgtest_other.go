//go:build !linux

package pgtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
)

func (s *Server) asUser() error {
	return errors.New("the PostgreSQL tests start a server from Debian's binaries, on Linux only")
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	return exec.Command(filepath.Join(s.bin, name), args...)
}

func (s *Server) interrupt() { s.cmd.Process.Signal(os.Interrupt) }
