package server

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/quic-go/quic-go"
)

// Keys derived from the concentrator's private key, so that a
// concentrator restarted with the same key (or another sharing it)
// recognises what the first one issued:
//
//   - the stateless reset key: quic-go hands a client a reset token with
//     every connection ID. A restarted concentrator that gets a packet for
//     a connection it does not know answers with that token, and the
//     client drops the connection at once and redials, instead of waiting
//     for the 15 s idle timeout. Without a key quic-go sends no resets.
//   - the token key: Retry tokens (and NEW_TOKEN tokens) stay valid across
//     a restart, so a client mid-Retry is not sent round again.
//
// Each is HKDF-SHA256 over the key's PKCS #8 DER with its own label: the
// private key itself is never used as either, and neither derived key
// tells anything about it or the other.
const (
	resetKeyLabel = "braid quic stateless reset key v1"
	tokenKeyLabel = "braid quic token key v1"
)

// transportKeys returns the stateless reset and token keys of cert's
// private key.
func transportKeys(cert tls.Certificate) (*quic.StatelessResetKey, *quic.TokenGeneratorKey, error) {
	reset, err := deriveKey(cert, resetKeyLabel)
	if err != nil {
		return nil, nil, err
	}
	token, err := deriveKey(cert, tokenKeyLabel)
	if err != nil {
		return nil, nil, err
	}
	return (*quic.StatelessResetKey)(&reset), (*quic.TokenGeneratorKey)(&token), nil
}

// deriveKey derives a 32-byte key for label from cert's private key.
func deriveKey(cert tls.Certificate, label string) ([32]byte, error) {
	var k [32]byte
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return k, fmt.Errorf("private key: %w", err)
	}
	b, err := hkdf.Key(sha256.New, der, nil, label, len(k))
	if err != nil {
		return k, err
	}
	copy(k[:], b)
	return k, nil
}
