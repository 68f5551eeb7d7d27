package conf

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sub struct {
	Timeout time.Duration `conf:"timeout" help:"a timeout"`
}

type cfg struct {
	Name  string   `conf:"name" help:"the name"`
	Port  int      `conf:"port"`
	On    bool     `conf:"on"`
	Peers []string `conf:"peers"`
	Big   uint64   `conf:"big"`
	Sub   sub      `conf:"sub"`
	Skip  string
}

func load(t *testing.T, c *cfg, args []string, env []string) error {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	_, err := Load(c, fs, args, env)
	return err
}

func TestPrecedenceDefaultsFileEnvFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("name = \"file\"\nport = 1\npeers = [\"a\", \"b\"]\n[sub]\ntimeout = \"2s\"\n"), 0o600)
	c := cfg{Name: "default", Port: 9, Big: 5}
	err := load(t, &c, []string{"--config", path, "--port", "3", "--on"}, []string{"SWITCHBOARD_PORT=2", "SWITCHBOARD_SUB_TIMEOUT=5s", "OTHER=1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "file" || c.Port != 3 || !c.On || c.Sub.Timeout != 5*time.Second || strings.Join(c.Peers, ",") != "a,b" || c.Big != 5 {
		t.Fatalf("got %+v", c)
	}
}

func TestEveryBadKeyReportedAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("nmae = \"typo\"\nport = \"eighty\"\n"), 0o600)
	c := cfg{}
	err := load(t, &c, []string{"--config", path, "--sub-timeout", "soon"}, []string{"SWITCHBOARD_BIG=-1", "SWITCHBOARD_NOPE=1"})
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{`unknown key "nmae"`, `port (config file`, `sub.timeout (flag --sub-timeout): "soon" is not a duration`, `big (environment SWITCHBOARD_BIG)`, `SWITCHBOARD_NOPE: not a configuration key`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestBrokenFileNamed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("name = \n"), 0o600)
	err := load(t, &cfg{}, []string{"--config", path}, nil)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err %v does not name the file", err)
	}
	err = load(t, &cfg{}, nil, []string{"SWITCHBOARD_CONFIG=" + filepath.Join(t.TempDir(), "missing.toml")})
	if err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestFieldsNamesFlagsAndEnv(t *testing.T) {
	fs := Fields(&cfg{})
	if len(fs) != 6 {
		t.Fatalf("%d fields, want 6 (untagged skipped)", len(fs))
	}
	last := fs[5]
	if last.Key != "sub.timeout" || last.Flag != "sub-timeout" || last.Env != "SWITCHBOARD_SUB_TIMEOUT" || last.Help != "a timeout" {
		t.Fatalf("field %+v", last)
	}
}

// The clients' variables (an operator's shell may hold a token) do not stop
// a node from starting.
func TestClientVariablesAreNotRefused(t *testing.T) {
	c := cfg{}
	env := []string{"SWITCHBOARD_PORT=2"}
	for _, k := range ClientEnv {
		env = append(env, k+"=x")
	}
	if err := load(t, &c, nil, env); err != nil || c.Port != 2 {
		t.Fatalf("client variables refused: %v (%+v)", err, c)
	}
}
