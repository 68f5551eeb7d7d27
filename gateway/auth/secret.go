package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"strings"
)

// SecretPrefix starts every API client secret, so a leaked one is easy to
// recognise (and to search for).
const SecretPrefix = "sbs_"

// SecretHashLen is the length of a stored secret hash (SHA-256).
const SecretHashLen = sha256.Size

// NewSecret returns a new API client secret — SecretPrefix and 32 random
// bytes in unpadded base64url (47 characters) — and the hash to store
// (HashSecret of it). The clear text is shown once and never stored.
func NewSecret() (clear string, hash []byte) {
	clear = SecretPrefix + base64.RawURLEncoding.EncodeToString(random(32))
	return clear, HashSecret(clear)
}

// HashSecret returns SHA-256 of the secret's clear text (prefix included).
func HashSecret(clear string) []byte {
	h := sha256.Sum256([]byte(clear))
	return h[:]
}

// VerifySecret reports, in constant time, whether clear hashes to hash.
func VerifySecret(hash []byte, clear string) bool {
	return len(hash) == SecretHashLen && subtle.ConstantTimeCompare(HashSecret(clear), hash) == 1
}

// NewSecretID returns a random identifier for a client secret (a valid
// name: 16 characters of lower-case base32), under which it is listed,
// rotated and revoked.
func NewSecretID() string { return lowerBase32(random(10)) }

// NewOneTimePassword returns a random password for a first or reset
// administrator login, easy to read and type: four groups of five
// lower-case base32 characters joined by '-' (100 bits), e.g.
// "k3zqa-7mfte-x2b4r-pq5wn". It always has two character classes and the
// right length for CheckPassword; it may by chance contain a short username
// (for a 5-letter name about once in 70,000 draws), so callers check it with
// CheckPassword and draw again when refused.
func NewOneTimePassword() string {
	s := lowerBase32(random(12))[:20]
	return s[0:5] + "-" + s[5:10] + "-" + s[10:15] + "-" + s[15:20]
}

func lowerBase32(b []byte) string {
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// random returns n bytes from crypto/rand, which does not fail on the
// systems Go supports (since Go 1.24 it crashes the program rather than
// return an error).
func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
