package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewSecret(t *testing.T) {
	clear, hash := NewSecret()
	if !strings.HasPrefix(clear, SecretPrefix) {
		t.Fatalf("secret %q lacks the prefix", clear)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(clear, SecretPrefix))
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret body is not 32 bytes of base64url: %d bytes, %v", len(raw), err)
	}
	if len(hash) != SecretHashLen {
		t.Fatalf("hash has %d bytes", len(hash))
	}
	if !VerifySecret(hash, clear) {
		t.Fatal("VerifySecret refuses the secret's own hash")
	}
	other, _ := NewSecret()
	if other == clear {
		t.Fatal("two secrets are equal")
	}
	for _, bad := range []string{other, "", clear[:len(clear)-1], clear + "x", strings.TrimPrefix(clear, SecretPrefix)} {
		if VerifySecret(hash, bad) {
			t.Errorf("VerifySecret accepts %q", bad)
		}
	}
	if VerifySecret(hash[:31], clear) || VerifySecret(nil, clear) {
		t.Error("VerifySecret accepts a truncated or missing hash")
	}
}

func TestNewSecretID(t *testing.T) {
	a, b := NewSecretID(), NewSecretID()
	if a == b || !ValidName(a) || len(a) != 16 {
		t.Fatalf("secret ids %q, %q: want two different valid 16-character names", a, b)
	}
}

func TestNewOneTimePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		pw := NewOneTimePassword()
		if seen[pw] {
			t.Fatalf("%q drawn twice", pw)
		}
		seen[pw] = true
		groups := strings.Split(pw, "-")
		if len(groups) != 4 {
			t.Fatalf("%q: want four groups", pw)
		}
		for _, g := range groups {
			if len(g) != 5 || strings.Trim(g, "abcdefghijklmnopqrstuvwxyz234567") != "" {
				t.Fatalf("%q: group %q is not five lower-case base32 characters", pw, g)
			}
		}
		if err := CheckPassword(pw, "administrator"); err != nil {
			t.Fatalf("%q: %v", pw, err)
		}
	}
}
