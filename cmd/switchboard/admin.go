package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

// Exit codes of `switchboard admin` (docs/api.md): scripts can tell what
// went wrong without parsing messages.
const (
	exitOK           = 0
	exitError        = 1 // anything else (connection, TLS, internal)
	exitUsage        = 2
	exitUnauthorized = 3 // not logged in, wrong or expired credentials
	exitDenied       = 4 // role or tenant may not do this
	exitNotFound     = 5
	exitInvalid      = 6 // invalid arguments or not possible in this state
	exitUnavailable  = 7 // cluster unavailable; retry
	exitRateLimited  = 8
	exitConflict     = 9 // already exists
)

// adminCmd maps a CLI command to an API method; args fill the request
// fields named in pos, flags (--field-name) fill any field.
type adminCmd struct {
	name, method, help string
	pos                []string
}

var adminCmds = []adminCmd{
	{"whoami", "Auth/WhoAmI", "show who you are logged in as", nil},
	{"cluster", "Cluster/GetCluster", "members, Raft leader and indexes, projections", nil},
	{"projections list", "Cluster/ListProjections", "projection status on the node", nil},
	{"projections rebuild", "Cluster/RebuildProjection", "rebuild a projection from the log (--wait)", []string{"name"}},
	{"rates", "Cluster/GetRates", "sessions opened and events appended per minute", nil},
	{"projections digests", "Cluster/GetProjectionDigests", "a SHA-256 of each projection's rows and the position it covers (--consistent)", nil},
	{"sessions list", "Sessions/ListLiveSessions", "live sessions", nil},
	{"sessions get", "Sessions/GetSession", "one session", []string{"code"}},
	{"sessions end", "Sessions/EndSession", "end a live session (--reason)", []string{"code"}},
	{"sessions history", "Sessions/SearchSessionHistory", "search the history (--user --addr --code --from --to)", nil},
	{"sessions failover", "Sessions/GetFailoverState", "resume points of live sessions' participants", nil},
	{"audit", "Audit/SearchAudit", "search the audit log (--stream --type --actor --from --to --details)", nil},
	{"accounts list", "Accounts/ListAccounts", "accounts (--tenant --include-deleted)", nil},
	{"accounts get", "Accounts/GetAccount", "one account", []string{"name"}},
	{"accounts create", "Accounts/CreateAccount", "create an administrator or API client (--kind --role --tenant); prints its credential once", []string{"name"}},
	{"accounts set-role", "Accounts/SetRole", "change role and tenant (--role --tenant)", []string{"name"}},
	{"accounts disable", "Accounts/DisableAccount", "stop an account from logging in (--reason)", []string{"name"}},
	{"accounts enable", "Accounts/EnableAccount", "let a disabled account in again", []string{"name"}},
	{"accounts delete", "Accounts/DeleteAccount", "delete an account for good", []string{"name"}},
	{"accounts reset-password", "Accounts/ResetPassword", "give an administrator a new one-time password", []string{"name"}},
	{"accounts rotate-secret", "Accounts/RotateSecret", "add a new secret to an API client (--overlap-s)", []string{"name"}},
	{"accounts revoke-secret", "Accounts/RevokeSecret", "end an API client's secret now", []string{"name", "secret_id"}},
}

