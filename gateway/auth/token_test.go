package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.UnixMilli(1_800_000_000_123)

func claims() Claims {
	return Claims{Subject: "alice", Role: TenantAdmin, Tenant: "acme", Generation: 7,
		IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), MustChangePassword: true}
}

func ring(t *testing.T, current string, ids ...string) (*Keyring, map[string][]byte) {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range ids {
		_, keys[id] = NewKey()
	}
	k, err := NewKeyring(current, keys)
	if err != nil {
		t.Fatal(err)
	}
	return k, keys
}

func TestTokenRoundTrip(t *testing.T) {
	k, _ := ring(t, "k1", "k1")
	tok, err := k.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "sbt1.") || strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q is not sbt1.<payload>.<mac>", tok)
	}
	got, err := k.Verify(tok, t0.Add(59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got != claims() {
		t.Fatalf("claims %+v, want %+v", got, claims())
	}
}

// A token issued by one node verifies on another holding the same keys, also
// after the signing key changed there, as long as the old key is held.
func TestTokenAcrossNodesAndRotation(t *testing.T) {
	_, keys := ring(t, "k1", "k1")
	a, err := NewKeyring("k1", keys)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}
	id2, key2 := NewKey()
	keys[id2] = key2
	b, err := NewKeyring(id2, keys)
	if err != nil {
		t.Fatal(err)
	}
	if b.Current() != id2 {
		t.Fatalf("current %q", b.Current())
	}
	if _, err := b.Verify(tok, t0); err != nil {
		t.Fatalf("old key's token on the rotated ring: %v", err)
	}
	tok2, err := b.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(tok2, t0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new key's token on a ring without it: %v, want ErrUnknownKey", err)
	}
	delete(keys, "k1")
	c, err := NewKeyring(id2, keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(tok, t0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired key's token: %v, want ErrUnknownKey", err)
	}
}

func TestTokenVerifyErrors(t *testing.T) {
	k, _ := ring(t, "k1", "k1")
	other, _ := ring(t, "k1", "k1") // same id, other key
	tok, err := k.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	enc := base64.RawURLEncoding.EncodeToString
	// A payload altered to claim the super role, with the original MAC.
	altered := parts[0] + "." + enc([]byte(strings.Replace(decode(t, parts[1]), `"tenant_admin"`, `"super"`, 1))) + "." + parts[2]
	for name, c := range map[string]struct {
		tok  string
		now  time.Time
		want error
	}{
		"expired at the instant": {tok, t0.Add(time.Hour), ErrTokenExpired},
		"expired later":          {tok, t0.Add(2 * time.Hour), ErrTokenExpired},
		"issued in the future":   {tok, t0.Add(-2 * MaxClockSkew), ErrTokenMalformed},
		"other key":              {forged, t0, ErrTokenSignature},
		"altered payload":        {altered, t0, ErrTokenSignature},
		"mac cut":                {tok[:len(tok)-3], t0, ErrTokenSignature},
		"empty":                  {"", t0, ErrTokenMalformed},
		"wrong prefix":           {"sbt2." + parts[1] + "." + parts[2], t0, ErrTokenMalformed},
		"two parts":              {parts[0] + "." + parts[1], t0, ErrTokenMalformed},
		"four parts":             {tok + ".x", t0, ErrTokenMalformed},
		"payload not base64":     {"sbt1.***." + parts[2], t0, ErrTokenMalformed},
		"mac not base64":         {parts[0] + "." + parts[1] + ".***", t0, ErrTokenMalformed},
		"payload not json":       {"sbt1." + enc([]byte("nope")) + "." + parts[2], t0, ErrTokenMalformed},
		"unknown key":            {"sbt1." + enc([]byte(`{"kid":"zz"}`)) + "." + parts[2], t0, ErrUnknownKey},
		"too long":               {tok + strings.Repeat("A", MaxTokenLen), t0, ErrTokenMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := k.Verify(c.tok, c.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
			for _, e := range []error{ErrTokenMalformed, ErrTokenExpired, ErrTokenSignature, ErrUnknownKey} {
				if e != c.want && errors.Is(err, e) {
					t.Fatalf("Verify: %v also matches %v", err, e)
				}
			}
		})
	}
	if _, err := k.Verify(tok, t0.Add(-MaxClockSkew/2)); err != nil {
		t.Fatalf("a token from a node whose clock is a little ahead: %v", err)
	}
}

// Signed nonsense (a valid MAC over claims that break the rules) is still
// refused.
func TestTokenSignedBadClaims(t *testing.T) {
	k, keys := ring(t, "k1", "k1")
	payload := `{"kid":"k1","sub":"alice","role":"root","gen":1,"iat":1,"exp":2}`
	signed := "sbt1." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	tok := signed + "." + base64.RawURLEncoding.EncodeToString(mac(keys["k1"], signed))
	if _, err := k.Verify(tok, time.UnixMilli(1)); !errors.Is(err, ErrTokenMalformed) {
		t.Fatalf("Verify: %v, want ErrTokenMalformed", err)
	}
}

func TestIssueRefusesBadClaims(t *testing.T) {
	k, _ := ring(t, "k1", "k1")
	for name, mod := range map[string]func(*Claims){
		"no subject":        func(c *Claims) { c.Subject = "" },
		"bad subject":       func(c *Claims) { c.Subject = "Alice" },
		"unknown role":      func(c *Claims) { c.Role = "root" },
		"super with tenant": func(c *Claims) { c.Role = Super },
		"admin w/o tenant":  func(c *Claims) { c.Tenant = "" },
		"expires at issue":  func(c *Claims) { c.ExpiresAt = c.IssuedAt },
	} {
		c := claims()
		mod(&c)
		if _, err := k.Issue(c); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("%s: Issue = %v, want ErrTokenMalformed", name, err)
		}
	}
}

func TestNewKeyringRefusesBadKeys(t *testing.T) {
	_, key := NewKey()
	_, err := NewKeyring("k9", map[string][]byte{"k1": key[:16], "Bad!": key})
	if !errors.Is(err, ErrInvalidKeyring) {
		t.Fatalf("err %v, want ErrInvalidKeyring", err)
	}
	for _, m := range []string{`"k1" has 16 bytes`, "Bad!", `current key "k9"`} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %s", err, m)
		}
	}
	// The ring copies the keys: changing the caller's map or slice later
	// does not change it.
	keys := map[string][]byte{"k1": key}
	k, err := NewKeyring("k1", keys)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff
	delete(keys, "k1")
	if _, err := k.Verify(tok, t0); err != nil {
		t.Fatalf("ring changed with the caller's map: %v", err)
	}
}

func decode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzVerify: whatever a caller sends as a token, Verify does not panic and
// either returns claims that pass Issue's checks or exactly one of the
// token errors.
func FuzzVerify(f *testing.F) {
	keys := map[string][]byte{"k1": make([]byte, KeyLen)}
	k, err := NewKeyring("k1", keys)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := k.Issue(claims())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("sbt1..")
	f.Add("sbt1." + base64.RawURLEncoding.EncodeToString([]byte(`{"kid":"k1","sub":"a","role":"super","iat":1,"exp":2}`)) + ".AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := k.Verify(s, t0)
		if err == nil {
			if err := checkClaims(c); err != nil {
				t.Fatalf("Verify accepted claims Issue refuses: %v", err)
			}
			return
		}
		n := 0
		for _, e := range []error{ErrTokenMalformed, ErrTokenExpired, ErrTokenSignature, ErrUnknownKey} {
			if errors.Is(err, e) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("Verify(%q): %v matches %d token errors, want 1", s, err, n)
		}
	})
}
