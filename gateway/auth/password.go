package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password errors.
var (
	// ErrMalformedHash: an encoded password hash that is not a PHC argon2id
	// string this package can verify (or whose cost is out of bounds).
	ErrMalformedHash = errors.New("auth: malformed password hash")
	// ErrInvalidParams: hashing parameters out of bounds.
	ErrInvalidParams = errors.New("auth: invalid argon2id parameters")
	// ErrWeakPassword: a password the policy refuses (CheckPassword).
	ErrWeakPassword = errors.New("auth: password refused")
)

// Params are argon2id's cost parameters and sizes.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over the memory
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes of the derived hash
}

// DefaultParams are memory-hard: 64 MiB, 3 passes, 2 lanes (about 0.15 s on
// two loaded cores, see BenchmarkHashPasswordDefault, and 64 MiB per login in
// progress).
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}

// TestParams are cheap, for tests only.
var TestParams = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds that Params and a stored hash must respect; a stored hash over them
// is ErrMalformedHash (so a bad record cannot make a node allocate gigabytes).
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
	minSalt      = 8
	maxSalt      = 64
	minKey       = 16
	maxKey       = 64
)

// Validate reports every parameter out of bounds at once.
func (p Params) Validate() error {
	var bad []string
	if p.Threads < 1 {
		bad = append(bad, "threads must be at least 1")
	}
	if p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemoryKiB {
		bad = append(bad, fmt.Sprintf("memory %d KiB is not within %d..%d (8 KiB per thread)", p.Memory, 8*uint32(p.Threads), maxMemoryKiB))
	}
	if p.Time < 1 || p.Time > maxTime {
		bad = append(bad, fmt.Sprintf("time %d is not within 1..%d", p.Time, maxTime))
	}
	if p.SaltLen < minSalt || p.SaltLen > maxSalt {
		bad = append(bad, fmt.Sprintf("salt length %d is not within %d..%d", p.SaltLen, minSalt, maxSalt))
	}
	if p.KeyLen < minKey || p.KeyLen > maxKey {
		bad = append(bad, fmt.Sprintf("key length %d is not within %d..%d", p.KeyLen, minKey, maxKey))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidParams, strings.Join(bad, "; "))
	}
	return nil
}

var b64 = base64.RawStdEncoding

// HashPassword returns the argon2id hash of pw with a fresh random salt, as
// a PHC string. It does not apply the policy (see CheckPassword).
func HashPassword(pw string, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: read random salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches the encoded hash, comparing in
// constant time. err is non-nil (wrapping ErrMalformedHash) only when the
// encoding cannot be read; a wrong password is (false, nil).
func VerifyPassword(encoded, pw string) (ok bool, err error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// CheckHash reports whether encoded is a hash VerifyPassword can read
// (wrapping ErrMalformedHash if not), and returns its parameters. Callers use
// it to validate a stored hash, and to see that a hash was made with weaker
// parameters than the current ones and should be renewed at the next login.
func CheckHash(encoded string) (Params, error) {
	p, _, _, err := decodeHash(encoded)
	return p, err
}

func decodeHash(encoded string) (p Params, salt, key []byte, err error) {
	malformed := func(why string) error { return fmt.Errorf("%w: %s", ErrMalformedHash, why) }
	if len(encoded) > 512 {
		return p, nil, nil, malformed("longer than 512 bytes")
	}
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" {
		return p, nil, nil, malformed("not a PHC string $argon2id$v=..$m=..,t=..,p=..$salt$hash")
	}
	if parts[1] != "argon2id" {
		return p, nil, nil, malformed(fmt.Sprintf("algorithm %q, want argon2id", parts[1]))
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || parts[2] != fmt.Sprintf("v=%d", v) {
		return p, nil, nil, malformed(fmt.Sprintf("version field %q", parts[2]))
	}
	if v != argon2.Version {
		return p, nil, nil, malformed(fmt.Sprintf("argon2 version %d, want %d", v, argon2.Version))
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Time, threads) {
		return p, nil, nil, malformed(fmt.Sprintf("parameter field %q", parts[3]))
	}
	if threads > 255 {
		return p, nil, nil, malformed(fmt.Sprintf("%d lanes", threads))
	}
	p.Threads = uint8(threads)
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return p, nil, nil, malformed("salt is not unpadded base64")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil {
		return p, nil, nil, malformed("hash is not unpadded base64")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.Validate(); err != nil {
		return p, nil, nil, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	return p, salt, key, nil
}

// Password policy.
const (
	MinPasswordChars = 12  // characters (runes)
	MaxPasswordBytes = 256 // bytes
	// MinUsernameInPassword: a username shorter than this is not looked
	// for in the password (a one-letter name would forbid that letter).
	MinUsernameInPassword = 3
)

// CheckPassword applies the policy for a new password of account username:
// valid UTF-8 without control characters, at least MinPasswordChars
// characters, at most MaxPasswordBytes bytes, not containing the username
// (case-insensitively; names shorter than MinUsernameInPassword are not
// looked for), and characters of at least two classes (lower-case letters,
// upper-case letters, digits, others). The error wraps ErrWeakPassword and
// names the rule.
func CheckPassword(pw, username string) error {
	weak := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrWeakPassword, fmt.Sprintf(format, args...))
	}
	switch {
	case !utf8.ValidString(pw):
		return weak("it is not valid UTF-8")
	case strings.ContainsFunc(pw, unicode.IsControl):
		return weak("it contains a control character")
	case len(pw) > MaxPasswordBytes:
		return weak("it has %d bytes, at most %d are allowed", len(pw), MaxPasswordBytes)
	case utf8.RuneCountInString(pw) < MinPasswordChars:
		return weak("it has %d characters, at least %d are required", utf8.RuneCountInString(pw), MinPasswordChars)
	case len(username) >= MinUsernameInPassword && strings.Contains(strings.ToLower(pw), strings.ToLower(username)):
		return weak("it contains the user name")
	}
	var lower, upper, digit, other bool
	for _, r := range pw {
		switch {
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			classes++
		}
	}
	if classes < 2 {
		return weak("all its characters are of one class; mix at least two of lower-case, upper-case, digits and other characters")
	}
	return nil
}