const adminUsage = `usage: switchboard admin [connection flags] COMMAND [ARGS] [--field value ...]

Connection flags (before the command):
  --addr HOST:PORT       admin_bind of a node (default 127.0.0.1:7406; env SWITCHBOARD_ADMIN_ADDR)
  --ca-file FILE         PEM certificate(s) to trust (default: DATA_DIR/admin-tls/cert.pem when it exists)
  --data-dir DIR         the node's data_dir, to trust its self-signed certificate (default ./data)
  --fingerprint HEX      trust the certificate with this SHA-256 fingerprint (as printed at start)
  --plaintext            the node serves admin.plaintext (no TLS)
  --token-file FILE      where login stores the token (default ~/.config/switchboard/admin-token;
                         env SWITCHBOARD_ADMIN_TOKEN gives a token directly)
  --client NAME          authenticate as an API client; its secret from env SWITCHBOARD_ADMIN_SECRET
  --output table|json    output format (default table)
  --timeout D            per call (default 30s)

Commands:
  login NAME             log in (password from the terminal or stdin) and store the token
  logout                 forget the stored token
  password               change your password (current and new password from stdin, one per line)
%s
Request fields are flags named after the API fields (docs/api.md), e.g. --user, --from 2026-11-30T10:00:00Z,
--limit 100, --consistent. Exit codes: 0 ok, 2 usage, 3 unauthenticated, 4 permission denied, 5 not found,
6 invalid request, 7 unavailable, 8 rate limited, 9 already exists, 1 other errors.
`

func adminUsageText() string {
	var b strings.Builder
	for _, c := range adminCmds {
		args := ""
		for _, p := range c.pos {
			args += " " + strings.ToUpper(p)
		}
		fmt.Fprintf(&b, "  %-22s %s\n", c.name+args, c.help)
	}
	return fmt.Sprintf(adminUsage, strings.TrimRight(b.String(), "\n"))
}

// adminOptions are the connection flags.
type adminOptions struct {
	addr, caFile, dataDir, fingerprint, tokenFile, client, output string
	plaintext                                                     bool
	timeout                                                       time.Duration
}

// adminCLI runs `switchboard admin ...` and returns the exit code.
func adminCLI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	env := envMap(environ)
	o := adminOptions{addr: "127.0.0.1:7406", dataDir: "./data", output: "table", timeout: 30 * time.Second}
	if v := env["SWITCHBOARD_ADMIN_ADDR"]; v != "" {
		o.addr = v
	}
	if home := env["HOME"]; home != "" {
		o.tokenFile = filepath.Join(home, ".config", "switchboard", "admin-token")
	}
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.addr, "addr", o.addr, "")
	fs.StringVar(&o.caFile, "ca-file", "", "")
	fs.StringVar(&o.dataDir, "data-dir", o.dataDir, "")
	fs.StringVar(&o.fingerprint, "fingerprint", "", "")
	fs.BoolVar(&o.plaintext, "plaintext", false, "")
	fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "")
	fs.StringVar(&o.client, "client", "", "")
	fs.StringVar(&o.output, "output", o.output, "")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, adminUsageText())
			return exitOK
		}
		fmt.Fprintf(stderr, "switchboard admin: %v\n\n%s", err, adminUsageText())
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		fmt.Fprint(stderr, adminUsageText())
		return exitUsage
	}
	if o.output != "table" && o.output != "json" {
		fmt.Fprintf(stderr, "switchboard admin: --output %q is not table or json\n", o.output)
		return exitUsage
	}
	if rest[0] == "logout" {
		if err := os.Remove(o.tokenFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "switchboard admin: %v\n", err)
			return exitError
		}
		return exitOK
	}
	conn, err := adminDial(o)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard admin: %v\n", err)
		return exitError
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	switch rest[0] {
	case "login":
		return adminLogin(ctx, conn, o, rest[1:], stdin, stdout, stderr)
	case "password":
		return adminPassword(ctx, conn, o, env, stdin, stdout, stderr)
	}
	cmd, fields, ok := findAdminCmd(rest)
	if !ok {
		fmt.Fprintf(stderr, "switchboard admin: unknown command %q\n\n%s", strings.Join(rest, " "), adminUsageText())
		return exitUsage
	}
	req, resp, err := adminRequest(cmd, fields)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard admin %s: %v\n", cmd.name, err)
		return exitUsage
	}
	cctx, err := adminAuth(ctx, o, env)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard admin: %v\n", err)
		return exitUnauthorized
	}
	if err := conn.Invoke(cctx, "/switchboard.admin.v1."+cmd.method, req, resp); err != nil {
		return adminFail(stderr, err)
	}
	if err := printMessage(stdout, o.output, resp); err != nil {
		fmt.Fprintf(stderr, "switchboard admin: %v\n", err)
		return exitError
	}
	return exitOK
}

func envMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func findAdminCmd(args []string) (adminCmd, []string, bool) {
	for _, c := range adminCmds {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], true
		}
	}
	return adminCmd{}, nil, false
}

// adminFail prints an API error (with its field violations) and returns
// the exit code of its status.
func adminFail(stderr io.Writer, err error) int {
	st := status.Convert(err)
	fmt.Fprintf(stderr, "switchboard admin: %s: %s\n", strings.ToLower(st.Code().String()), st.Message())
	switch st.Code() {
	case codes.Unauthenticated:
		fmt.Fprintln(stderr, "  (log in with: switchboard admin login NAME)")
		return exitUnauthorized
	case codes.PermissionDenied:
		return exitDenied
	case codes.NotFound:
		return exitNotFound
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return exitInvalid
	case codes.AlreadyExists:
		return exitConflict
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnavailable
	case codes.ResourceExhausted:
		return exitRateLimited
	}
	return exitError
}

// adminRequest builds the request of cmd from positional arguments and
// --field flags, and an empty response.
func adminRequest(cmd adminCmd, args []string) (proto.Message, proto.Message, error) {
	fd, err := protoregistry.GlobalFiles.FindFileByPath("admin.proto")
	if err != nil {
		return nil, nil, err
	}
	svc, method, _ := strings.Cut(cmd.method, "/")
	md := fd.Services().ByName(protoreflect.Name(svc)).Methods().ByName(protoreflect.Name(method))
	reqT, _ := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	respT, _ := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	req := reqT.New()
	fields := req.Descriptor().Fields()
	pos := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			if pos >= len(cmd.pos) {
				return nil, nil, fmt.Errorf("unexpected argument %q", a)
			}
			if err := setField(req, fields.ByName(protoreflect.Name(cmd.pos[pos])), a); err != nil {
				return nil, nil, err
			}
			pos++
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		f := fields.ByName(protoreflect.Name(strings.ReplaceAll(name, "-", "_")))
		if f == nil { // --from for from_unix_ms
			f = fields.ByName(protoreflect.Name(strings.ReplaceAll(name, "-", "_") + "_unix_ms"))
		}
		if f == nil {
			return nil, nil, fmt.Errorf("unknown flag --%s (fields: %s)", name, fieldNames(fields))
		}
		if !hasVal {
			if f.Kind() == protoreflect.BoolKind {
				val = "true"
			} else if i+1 < len(args) {
				i++
				val = args[i]
			} else {
				return nil, nil, fmt.Errorf("--%s needs a value", name)
			}
		}
		if err := setField(req, f, val); err != nil {
			return nil, nil, err
		}
	}
	if pos < len(cmd.pos) {
		return nil, nil, fmt.Errorf("missing %s", strings.ToUpper(cmd.pos[pos]))
	}
	return req.Interface(), respT.New().Interface(), nil
}

func fieldNames(fs protoreflect.FieldDescriptors) string {
	var out []string
	for i := 0; i < fs.Len(); i++ {
		out = append(out, "--"+strings.ReplaceAll(strings.TrimSuffix(string(fs.Get(i).Name()), "_unix_ms"), "_", "-"))
	}
	return strings.Join(out, " ")
}

