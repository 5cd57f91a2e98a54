package pki

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func TestQUICPin(t *testing.T) {
	cert, pinStr, err := SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pin, err := ParsePin(pinStr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", ServerTLS(cert, testALPN), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// The server echoes one stream per connection so the right-pin case
	// proves data actually flows, not just that the handshake returned.
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				s, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				io.Copy(s, s)
				s.Close()
			}()
		}
	}()

	t.Run("right pin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn, err := quic.DialAddr(ctx, ln.Addr().String(), ClientTLS(pin, testALPN), nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.CloseWithError(0, "")
		if cs := conn.ConnectionState().TLS; cs.NegotiatedProtocol != testALPN {
			t.Errorf("ALPN = %q", cs.NegotiatedProtocol)
		}
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		got, err := io.ReadAll(s)
		if err != nil || string(got) != "ping" {
			t.Fatalf("echo = %q, %v", got, err)
		}
	})

	t.Run("wrong pin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		wrong := sha256.Sum256([]byte("not the server key"))
		conn, err := quic.DialAddr(ctx, ln.Addr().String(), ClientTLS(wrong, testALPN), nil)
		if err == nil {
			conn.CloseWithError(0, "")
			t.Fatal("dial succeeded with the wrong pin")
		}
		if !errors.Is(err, ErrPinMismatch) {
			t.Errorf("dial err = %v, want ErrPinMismatch", err)
		}
	})
}
