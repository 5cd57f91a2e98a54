// Package cmdtest is for tests of braid's commands and of code that logs
// from several goroutines: a buffer they may share, and a command's run
// function started in a goroutine with a bounded wait for its status. Only
// tests import it.
package cmdtest

import (
	"bytes"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer that several goroutines may write to.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RunFunc is a command's main, testable: its arguments, its outputs and
// its signals in, its exit status out.
type RunFunc func(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int

// Run is one run of a command in a goroutine.
type Run struct {
	Sig            chan os.Signal
	Code           chan int
	Stdout, Stderr *Buffer
}

// Start runs run with args in a goroutine.
func Start(run RunFunc, args ...string) *Run {
	r := &Run{Sig: make(chan os.Signal, 1), Code: make(chan int, 1), Stdout: new(Buffer), Stderr: new(Buffer)}
	go func() { r.Code <- run(args, r.Stdout, r.Stderr, r.Sig) }()
	return r
}

// Wait returns the run's exit status, failing the test, with the run's
// stderr and every goroutine's stack, if it takes longer than within.
func (r *Run) Wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case code := <-r.Code:
		return code
	case <-time.After(within):
		var stacks bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("still running after %v; stderr:\n%s\ngoroutines:\n%s", within, r.Stderr, &stacks)
		return -1
	}
}

// Stop sends the run SIGTERM and returns its exit status (Wait, 15 s).
func (r *Run) Stop(t testing.TB) int {
	t.Helper()
	r.Sig <- syscall.SIGTERM
	return r.Wait(t, 15*time.Second)
}