// setField sets a scalar field from text; *_unix_ms fields also take
// RFC 3339 times or durations ago ("-2h").
func setField(m protoreflect.Message, f protoreflect.FieldDescriptor, v string) error {
	name := "--" + strings.ReplaceAll(string(f.Name()), "_", "-")
	switch f.Kind() {
	case protoreflect.StringKind:
		m.Set(f, protoreflect.ValueOfString(v))
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", name, v)
		}
		m.Set(f, protoreflect.ValueOfBool(b))
	case protoreflect.Uint32Kind:
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", name, v)
		}
		m.Set(f, protoreflect.ValueOfUint32(uint32(n)))
	case protoreflect.Uint64Kind:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", name, v)
		}
		m.Set(f, protoreflect.ValueOfUint64(n))
	case protoreflect.Int64Kind:
		if strings.HasSuffix(string(f.Name()), "_unix_ms") {
			if t, err := time.Parse(time.RFC3339, v); err == nil {
				m.Set(f, protoreflect.ValueOfInt64(t.UnixMilli()))
				return nil
			}
			if d, err := time.ParseDuration(v); err == nil && d < 0 {
				m.Set(f, protoreflect.ValueOfInt64(time.Now().Add(d).UnixMilli()))
				return nil
			}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number, an RFC 3339 time or a negative duration", name, v)
		}
		m.Set(f, protoreflect.ValueOfInt64(n))
	default:
		return fmt.Errorf("%s cannot be set from the command line", name)
	}
	return nil
}

// adminDial connects to the admin endpoint with the TLS trust the flags
// give.
func adminDial(o adminOptions) (*grpc.ClientConn, error) {
	if o.plaintext {
		return grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.fingerprint != "":
		want, err := hex.DecodeString(strings.ReplaceAll(strings.ToLower(o.fingerprint), ":", ""))
		if err != nil || len(want) != sha256.Size {
			return nil, fmt.Errorf("--fingerprint: %q is not a SHA-256 fingerprint", o.fingerprint)
		}
		tc.InsecureSkipVerify = true // replaced by the pin below
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				if sum := sha256.Sum256(raw[0]); string(sum[:]) == string(want) {
					return nil
				}
			}
			return errors.New("the admin certificate does not have the fingerprint given with --fingerprint")
		}
	default:
		file := o.caFile
		if file == "" {
			if f := filepath.Join(o.dataDir, "admin-tls", "cert.pem"); fileExists(f) {
				file = f
			}
		}
		if file != "" {
			pool, err := tlsutil.LoadCAPool(file)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			tc.RootCAs = pool
		}
	}
	return grpc.NewClient(o.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// adminAuth adds the credentials: an API client's, a token from the
// environment, or the stored token.
func adminAuth(ctx context.Context, o adminOptions, env map[string]string) (context.Context, error) {
	if o.client != "" {
		secret := env["SWITCHBOARD_ADMIN_SECRET"]
		if secret == "" {
			return nil, errors.New("--client needs the secret in SWITCHBOARD_ADMIN_SECRET")
		}
		basic := base64.StdEncoding.EncodeToString([]byte(o.client + ":" + secret))
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+basic), nil
	}
	tok := env["SWITCHBOARD_ADMIN_TOKEN"]
	if tok == "" && o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, errors.New("not logged in: run switchboard admin login NAME (or set SWITCHBOARD_ADMIN_TOKEN)")
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("not logged in: run switchboard admin login NAME")
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), nil
}

// readLines reads n lines from r (passwords: never echoed, never flags).
func readLines(r io.Reader, n int) ([]string, error) {
	sc := bufio.NewScanner(r)
	var out []string
	for len(out) < n && sc.Scan() {
		out = append(out, strings.TrimRight(sc.Text(), "\r"))
	}
	if len(out) < n {
		return nil, fmt.Errorf("expected %d line(s) on stdin", n)
	}
	return out, nil
}

