package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestHashPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse 42", TestParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not in PHC form with the parameters", h)
	}
	if ok, err := VerifyPassword(h, "correct horse 42"); !ok || err != nil {
		t.Fatalf("right password: ok=%v err=%v", ok, err)
	}
	if ok, err := VerifyPassword(h, "correct horse 43"); ok || err != nil {
		t.Fatalf("wrong password: ok=%v err=%v, want false, nil", ok, err)
	}
	h2, err := HashPassword("correct horse 42", TestParams)
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	p, err := CheckHash(h)
	if err != nil || p != TestParams {
		t.Fatalf("CheckHash = %+v, %v; want %+v", p, err, TestParams)
	}
}

func TestDefaultParamsAreMemoryHard(t *testing.T) {
	if err := DefaultParams.Validate(); err != nil {
		t.Fatal(err)
	}
	if DefaultParams.Memory < 64*1024 || DefaultParams.Time < 2 {
		t.Fatalf("DefaultParams %+v are too cheap", DefaultParams)
	}
}

func TestHashPasswordRefusesBadParams(t *testing.T) {
	_, err := HashPassword("x", Params{Memory: 4, Time: 0, Threads: 1, SaltLen: 2, KeyLen: 8})
	if !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("err %v, want ErrInvalidParams", err)
	}
	for _, m := range []string{"memory", "time", "salt", "key"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not name %s", err, m)
		}
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	good, err := HashPassword("pw", TestParams)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	for name, enc := range map[string]string{
		"empty":          "",
		"bcrypt":         "$2a$10$abcdefghijklmnopqrstuu",
		"argon2i":        strings.Replace(good, "argon2id", "argon2i", 1),
		"version":        strings.Replace(good, "v=19", "v=16", 1),
		"version text":   strings.Replace(good, "v=19", "v=19x", 1),
		"params":         strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1", 1),
		"params extra":   strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1,p=1,x=2", 1),
		"huge memory":    strings.Replace(good, "m=64", "m=99999999", 1),
		"zero time":      strings.Replace(good, "t=1", "t=0", 1),
		"lanes":          strings.Replace(good, "p=1", "p=300", 1),
		"salt base64":    strings.Join([]string{"", parts[1], parts[2], parts[3], "!!!", parts[5]}, "$"),
		"hash base64":    strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4], "%%"}, "$"),
		"short salt":     strings.Join([]string{"", parts[1], parts[2], parts[3], "YWJj", parts[5]}, "$"),
		"short hash":     strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4], "YWJj"}, "$"),
		"missing field":  strings.Join(parts[:5], "$"),
		"leading text":   "x" + good,
		"too long":       good + strings.Repeat("A", 600),
		"padded base64":  strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4] + "==", parts[5]}, "$"),
		"trailing field": good + "$",
	} {
		t.Run(name, func(t *testing.T) {
			ok, err := VerifyPassword(enc, "pw")
			if ok || !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("VerifyPassword(%q) = %v, %v; want false, ErrMalformedHash", enc, ok, err)
			}
			if _, err := CheckHash(enc); !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("CheckHash: %v", err)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	for _, c := range []struct {
		pw, user string
		rule     string // "" = accepted; else a word the message must hold
	}{
		{"Correct-horse", "alice", ""},
		{"correct horse battery", "alice", ""},      // lower + space
		{"123456789012a", "alice", ""},              // digit + lower
		{"ÄÖÜäöüßéèêàç", "alice", ""},               // upper + lower, non-ASCII
		{"short1A!", "alice", "at least 12"},        // 8 characters
		{"äöüäöüäöüäö1", "alice", ""},               // 12 characters, 23 bytes
		{"äöüäöüäöüä1", "alice", "at least 12"},     // 11 characters, 21 bytes
		{"alllowercaseletters", "bob", "one class"}, // one class
		{"ALLUPPERCASELETTERS", "bob", "one class"},
		{"1234567890123", "bob", "one class"},
		{"!!!!!!!!!!!!!!", "bob", "one class"},
		{"my name is Alice!", "alice", "user name"}, // case-insensitive
		{"my name is al 1234", "al", ""},            // too short a name to look for
		{strings.Repeat("aB", 129), "bob", "at most 256"},
		{"valid but \x00 control", "bob", "control"},
		{"bad utf8 \xff\xfe 12345", "bob", "UTF-8"},
	} {
		err := CheckPassword(c.pw, c.user)
		switch {
		case c.rule == "" && err != nil:
			t.Errorf("CheckPassword(%q, %q) = %v, want accepted", c.pw, c.user, err)
		case c.rule != "" && !errors.Is(err, ErrWeakPassword):
			t.Errorf("CheckPassword(%q, %q) = %v, want ErrWeakPassword (%s)", c.pw, c.user, err, c.rule)
		case c.rule != "" && !strings.Contains(err.Error(), c.rule):
			t.Errorf("CheckPassword(%q, %q) = %q, does not name the rule %q", c.pw, c.user, err, c.rule)
		}
	}
}

// BenchmarkHashPasswordDefault shows what one login costs with DefaultParams.
func BenchmarkHashPasswordDefault(b *testing.B) {
	for b.Loop() {
		if _, err := HashPassword("correct horse 42", DefaultParams); err != nil {
			b.Fatal(err)
		}
	}
}
