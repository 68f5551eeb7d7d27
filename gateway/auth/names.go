package auth

import (
	"errors"
	"fmt"
)

// ErrInvalidName: a name or tenant that breaks the naming rule.
var ErrInvalidName = errors.New("auth: invalid name")

// MaxNameLen is the longest account name, tenant or secret id.
const MaxNameLen = 64

// ValidName reports whether s is a valid account name (also the rule for
// tenants, secret ids and key ids): 1..64 characters of [a-z0-9._-], the
// first a letter or a digit.
func ValidName(s string) bool { return CheckName("name", s) == nil }

// ValidTenant reports whether s is a valid tenant: empty (no tenant) or a
// valid name.
func ValidTenant(s string) bool { return s == "" || ValidName(s) }

// CheckName is ValidName with an error, wrapping ErrInvalidName, that names
// what (e.g. "account name") and the broken rule.
func CheckName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidName, what)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %s has %d characters, at most %d", ErrInvalidName, what, len(s), MaxNameLen)
	case !isLowerAlnum(s[0]):
		return fmt.Errorf("%w: %s %q must start with a letter a-z or a digit", ErrInvalidName, what, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%w: %s %q may hold only a-z, 0-9, '.', '_' and '-'", ErrInvalidName, what, s)
		}
	}
	return nil
}

// CheckTenant is ValidTenant with an error wrapping ErrInvalidName.
func CheckTenant(s string) error {
	if s == "" {
		return nil
	}
	return CheckName("tenant", s)
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