func adminLogin(ctx context.Context, conn *grpc.ClientConn, o adminOptions, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: switchboard admin login NAME   (password on stdin)")
		return exitUsage
	}
	fmt.Fprintf(stderr, "password for %s: ", args[0])
	lines, err := readLines(stdin, 1)
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard admin login: %v\n", err)
		return exitUsage
	}
	res, err := adminpb.NewAuthClient(conn).Login(ctx, &adminpb.LoginRequest{Name: args[0], Password: lines[0]})
	if err != nil {
		return adminFail(stderr, err)
	}
	if err := storeToken(o.tokenFile, res.Token); err != nil {
		fmt.Fprintf(stderr, "switchboard admin login: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "logged in as %s (%s) until %s\n", res.Principal.Name, res.Principal.Role, time.UnixMilli(res.ExpiresAtUnixMs).Format(time.RFC3339))
	if res.Principal.MustChangePassword {
		fmt.Fprintln(stdout, "this was a one-time password: change it now with switchboard admin password")
	}
	return exitOK
}

func adminPassword(ctx context.Context, conn *grpc.ClientConn, o adminOptions, env map[string]string, stdin io.Reader, stdout, stderr io.Writer) int {
	cctx, err := adminAuth(ctx, o, env)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard admin: %v\n", err)
		return exitUnauthorized
	}
	fmt.Fprint(stderr, "current password, then new password, one per line: ")
	lines, err := readLines(stdin, 2)
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard admin password: %v\n", err)
		return exitUsage
	}
	res, err := adminpb.NewAuthClient(conn).ChangePassword(cctx, &adminpb.ChangePasswordRequest{OldPassword: lines[0], NewPassword: lines[1]})
	if err != nil {
		return adminFail(stderr, err)
	}
	if err := storeToken(o.tokenFile, res.Token); err != nil {
		fmt.Fprintf(stderr, "switchboard admin password: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, "password changed")
	return exitOK
}

func storeToken(file, token string) error {
	if file == "" {
		return errors.New("no --token-file (and no HOME)")
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// printMessage prints a response as JSON (protojson) or as tables: the
// scalar fields as "name: value" lines, each repeated message field as a
// table of its scalar columns.
func printMessage(w io.Writer, format string, m proto.Message) error {
	if format == "json" {
		b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.IsList() || f.Kind() == protoreflect.MessageKind {
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", f.Name(), scalarText(f, r.Get(f)))
	}
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() != protoreflect.MessageKind {
			continue
		}
		if !f.IsList() {
			if r.Has(f) {
				tw.Flush()
				var buf strings.Builder
				if err := printMessage(&buf, format, r.Get(f).Message().Interface()); err != nil {
					return err
				}
				fmt.Fprintf(w, "%s:\n", f.Name())
				for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
					fmt.Fprintf(w, "  %s\n", line)
				}
			}
			continue
		}
		l := r.Get(f).List()
		cols := scalarColumns(f.Message())
		tw.Flush()
		fmt.Fprintf(w, "\n%s (%d)\n", f.Name(), l.Len())
		t := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		head := make([]string, len(cols))
		for j, c := range cols {
			head[j] = strings.ToUpper(string(c.Name()))
		}
		fmt.Fprintln(t, strings.Join(head, "\t"))
		for j := 0; j < l.Len(); j++ {
			row := l.Get(j).Message()
			vals := make([]string, len(cols))
			for k, c := range cols {
				vals[k] = scalarText(c, row.Get(c))
			}
			fmt.Fprintln(t, strings.Join(vals, "\t"))
		}
		t.Flush()
	}
	return tw.Flush()
}

func scalarColumns(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		f := fs.Get(i)
		if f.Kind() != protoreflect.MessageKind && (!f.IsList() || f.Kind() == protoreflect.StringKind) {
			out = append(out, f)
		}
	}
	return out
}

func scalarText(f protoreflect.FieldDescriptor, v protoreflect.Value) string {
	if f.IsList() {
		l := v.List()
		parts := make([]string, l.Len())
		for i := range parts {
			parts[i] = l.Get(i).String()
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	}
	if f.Kind() == protoreflect.Int64Kind && strings.HasSuffix(string(f.Name()), "_unix_ms") {
		if ms := v.Int(); ms > 0 {
			return time.UnixMilli(ms).UTC().Format(time.RFC3339)
		}
		return "-"
	}
	s := v.String()
	if s == "" {
		return "-"
	}
	return s
}
