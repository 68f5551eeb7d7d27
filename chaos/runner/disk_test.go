package runner

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "1GiB": 1 << 30, "64M": 64 << 20, "1048576": 1 << 20, "4KiB": 4096, " 2G ": 2 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "0", "1.5GiB", "12 parsecs", "5TiB"} {
		if _, err := ParseSize(bad); err == nil || !strings.Contains(err.Error(), "512MiB") {
			t.Errorf("ParseSize(%q): %v, want an error with an example", bad, err)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/tmp/a\040b/c\011`); got != "/tmp/a b/c\t" {
		t.Errorf("got %q", got)
	}
}
