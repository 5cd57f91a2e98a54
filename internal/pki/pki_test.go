package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testALPN = "braid-test"

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	pin, err := Keygen(dir, []string{"127.0.0.1", "::1", "conc.example", " ", "braid"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode = %o, want 700", m)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if m := mode(t, certPath); m != 0o644 {
		t.Errorf("cert mode = %o, want 644", m)
	}
	if m := mode(t, keyPath); m != 0o600 {
		t.Errorf("key mode = %o, want 600", m)
	}

	cert := readCert(t, certPath)
	if got := Pin(cert); got != pin {
		t.Errorf("Keygen pin %s != Pin(cert.pem) %s", pin, got)
	}
	if cert.Subject.CommonName != "braid concentrator" {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	if !slices.Equal(cert.DNSNames, []string{"braid", "conc.example"}) {
		t.Errorf("DNSNames = %q", cert.DNSNames)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", cert.IPAddresses)
	}
	if life := time.Until(cert.NotAfter); life < 9*365*24*time.Hour || life > 11*365*24*time.Hour {
		t.Errorf("NotAfter = %v, want about 10 years from now", cert.NotAfter)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", cert.PublicKey)
	}

	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("key.pem: want a PRIVATE KEY block, got %v", b)
	}
	if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
		t.Errorf("key.pem is not PKCS#8: %v", err)
	}

	_, loadedPin, err := LoadServerCert(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if loadedPin != pin {
		t.Errorf("LoadServerCert pin %s != %s", loadedPin, pin)
	}
}

func TestKeygenRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	pin, err := Keygen(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	before, _ := os.ReadFile(certPath)

	_, err = Keygen(dir, nil, false)
	if err == nil || !strings.Contains(err.Error(), certPath) {
		t.Fatalf("second Keygen: err = %v, want refusal naming %s", err, certPath)
	}
	if after, _ := os.ReadFile(certPath); !bytes.Equal(before, after) {
		t.Error("refused Keygen changed cert.pem")
	}

	// A lone key must be protected too: it may be the only copy.
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	_, err = Keygen(dir, nil, false)
	if err == nil || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("Keygen with existing key: err = %v, want refusal naming %s", err, keyPath)
	}
	if _, err := os.Stat(certPath); err == nil {
		t.Error("refused Keygen wrote cert.pem")
	}

	// force replaces both and restores exact modes.
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	pin2, err := Keygen(dir, nil, true)
	if err != nil {
		t.Fatalf("Keygen force: %v", err)
	}
	if pin2 == pin {
		t.Error("force Keygen returned the old pin")
	}
	if got := Pin(readCert(t, certPath)); got != pin2 {
		t.Errorf("pin %s != Pin(cert.pem) %s", pin2, got)
	}
	if m := mode(t, keyPath); m != 0o600 {
		t.Errorf("key mode after force = %o, want 600", m)
	}
	if _, _, err := LoadServerCert(certPath, keyPath); err != nil {
		t.Errorf("forced pair does not load: %v", err)
	}
}

