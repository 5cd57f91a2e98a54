// Package pki creates, loads and pins the concentrator's TLS identity.
//
// braid does not use a certificate authority: the client is configured with
// a pin (the SHA-256 of the concentrator's SubjectPublicKeyInfo) and accepts
// exactly the server that proves possession of that key. The certificate is
// only a container for the key; its names and validity are not checked.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrPinMismatch is wrapped by the handshake error when the server presents
// a key other than the pinned one, so callers can tell a wrong or rotated
// key apart from network failures.
var ErrPinMismatch = errors.New("pki: server key does not match the pinned key")

// PinPrefix is the prefix of every pin string; it names the hash so a
// different algorithm could be introduced later without ambiguity.
const PinPrefix = "sha256:"

// CertFileName and KeyFileName are the names Keygen writes inside its
// directory.
const (
	CertFileName = "cert.pem"
	KeyFileName  = "key.pem"
)

const (
	commonName = "braid concentrator"
	// defaultDNSName is always present so a client that sends SNI "braid"
	// sees a matching name, even though the pin is what is verified.
	defaultDNSName = "braid"
	validity       = 10 * 365 * 24 * time.Hour
	// backdate tolerates clocks that are a little behind the generating host.
	backdate = time.Hour
)

// Keygen creates a self-signed ECDSA P-256 certificate for the concentrator
// (valid 10 years, CN "braid concentrator", SAN DNS "braid" plus hosts: IP
// literals become IP SANs, anything else DNS SANs) and writes dir/cert.pem
// (0644) and dir/key.pem (0600, PKCS#8 "PRIVATE KEY"), creating dir with
// mode 0700 if needed. Unless force is set it refuses to overwrite either
// file, because replacing the key silently breaks every client pinned to it.
// It returns the pin of the new key.
func Keygen(dir string, hosts []string, force bool) (pin string, err error) {
	certPath := filepath.Join(dir, CertFileName)
	keyPath := filepath.Join(dir, KeyFileName)
	if !force {
		// Check both before writing anything so a refusal never leaves a
		// new cert next to an old key.
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return "", fmt.Errorf("pki: %s already exists (use force to overwrite)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("pki: check %s: %w", p, err)
			}
		}
	}
	der, key, err := newCert(hosts)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("pki: marshal private key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("pki: create directory %s: %w", dir, err)
	}
	// The key is written first: if that fails, no cert is left pointing at
	// a key that does not exist.
	if err := writePEM(keyPath, "PRIVATE KEY", keyDER, 0o600, force); err != nil {
		return "", err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644, force); err != nil {
		return "", err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", fmt.Errorf("pki: parse generated certificate: %w", err)
	}
	return Pin(cert), nil
}

// writePEM writes one PEM block to path with exactly mode perm. Without
// overwrite it uses O_EXCL so a file that appeared after Keygen's check is
// still not clobbered.
func writePEM(path, typ string, der []byte, perm os.FileMode, overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE
	if overwrite {
		flags |= os.O_TRUNC
	} else {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pki: %s already exists (use force to overwrite)", path)
		}
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	// OpenFile's perm is filtered by the umask and ignored for an existing
	// file; chmod makes the mode exact (and tightens an old, looser key file).
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("pki: chmod %s: %w", path, err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pki: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: close %s: %w", path, err)
	}
	return nil
}

// newCert generates a fresh P-256 key and a self-signed certificate for it.
func newCert(hosts []string) (der []byte, key *ecdsa.PrivateKey, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{defaultDNSName},
	}
	seenIP := make(map[netip.Addr]bool)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			// Zones are host-local and cannot be encoded in a SAN.
			ip = ip.Unmap().WithZone("")
			if !seenIP[ip] {
				seenIP[ip] = true
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
			}
			continue
		}
		if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create certificate: %w", err)
	}
	return der, key, nil
}

// Pin returns the pin of cert: "sha256:" followed by the standard base64
// (with padding) of SHA-256 over its RawSubjectPublicKeyInfo. Hashing the
// SPKI rather than the whole certificate keeps the pin stable if the
// certificate is re-issued for the same key.
func Pin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return formatPin(sum)
}

func formatPin(sum [32]byte) string {
	return PinPrefix + base64.StdEncoding.EncodeToString(sum[:])
}

