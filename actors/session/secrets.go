package session

// This file is outside the pure core: it reads crypto/rand. The edge makes
// codes, join secrets and resume tokens with it; the core only stores and
// compares hashes.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
)

// HashSecret returns SHA-256 of b: the form in which join secrets and resume
// tokens are stored (hash the secret's text, HashSecret([]byte(secret))).
func HashSecret(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

var codeSpan = big.NewInt(900_000_000)

// NewCode returns a uniformly random session code: 9 digits, the first not 0
// (about 30 bits; the join secret, not the code, is what keeps a session
// private).
func NewCode() string {
	n, err := rand.Int(rand.Reader, codeSpan)
	if err != nil {
		panic("session: crypto/rand failed: " + err.Error())
	}
	return fmt.Sprintf("%09d", n.Int64()+100_000_000)
}

// NewSecret returns a random secret of 256 bits in unpadded URL-safe base64
// (43 characters): for join secrets and resume tokens.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("session: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