func TestParsePin(t *testing.T) {
	_, pinStr, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ParsePin(pinStr)
	if err != nil {
		t.Fatalf("ParsePin(%q): %v", pinStr, err)
	}
	if formatPin(sum) != pinStr {
		t.Errorf("round trip %s != %s", formatPin(sum), pinStr)
	}
	if _, err := ParsePin("  " + pinStr + "\n"); err != nil {
		t.Errorf("ParsePin with surrounding space: %v", err)
	}

	b64 := strings.TrimPrefix(pinStr, "sha256:")
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct{ in, want string }{
		{"", "does not start with"},
		{b64, "does not start with"},
		{"sha1:" + b64, "does not start with"},
		{"SHA256:" + b64, "does not start with"},
		{"sha256:!!!notbase64!!!", "base64"},
		{"sha256:" + strings.TrimRight(b64, "="), "base64"},
		{"sha256:" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), "base64"},
		{"sha256:" + short, "16 bytes, want 32"},
		{"sha256:", "0 bytes, want 32"},
	} {
		if _, err := ParsePin(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePin(%q) err = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestLoadServerCertErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Keygen(dir, nil, false); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	otherDir := t.TempDir()
	if _, err := Keygen(otherDir, nil, false); err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(otherDir, "key.pem")

	for _, tc := range []struct{ cert, key, want string }{
		{missing, keyPath, missing},
		{certPath, missing, missing},
		{garbage, keyPath, garbage},
		{certPath, garbage, garbage},
		{keyPath, keyPath, keyPath},    // key given as cert
		{certPath, certPath, certPath}, // cert given as key
		{certPath, otherKey, otherKey}, // mismatched pair
	} {
		if _, _, err := LoadServerCert(tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadServerCert(%s, %s) err = %v, want error naming %s", tc.cert, tc.key, err, tc.want)
		}
	}
}

// tlsHandshake runs a TLS handshake over loopback TCP (kernel buffering
// avoids the lock-step deadlocks net.Pipe can cause) and returns both sides'
// results.
func tlsHandshake(t *testing.T, server, client *tls.Config) (srvState tls.ConnectionState, srvErr, cliErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			// Wait for the client's verdict so the server's error (if any)
			// reflects the client's alert.
			_, err = tc.Read(make([]byte, 1))
		}
		done <- result{tc.ConnectionState(), err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	cliErr = tc.Handshake()
	if cliErr == nil {
		if _, err := tc.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if cs := tc.ConnectionState(); cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != testALPN {
			t.Errorf("client state: version %x ALPN %q", cs.Version, cs.NegotiatedProtocol)
		}
	}
	c.Close()
	r := <-done
	return r.state, r.err, cliErr
}

func TestTLSPin(t *testing.T) {
	cert, pinStr, err := SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pin, err := ParsePin(pinStr)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("right pin", func(t *testing.T) {
		st, srvErr, cliErr := tlsHandshake(t, ServerTLS(cert, testALPN), ClientTLS(pin, testALPN))
		if cliErr != nil || srvErr != nil {
			t.Fatalf("client err %v, server err %v", cliErr, srvErr)
		}
		if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != testALPN {
			t.Errorf("server state: version %x ALPN %q", st.Version, st.NegotiatedProtocol)
		}
	})

	t.Run("wrong pin", func(t *testing.T) {
		wrong := sha256.Sum256([]byte("some other key"))
		_, srvErr, cliErr := tlsHandshake(t, ServerTLS(cert, testALPN), ClientTLS(wrong, testALPN))
		if !errors.Is(cliErr, ErrPinMismatch) {
			t.Fatalf("client err = %v, want ErrPinMismatch", cliErr)
		}
		if msg := cliErr.Error(); !strings.Contains(msg, formatPin(wrong)) || !strings.Contains(msg, pinStr) {
			t.Errorf("client err %q should name expected %s and presented %s", msg, formatPin(wrong), pinStr)
		}
		if srvErr == nil {
			t.Error("server handshake succeeded despite client rejecting the key")
		}
	})

	t.Run("other server key", func(t *testing.T) {
		other, _, err := SelfSigned(nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, cliErr := tlsHandshake(t, ServerTLS(other, testALPN), ClientTLS(pin, testALPN))
		if !errors.Is(cliErr, ErrPinMismatch) {
			t.Fatalf("client err = %v, want ErrPinMismatch", cliErr)
		}
	})

	t.Run("ALPN mismatch", func(t *testing.T) {
		_, srvErr, cliErr := tlsHandshake(t, ServerTLS(cert, testALPN), ClientTLS(pin, "something-else"))
		if cliErr == nil || srvErr == nil {
			t.Fatalf("client err %v, server err %v; want both to fail", cliErr, srvErr)
		}
		if errors.Is(cliErr, ErrPinMismatch) {
			t.Errorf("ALPN failure reported as pin mismatch: %v", cliErr)
		}
	})

	t.Run("TLS 1.2 refused", func(t *testing.T) {
		old := ClientTLS(pin, testALPN)
		old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		_, srvErr, cliErr := tlsHandshake(t, ServerTLS(cert, testALPN), old)
		if cliErr == nil || srvErr == nil {
			t.Fatalf("client err %v, server err %v; want both to fail", cliErr, srvErr)
		}
	})
}