// ParsePin validates a pin string as produced by Pin and returns its
// SHA-256 digest. Surrounding whitespace is ignored because pins are
// usually pasted from a terminal into a config file.
func ParsePin(s string) ([32]byte, error) {
	var sum [32]byte
	s = strings.TrimSpace(s)
	b64, ok := strings.CutPrefix(s, PinPrefix)
	if !ok {
		return sum, fmt.Errorf("pki: pin %q does not start with %q", s, PinPrefix)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return sum, fmt.Errorf("pki: pin %q is not valid standard base64: %w", s, err)
	}
	if len(raw) != len(sum) {
		return sum, fmt.Errorf("pki: pin %q decodes to %d bytes, want %d (a SHA-256 digest)", s, len(raw), len(sum))
	}
	copy(sum[:], raw)
	return sum, nil
}

// LoadServerCert loads a PEM certificate chain and private key and returns
// them as a tls.Certificate together with the pin of the leaf, so the
// concentrator can print the pin its clients need. Errors name the file at
// fault.
func LoadServerCert(certFile, keyFile string) (tls.Certificate, string, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("pki: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("pki: read key: %w", err)
	}
	// tls.X509KeyPair does not know file names; check each file's contents
	// first so the error points at the right one.
	if !hasPEMBlock(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return tls.Certificate{}, "", fmt.Errorf("pki: %s: no CERTIFICATE PEM block", certFile)
	}
	if !hasPEMBlock(keyPEM, func(t string) bool { return t == "PRIVATE KEY" || strings.HasSuffix(t, " PRIVATE KEY") }) {
		return tls.Certificate{}, "", fmt.Errorf("pki: %s: no PRIVATE KEY PEM block", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("pki: load %s with %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return tls.Certificate{}, "", fmt.Errorf("pki: %s: parse certificate: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	return cert, Pin(cert.Leaf), nil
}

// hasPEMBlock reports whether data contains a PEM block whose type ok accepts.
func hasPEMBlock(data []byte, ok func(string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if ok(b.Type) {
			return true
		}
	}
}

// ServerTLS returns a TLS 1.3-only server config presenting cert and
// offering only the given ALPN protocol. TLS 1.3 is required by QUIC and
// also keeps the certificate encrypted on the wire.
func ServerTLS(cert tls.Certificate, alpn string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpn},
	}
}

// ClientTLS returns a TLS 1.3-only client config offering the given ALPN
// protocol that accepts the server only if the SPKI of its leaf certificate
// hashes to pin. A mismatch fails the handshake with an error wrapping
// ErrPinMismatch that names the expected and the presented pin.
func ClientTLS(pin [32]byte, alpn string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		NextProtos: []string{alpn},
		// InsecureSkipVerify only turns off chain building and host name
		// checks, which would fail for a self-signed certificate anyway.
		// It is safe here because the pin IS the trust anchor: the TLS 1.3
		// handshake still verifies the server's CertificateVerify signature
		// against the leaf's public key, so a server that passes the pin
		// check below has proven it holds the pinned private key. Names,
		// issuer and expiry carry no extra trust in this scheme.
		InsecureSkipVerify: true,
		// VerifyConnection (unlike VerifyPeerCertificate) also runs on
		// resumed sessions, so the pin is checked on every connection.
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPin(pin, alpn, cs)
		},
	}
}

// verifyPin checks the negotiated connection against the pinned key.
func verifyPin(pin [32]byte, alpn string, cs tls.ConnectionState) error {
	want := formatPin(pin)
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: expected %s, server presented no certificate", ErrPinMismatch, want)
	}
	got := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
	if subtle.ConstantTimeCompare(got[:], pin[:]) != 1 {
		return fmt.Errorf("%w: expected %s, server presented %s", ErrPinMismatch, want, formatPin(got))
	}
	// A server that ignores ALPN would otherwise be accepted and then speak
	// a protocol we do not expect.
	if alpn != "" && cs.NegotiatedProtocol != alpn {
		return fmt.Errorf("pki: server negotiated ALPN %q, want %q", cs.NegotiatedProtocol, alpn)
	}
	return nil
}

// SelfSigned makes an in-memory certificate like Keygen's (same names and
// validity) without touching the file system, for tests and the demo. It
// returns the certificate and its pin.
func SelfSigned(hosts []string) (tls.Certificate, string, error) {
	der, key, err := newCert(hosts)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("pki: parse generated certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: [][]byte{der},
		PrivateKey:  key,
		Leaf:        leaf,
	}, Pin(leaf), nil
}
