package bench

import (
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseLogFlagsDefaults(t *testing.T) {
	cfg, err := parseLogFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.clients, []int{64}) || cfg.duration != 10*time.Second || cfg.warmup != 2*time.Second ||
		cfg.eventSize != 256 || cfg.peer != PeerNone || cfg.target != TargetAll || cfg.streams != 0 ||
		cfg.keep != "" || cfg.nodes != 3 || cfg.api != APIStream {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.binary == "" {
		t.Fatal("--binary must default to the running executable")
	}
}

func TestParseLogFlagsValues(t *testing.T) {
	cfg, err := parseLogFlags([]string{
		"--clients", "1, 16,64,256", "--duration", "3s", "--warmup", "0s", "--event-size", "100",
		"--binary", "/bin/true", "--peer", "etcd", "--keep", "/tmp/x", "--streams", "4", "--target", "leader",
		"--api", "unary",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.clients, []int{1, 16, 64, 256}) || cfg.duration != 3*time.Second || cfg.warmup != 0 ||
		cfg.eventSize != 100 || cfg.binary != "/bin/true" || cfg.peer != PeerEtcd || cfg.keep != "/tmp/x" ||
		cfg.streams != 4 || cfg.target != TargetLeader || cfg.api != APIUnary {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	// Single-dash flags work too (package flag).
	cfg, err = parseLogFlags([]string{"-clients=8"})
	if err != nil || !slices.Equal(cfg.clients, []int{8}) {
		t.Fatalf("-clients=8: %v %v", cfg.clients, err)
	}
}

func TestParseLogFlagsErrorsNameTheFlag(t *testing.T) {
	cases := []struct {
		args []string
		want []string // substrings of the error
	}{
		{[]string{"--clients", "0"}, []string{"-clients", `"0" is not a positive integer`}},
		{[]string{"--clients", "1,x"}, []string{"-clients", `"x"`}},
		{[]string{"--clients", "1,,2"}, []string{"-clients", "comma-separated"}},
		{[]string{"--clients", ""}, []string{"-clients"}},
		{[]string{"--clients", "-3"}, []string{"-clients"}},
		{[]string{"--duration", "abc"}, []string{"-duration"}},
		{[]string{"--duration", "0s"}, []string{"--duration", "positive"}},
		{[]string{"--warmup", "-1s"}, []string{"--warmup", "negative"}},
		{[]string{"--event-size", "0"}, []string{"--event-size"}},
		{[]string{"--event-size", "2000000"}, []string{"--event-size"}},
		{[]string{"--event-size", "big"}, []string{"-event-size"}},
		{[]string{"--peer", "consul"}, []string{"--peer", `"consul"`, `"etcd"`}},
		{[]string{"--target", "followers"}, []string{"--target", `"followers"`}},
		{[]string{"--api", "rest"}, []string{"--api", `"rest"`, `"stream"`, `"unary"`}},
		{[]string{"--streams", "-1"}, []string{"--streams"}},
		{[]string{"--request-timeout", "0s"}, []string{"--request-timeout"}},
		{[]string{"--nodes", "0"}, []string{"--nodes"}},
		{[]string{"--no-such-flag"}, []string{"no-such-flag"}},
		{[]string{"64"}, []string{`unexpected argument "64"`}},
		{[]string{"--peer", "etcd", "--etcd-binary", ""}, []string{"--etcd-binary"}},
	}
	for _, c := range cases {
		_, err := parseLogFlags(c.args)
		if err == nil {
			t.Errorf("%q: no error", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not mention %q", c.args, err, w)
			}
		}
	}
}

func TestParseLogFlagsReportsAllProblems(t *testing.T) {
	_, err := parseLogFlags([]string{"--duration", "0s", "--peer", "x", "--target", "y"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"--duration", "--peer", "--target"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

func TestParseLogFlagsHelp(t *testing.T) {
	_, err := parseLogFlags([]string{"-h"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: got %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(err.Error(), "-clients") {
		t.Fatalf("-h: usage does not list the flags: %q", err)
	}
}
