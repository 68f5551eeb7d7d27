package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token errors; Verify wraps exactly one of them.
var (
	// ErrTokenMalformed: not a token of this format, or claims that make no
	// sense (issued after it expires, issued in the future beyond
	// MaxClockSkew, an invalid role).
	ErrTokenMalformed = errors.New("auth: malformed token")
	// ErrTokenExpired: a valid token past its ExpiresAt.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrTokenSignature: the MAC does not match (forged or altered).
	ErrTokenSignature = errors.New("auth: bad token signature")
	// ErrUnknownKey: signed with a key this key ring does not hold (retired,
	// or not replicated here yet).
	ErrUnknownKey = errors.New("auth: token signed with an unknown key")
	// ErrInvalidKeyring: NewKeyring's arguments are wrong.
	ErrInvalidKeyring = errors.New("auth: invalid key ring")
)

// TokenPrefix starts every token and names its format version.
const TokenPrefix = "sbt1"

// KeyLen is the length of a signing key (HMAC-SHA256).
const KeyLen = 32

// MaxTokenLen bounds what Verify reads.
const MaxTokenLen = 4096

// MaxClockSkew is how far in this node's future a token may have been issued
// (nodes' clocks differ a little).
const MaxClockSkew = time.Minute

// Claims are what a token states about its bearer. Times are kept to the
// millisecond.
type Claims struct {
	Subject string // the account name
	Role    Role
	Tenant  string
	// Generation is the account's generation at issue; a token whose
	// generation is not the account's current one is no longer valid.
	Generation uint64
	IssuedAt   time.Time
	ExpiresAt  time.Time
	// MustChangePassword: the bearer may only change its password.
	MustChangePassword bool
}

// payload is the signed JSON form of Claims.
type payload struct {
	Key        string `json:"kid"`
	Subject    string `json:"sub"`
	Role       Role   `json:"role"`
	Tenant     string `json:"ten,omitempty"`
	Generation uint64 `json:"gen"`
	IssuedAt   int64  `json:"iat"` // Unix ms
	ExpiresAt  int64  `json:"exp"` // Unix ms
	MustChange bool   `json:"mcp,omitempty"`
}

// Keyring holds the token keys by id and names the one that signs. It does
// not change after NewKeyring, so it is safe for concurrent use; to rotate,
// build a new one (holding the old key as long as its tokens may live) and
// swap it in.
type Keyring struct {
	keys    map[string][]byte
	current string
}

// NewKey returns a new random signing key and an id for it (a valid name).
func NewKey() (id string, key []byte) { return NewSecretID(), random(KeyLen) }

// NewKeyring returns a key ring holding keys (id → KeyLen-byte key) that
// signs with keys[current]. Every id must be a valid name. It copies the
// keys; every problem is reported at once, wrapping ErrInvalidKeyring.
func NewKeyring(current string, keys map[string][]byte) (*Keyring, error) {
	var bad []string
	k := &Keyring{keys: make(map[string][]byte, len(keys)), current: current}
	for id, key := range keys {
		if err := CheckName("key id", id); err != nil {
			bad = append(bad, err.Error())
		}
		if len(key) != KeyLen {
			bad = append(bad, fmt.Sprintf("key %q has %d bytes, not %d", id, len(key), KeyLen))
		}
		k.keys[id] = append([]byte(nil), key...)
	}
	if _, ok := keys[current]; !ok {
		bad = append(bad, fmt.Sprintf("current key %q is not in the ring", current))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidKeyring, strings.Join(bad, "; "))
	}
	return k, nil
}

// Current returns the id of the signing key.
func (k *Keyring) Current() string { return k.current }

var b64url = base64.RawURLEncoding

// Issue signs c with the current key. c must have a valid Subject (a name),
// a valid Role and tenant, and ExpiresAt after IssuedAt.
func (k *Keyring) Issue(c Claims) (string, error) {
	if err := checkClaims(c); err != nil {
		return "", err
	}
	p := payload{
		Key: k.current, Subject: c.Subject, Role: c.Role, Tenant: c.Tenant, Generation: c.Generation,
		IssuedAt: c.IssuedAt.UnixMilli(), ExpiresAt: c.ExpiresAt.UnixMilli(), MustChange: c.MustChangePassword,
	}
	data, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("auth: encode token: %w", err)
	}
	signed := TokenPrefix + "." + b64url.EncodeToString(data)
	return signed + "." + b64url.EncodeToString(mac(k.keys[k.current], signed)), nil
}

func checkClaims(c Claims) error {
	var bad []string
	if err := CheckName("subject", c.Subject); err != nil {
		bad = append(bad, err.Error())
	}
	if err := c.Role.Check(c.Tenant); err != nil {
		bad = append(bad, err.Error())
	}
	if !c.ExpiresAt.After(c.IssuedAt) {
		bad = append(bad, "expires_at is not after issued_at")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrTokenMalformed, strings.Join(bad, "; "))
	}
	return nil
}

func mac(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// Verify checks token's format, key, signature and expiry at now (in this
// order) and returns its claims. The error wraps ErrTokenMalformed,
// ErrUnknownKey, ErrTokenSignature or ErrTokenExpired. It does not know the
// account: the caller compares Claims.Generation with the account's.
func (k *Keyring) Verify(token string, now time.Time) (Claims, error) {
	malformed := func(why string) (Claims, error) { return Claims{}, fmt.Errorf("%w: %s", ErrTokenMalformed, why) }
	if len(token) > MaxTokenLen {
		return malformed(fmt.Sprintf("longer than %d bytes", MaxTokenLen))
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != TokenPrefix {
		return malformed("not " + TokenPrefix + ".<payload>.<mac>")
	}
	data, err := b64url.DecodeString(parts[1])
	if err != nil {
		return malformed("payload is not unpadded base64url")
	}
	sig, err := b64url.DecodeString(parts[2])
	if err != nil {
		return malformed("mac is not unpadded base64url")
	}
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return malformed("payload is not JSON")
	}
	key, ok := k.keys[p.Key]
	if !ok {
		return Claims{}, fmt.Errorf("%w: key %q", ErrUnknownKey, p.Key)
	}
	if !hmac.Equal(sig, mac(key, parts[0]+"."+parts[1])) {
		return Claims{}, fmt.Errorf("%w: signed with key %q", ErrTokenSignature, p.Key)
	}
	c := Claims{
		Subject: p.Subject, Role: p.Role, Tenant: p.Tenant, Generation: p.Generation,
		IssuedAt: time.UnixMilli(p.IssuedAt), ExpiresAt: time.UnixMilli(p.ExpiresAt), MustChangePassword: p.MustChange,
	}
	if err := checkClaims(c); err != nil {
		return Claims{}, err
	}
	if c.IssuedAt.After(now.Add(MaxClockSkew)) {
		return malformed(fmt.Sprintf("issued at %s, in the future", c.IssuedAt.UTC().Format(time.RFC3339)))
	}
	if !now.Before(c.ExpiresAt) {
		return Claims{}, fmt.Errorf("%w: at %s", ErrTokenExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return c, nil
}
