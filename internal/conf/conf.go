// Package conf loads a configuration struct from defaults, a TOML file,
// SWITCHBOARD_* environment variables and command-line flags, in that order
// of precedence (flags win), and reports every bad key at once.
//
// Keys come from `conf:"name"` struct tags; nested structs give dotted keys
// ("raft.heartbeat_timeout"). Each key has exactly one flag (--raft-heartbeat-timeout)
// and one environment variable (SWITCHBOARD_RAFT_HEARTBEAT_TIMEOUT); `help:"..."`
// tags document them. Supported field types: string, bool, int, int64, uint64,
// float64, time.Duration and []string (comma-separated in flags and env).
package conf

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ClientEnv lists the SWITCHBOARD_* variables the command-line clients read
// (switchboard admin, switchboard session). They are not configuration keys
// of a node, but an operator's shell may have them set when it starts one,
// so Load leaves them alone instead of refusing them as unknown keys.
var ClientEnv = []string{"SWITCHBOARD_ADMIN_ADDR", "SWITCHBOARD_ADMIN_TOKEN", "SWITCHBOARD_ADMIN_SECRET", "SWITCHBOARD_SESSION_TOKEN"}

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "SWITCHBOARD_"

// Field describes one configuration key.
type Field struct {
	Key  string // dotted key, as in the file
	Flag string // flag name without dashes
	Env  string // environment variable
	Help string
	v    reflect.Value
}

// Fields lists the keys of the struct cfg points to, in declaration order.
func Fields(cfg any) []Field {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic("conf: Fields needs a pointer to a struct")
	}
	var out []Field
	walk(rv.Elem(), "", &out)
	return out
}

func walk(v reflect.Value, prefix string, out *[]Field) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := sf.Tag.Get("conf")
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		key := prefix + name
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Duration(0)) {
			walk(fv, key+".", out)
			continue
		}
		*out = append(*out, Field{
			Key:  key,
			Flag: strings.NewReplacer(".", "-", "_", "-").Replace(key),
			Env:  EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key)),
			Help: sf.Tag.Get("help"),
			v:    fv,
		})
	}
}

// Load fills cfg (already holding defaults) from the TOML file named by the
// --config flag or SWITCHBOARD_CONFIG (if any), then the environment, then
// the flags in args. It returns the remaining positional arguments. All bad
// keys are reported together in one error; cfg may be partly filled then.
func Load(cfg any, fs *flag.FlagSet, args []string, environ []string) ([]string, error) {
	fields := Fields(cfg)
	byKey := map[string]*Field{}
	flagVals := map[string]*string{}
	for i := range fields {
		f := &fields[i]
		byKey[f.Key] = f
		s := new(string)
		flagVals[f.Key] = s
		usage := f.Help + " (env " + f.Env + ", key " + f.Key + ")"
		if f.v.Kind() == reflect.Bool {
			fs.Var((*boolStrFlag)(s), f.Flag, usage)
		} else {
			fs.Var((*strFlag)(s), f.Flag, usage)
		}
	}
	configPath := fs.String("config", "", "TOML configuration file (env SWITCHBOARD_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	var errs []string
	path := *configPath
	if path == "" {
		path = env[EnvPrefix+"CONFIG"]
	}
	if path != "" {
		errs = append(errs, loadFile(path, byKey)...)
	}
	known := map[string]bool{EnvPrefix + "CONFIG": true}
	for _, k := range ClientEnv {
		known[k] = true
	}
	for _, f := range fields {
		known[f.Env] = true
		if v, ok := env[f.Env]; ok {
			if err := set(f.v, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s (environment %s): %v", f.Key, f.Env, err))
			}
		}
	}
	for k := range env {
		if !known[k] {
			errs = append(errs, fmt.Sprintf("environment %s: not a configuration key (see --help)", k))
		}
	}
	fs.Visit(func(fl *flag.Flag) {
		for _, f := range fields {
			if f.Flag == fl.Name {
				if err := set(f.v, *flagVals[f.Key]); err != nil {
					errs = append(errs, fmt.Sprintf("%s (flag --%s): %v", f.Key, f.Flag, err))
				}
			}
		}
	})
	if len(errs) > 0 {
		sort.Strings(errs)
		return fs.Args(), errors.New("configuration:\n  " + strings.Join(errs, "\n  "))
	}
	return fs.Args(), nil
}

func loadFile(path string, byKey map[string]*Field) []string {
	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		return []string{fmt.Sprintf("config file %s: %v", path, err)}
	}
	_ = md
	var errs []string
	var visit func(prefix string, m map[string]any)
	visit = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			if sub, ok := v.(map[string]any); ok {
				visit(key+".", sub)
				continue
			}
			f, ok := byKey[key]
			if !ok {
				errs = append(errs, fmt.Sprintf("config file %s: unknown key %q", path, key))
				continue
			}
			if err := setAny(f.v, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s (config file %s): %v", key, path, err))
			}
		}
	}
	visit("", raw)
	return errs
}

func setAny(v reflect.Value, x any) error {
	switch t := x.(type) {
	case string:
		return set(v, t)
	case bool:
		if v.Kind() != reflect.Bool {
			return fmt.Errorf("got a boolean, want %s", kindName(v))
		}
		v.SetBool(t)
		return nil
	case int64:
		return set(v, strconv.FormatInt(t, 10))
	case float64:
		return set(v, strconv.FormatFloat(t, 'g', -1, 64))
	case []any:
		if v.Type() != reflect.TypeOf([]string(nil)) {
			return fmt.Errorf("got a list, want %s", kindName(v))
		}
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("list element %v is not a string", e)
			}
			out = append(out, s)
		}
		v.Set(reflect.ValueOf(out))
		return nil
	}
	return fmt.Errorf("unsupported value %v", x)
}

func kindName(v reflect.Value) string {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		return "a duration like 250ms"
	}
	switch v.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a comma-separated list"
	}
	return "a string"
}

func set(v reflect.Value, s string) error {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not %s", s, kindName(v))
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not %s", s, kindName(v))
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not %s", s, kindName(v))
		}
		v.SetInt(n)
	case reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer", s)
		}
		v.SetUint(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not %s", s, kindName(v))
		}
		v.SetFloat(n)
	case reflect.Slice:
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		v.Set(reflect.ValueOf(out))
	default:
		return fmt.Errorf("unsupported field type %s", v.Type())
	}
	return nil
}

type strFlag string

func (s *strFlag) String() string     { return string(*s) }
func (s *strFlag) Set(v string) error { *s = strFlag(v); return nil }

// boolStrFlag lets a boolean key be given as a bare --flag.
type boolStrFlag string

func (s *boolStrFlag) String() string     { return string(*s) }
func (s *boolStrFlag) Set(v string) error { *s = boolStrFlag(v); return nil }
func (s *boolStrFlag) IsBoolFlag() bool   { return true }
