package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeFlow is an in-memory flow: what the relay writes goes to out, what
// it reads comes from in.
type fakeFlow struct {
	in  *io.PipeReader
	out bytes.Buffer

	mu                    sync.Mutex
	closedWrite, wasReset bool
	closed                bool
}

func (f *fakeFlow) Read(p []byte) (int, error) { return f.in.Read(p) }
func (f *fakeFlow) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}
func (f *fakeFlow) CloseWrite() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closedWrite = true
	return nil
}
func (f *fakeFlow) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wasReset = true
	f.in.CloseWithError(errors.New("reset"))
}
func (f *fakeFlow) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

func TestHalfCloseBothWays(t *testing.T) {
	app, conn := tcpPair(t)
	defer app.Close()
	pr, pw := io.Pipe()
	f := &fakeFlow{in: pr}
	done := make(chan struct{})
	go func() { Relay(conn, f); close(done) }()

	app.Write([]byte("up"))
	app.CloseWrite() // the application's FIN becomes the flow's FIN
	pw.Write([]byte("down"))
	pw.Close() // the peer's FIN becomes the socket's FIN
	got, err := io.ReadAll(app)
	if err != nil || string(got) != "down" {
		t.Fatalf("application read %q, %v", got, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not finish after both FINs")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.out.String() != "up" || !f.closedWrite || f.wasReset || !f.closed {
		t.Fatalf("flow got %q, closeWrite %v, reset %v, closed %v", f.out.String(), f.closedWrite, f.wasReset, f.closed)
	}
}

func TestFlowResetResetsSocket(t *testing.T) {
	app, conn := tcpPair(t)
	defer app.Close()
	pr, _ := io.Pipe()
	f := &fakeFlow{in: pr}
	done := make(chan struct{})
	go func() { Relay(conn, f); close(done) }()
	f.Reset() // the peer reset the flow
	app.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(app)
	if err == nil {
		t.Fatal("the application saw a clean end; want a reset")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the socket was never closed")
	}
	<-done
}
