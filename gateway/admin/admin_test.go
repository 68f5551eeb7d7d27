package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

// login bootstraps the first administrator, changes its one-time password
// and returns a token of the super administrator.
func (g *gw) login() string {
	t := g.t
	t.Helper()
	ctx := ctxT(t)
	cred := filepath.Join(t.TempDir(), "admin-credential")
	pw, err := g.s.Bootstrap(ctx, cred)
	if err != nil || pw == "" {
		t.Fatalf("bootstrap: %q %v", pw, err)
	}
	auth := adminpb.NewAuthClient(g.conn)
	res, err := auth.Login(ctx, &adminpb.LoginRequest{Name: FirstAdmin, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	res, err = auth.ChangePassword(bearer(ctx, res.Token), &adminpb.ChangePasswordRequest{OldPassword: pw, NewPassword: "correct-Horse-battery-9"})
	if err != nil {
		t.Fatal(err)
	}
	g.admin = "correct-Horse-battery-9"
	return res.Token
}

func TestFirstAdministratorMustChangeItsOneTimePassword(t *testing.T) {
	g := startGateway(t, nil)
	ctx := ctxT(t)
	cred := filepath.Join(t.TempDir(), "admin-credential")
	pw, err := g.s.Bootstrap(ctx, cred)
	if err != nil || len(pw) < 12 {
		t.Fatalf("bootstrap: %q %v", pw, err)
	}
	if again, err := g.s.Bootstrap(ctx, cred); err != nil || again != "" {
		t.Fatalf("second bootstrap must create nothing: %q %v", again, err)
	}
	fi, err := os.Stat(cred)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(cred); string(b) != FirstAdmin+":"+pw+"\n" {
		t.Fatalf("credential file holds %q", b)
	}
	auth := adminpb.NewAuthClient(g.conn)
	_, err = auth.Login(ctx, &adminpb.LoginRequest{Name: FirstAdmin, Password: pw + "x"})
	wantCode(t, "wrong password", err, codes.Unauthenticated)
	_, err = auth.Login(ctx, &adminpb.LoginRequest{Name: "nobody", Password: pw})
	wantCode(t, "unknown name", err, codes.Unauthenticated)
	res, err := auth.Login(ctx, &adminpb.LoginRequest{Name: FirstAdmin, Password: pw})
	if err != nil || !res.Principal.MustChangePassword || res.Principal.Role != "super" {
		t.Fatalf("login: %v %v", res, err)
	}
	first := bearer(ctx, res.Token)
	cl := adminpb.NewClusterClient(g.conn)
	_, err = cl.GetCluster(first, &adminpb.GetClusterRequest{})
	wantCode(t, "before the change", err, codes.FailedPrecondition)
	if me, err := auth.WhoAmI(first, &adminpb.WhoAmIRequest{}); err != nil || me.Name != FirstAdmin {
		t.Fatalf("whoami: %v %v", me, err)
	}
	before := g.b.log.LastPosition()
	_, err = auth.ChangePassword(first, &adminpb.ChangePasswordRequest{OldPassword: pw, NewPassword: "short"})
	wantCode(t, "weak password", err, codes.InvalidArgument)
	if f := fieldViolations(err); len(f) != 1 || f[0] != "new_password" {
		t.Fatalf("field violations: %v (%v)", f, err)
	}
	_, err = auth.ChangePassword(first, &adminpb.ChangePasswordRequest{OldPassword: "wrong-one-123456", NewPassword: "correct-Horse-battery-9"})
	wantCode(t, "wrong old password", err, codes.InvalidArgument)
	if after := g.b.log.LastPosition(); after != before {
		t.Fatalf("refused changes wrote %d events", after-before)
	}
	res2, err := auth.ChangePassword(first, &adminpb.ChangePasswordRequest{OldPassword: pw, NewPassword: "correct-Horse-battery-9"})
	if err != nil || res2.Principal.MustChangePassword {
		t.Fatalf("change: %v %v", res2, err)
	}
	_, err = auth.WhoAmI(first, &adminpb.WhoAmIRequest{})
	wantCode(t, "old token after the change", err, codes.Unauthenticated)
	view, err := cl.GetCluster(bearer(ctx, res2.Token), &adminpb.GetClusterRequest{})
	if err != nil || len(view.Members) != 1 || len(view.Projections) != 3 {
		t.Fatalf("cluster: %v %v", view, err)
	}
	_, err = auth.Login(ctx, &adminpb.LoginRequest{Name: FirstAdmin, Password: pw})
	wantCode(t, "one-time password after the change", err, codes.Unauthenticated)
	// The change is in the audit log, by the administrator.
	au, err := adminpb.NewAuditClient(g.conn).SearchAudit(bearer(ctx, res2.Token), &adminpb.SearchAuditRequest{Stream: "account/admin", Details: true, Consistent: true})
	if err != nil || len(au.Entries) != 2 {
		t.Fatalf("audit: %v %v", au, err)
	}
	if e := au.Entries[0]; e.Actor != "user:admin" || !strings.HasSuffix(e.Type, "PasswordChanged") || strings.Contains(e.DetailsJson, "argon2") {
		t.Fatalf("audit entry: %+v", e)
	}
	if e := au.Entries[1]; e.Actor != "system" || !strings.HasSuffix(e.Type, "Created") {
		t.Fatalf("audit entry: %+v", e)
	}
}

func fieldViolations(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, f := range br.GetFieldViolations() {
				out = append(out, f.GetField())
			}
		}
	}
	return out
}

// everyMethod returns the full name and an empty request of every method of
// the admin API.
func everyMethod(t *testing.T) map[string]proto.Message {
	fd, err := protoregistry.GlobalFiles.FindFileByPath("admin.proto")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]proto.Message{}
	svcs := fd.Services()
	for i := 0; i < svcs.Len(); i++ {
		ms := svcs.Get(i).Methods()
		for j := 0; j < ms.Len(); j++ {
			m := ms.Get(j)
			mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
			if err != nil {
				t.Fatal(err)
			}
			out["/"+string(svcs.Get(i).FullName())+"/"+string(m.Name())] = mt.New().Interface()
		}
	}
	return out
}

func outputOf(t *testing.T, method string) proto.Message {
	fd, _ := protoregistry.GlobalFiles.FindFileByPath("admin.proto")
	parts := strings.Split(strings.TrimPrefix(method, "/"), "/")
	svc := fd.Services().ByName(protoreflect.FullName(parts[0]).Name())
	mt, err := protoregistry.GlobalTypes.FindMessageByName(svc.Methods().ByName(protoreflect.Name(parts[1])).Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}

func TestEveryMethodRefusesMissingBadAndInvalidCredentialsAndChangesNothing(t *testing.T) {
	g := startGateway(t, nil)
	token := g.login()
	ctx := ctxT(t)
	methods := everyMethod(t)
	if len(methods) != len(rules)+1 {
		t.Fatalf("%d methods but %d rules (+ Login): every method needs a rule", len(methods), len(rules))
	}
	before := g.b.log.LastPosition()
	for m, req := range methods {
		if m == methodLogin {
			continue
		}
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{
			{"no credentials", ctx},
			{"garbage token", bearer(ctx, "sbt1.AAAA.BBBB")},
			{"forged token", bearer(ctx, token[:len(token)-4]+"AAAA")},
			{"bad basic", metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("admin:"+g.admin)))},
		} {
			err := g.conn.Invoke(c.ctx, m, req, outputOf(t, m))
			wantCode(t, m+" with "+c.name, err, codes.Unauthenticated)
		}
		// Invalid arguments: the empty request, for methods with a required
		// field, names the field.
		err := g.conn.Invoke(bearer(ctx, token), m, req, outputOf(t, m))
		if v, ok := req.(validator); ok && len(v.Violations()) > 0 {
			wantCode(t, m+" empty", err, codes.InvalidArgument)
			if len(fieldViolations(err)) == 0 {
				t.Fatalf("%s: no field violations in %v", m, err)
			}
		}
	}
	if after := g.b.log.LastPosition(); after != before {
		t.Fatalf("refused calls wrote %d events", after-before)
	}
}

func TestRolesAndTenants(t *testing.T) {
	g := startGateway(t, nil)
	super := bearer(ctxT(t), g.login())
	ctx := ctxT(t)
	acc := adminpb.NewAccountsClient(g.conn)
	auth := adminpb.NewAuthClient(g.conn)
	t1admin := g.asRole(super, "t1admin", "tenant_admin", "t1")
	auditor := g.asRole(super, "auditor", "auditor", "")
	t1auditor := g.asRole(t1admin, "t1auditor", "auditor", "t1")
	cl, err := acc.CreateAccount(super, &adminpb.CreateAccountRequest{Name: "robot", Kind: "client", Role: "auditor"})
	if err != nil {
		t.Fatal(err)
	}
	basic := func(secret string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("robot:"+secret)))
	}
	robot := basic(cl.Credential)
	cluster := adminpb.NewClusterClient(g.conn)
	audit := adminpb.NewAuditClient(g.conn)

	before := g.b.log.LastPosition()
	for _, c := range []struct {
		what string
		err  error
		code codes.Code
	}{
		{"tenant admin creates in another tenant", func() error {
			_, err := acc.CreateAccount(t1admin, &adminpb.CreateAccountRequest{Name: "x", Kind: "admin", Role: "supporter", Tenant: "t2"})
			return err
		}(), codes.PermissionDenied},
		{"tenant admin creates a super", func() error {
			_, err := acc.CreateAccount(t1admin, &adminpb.CreateAccountRequest{Name: "x", Kind: "admin", Role: "super"})
			return err
		}(), codes.PermissionDenied},
		{"tenant admin reads the cluster", func() error { _, err := cluster.GetCluster(t1admin, &adminpb.GetClusterRequest{}); return err }(), codes.PermissionDenied},
		{"tenant auditor reads the audit log", func() error { _, err := audit.SearchAudit(t1auditor, &adminpb.SearchAuditRequest{}); return err }(), codes.PermissionDenied},
		{"auditor creates", func() error {
			_, err := acc.CreateAccount(auditor, &adminpb.CreateAccountRequest{Name: "x", Kind: "admin", Role: "auditor"})
			return err
		}(), codes.PermissionDenied},
		{"auditor rebuilds", func() error {
			_, err := cluster.RebuildProjection(auditor, &adminpb.RebuildProjectionRequest{Name: "audit"})
			return err
		}(), codes.PermissionDenied},
		{"tenant admin disables a global auditor", func() error {
			_, err := acc.DisableAccount(t1admin, &adminpb.DisableAccountRequest{Name: "auditor"})
			return err
		}(), codes.NotFound},
		{"super disables itself", func() error {
			_, err := acc.DisableAccount(super, &adminpb.DisableAccountRequest{Name: "admin"})
			return err
		}(), codes.FailedPrecondition},
		{"client with a wrong secret", func() error { _, err := auth.WhoAmI(basic("sbs_wrong"), &adminpb.WhoAmIRequest{}); return err }(), codes.Unauthenticated},
		{"client changes a password", func() error {
			_, err := auth.ChangePassword(robot, &adminpb.ChangePasswordRequest{OldPassword: "a", NewPassword: "b"})
			return err
		}(), codes.FailedPrecondition},
		{"create an existing name", func() error {
			_, err := acc.CreateAccount(super, &adminpb.CreateAccountRequest{Name: "auditor", Kind: "admin", Role: "auditor"})
			return err
		}(), codes.AlreadyExists},
	} {
		wantCode(t, c.what, c.err, c.code)
	}
	if after := g.b.log.LastPosition(); after != before {
		t.Fatalf("refused calls wrote %d events", after-before)
	}

	// What each may do.
	if _, err := audit.SearchAudit(auditor, &adminpb.SearchAuditRequest{}); err != nil {
		t.Fatalf("global auditor reads the audit log: %v", err)
	}
	if _, err := cluster.GetCluster(robot, &adminpb.GetClusterRequest{}); err != nil {
		t.Fatalf("auditor client reads the cluster: %v", err)
	}
	list, err := acc.ListAccounts(t1admin, &adminpb.ListAccountsRequest{})
	if err != nil || len(list.Accounts) != 2 {
		t.Fatalf("tenant admin lists its tenant: %v %v", list, err)
	}
	all, err := acc.ListAccounts(super, &adminpb.ListAccountsRequest{})
	if err != nil || len(all.Accounts) != 5 {
		t.Fatalf("super lists all: %d %v", len(all.GetAccounts()), err)
	}
	if _, err := acc.DisableAccount(t1admin, &adminpb.DisableAccountRequest{Name: "t1auditor", Reason: "left"}); err != nil {
		t.Fatal(err)
	}
	_, err = audit.SearchAudit(t1auditor, &adminpb.SearchAuditRequest{})
	wantCode(t, "disabled account's token", err, codes.Unauthenticated)

	// Secret rotation with an overlap, then revocation.
	rot, err := acc.RotateSecret(super, &adminpb.RotateSecretRequest{Name: "robot", OverlapS: 3600})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []context.Context{robot, basic(rot.Credential)} {
		if _, err := auth.WhoAmI(c, &adminpb.WhoAmIRequest{}); err != nil {
			t.Fatalf("during the overlap both secrets work: %v", err)
		}
	}
	if _, err := acc.RevokeSecret(super, &adminpb.RevokeSecretRequest{Name: "robot", SecretId: cl.SecretId}); err != nil {
		t.Fatal(err)
	}
	_, err = auth.WhoAmI(robot, &adminpb.WhoAmIRequest{})
	wantCode(t, "revoked secret", err, codes.Unauthenticated)
	if _, err := auth.WhoAmI(basic(rot.Credential), &adminpb.WhoAmIRequest{}); err != nil {
		t.Fatalf("new secret: %v", err)
	}
}

func TestRateLimits(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.Burst, c.RequestsPerSecond, c.LoginBurst, c.LoginsPerMinute = 6, 0.001, 2, 0.001 })
	ctx := ctxT(t)
	auth := adminpb.NewAuthClient(g.conn)
	for i := 0; i < 2; i++ {
		_, err := auth.Login(ctx, &adminpb.LoginRequest{Name: "nobody", Password: "whatever-it-is"})
		wantCode(t, "login", err, codes.Unauthenticated)
	}
	_, err := auth.Login(ctx, &adminpb.LoginRequest{Name: "nobody", Password: "whatever-it-is"})
	wantCode(t, "third login", err, codes.ResourceExhausted)
	for i := 0; i < 3; i++ {
		_, err := auth.WhoAmI(ctx, &adminpb.WhoAmIRequest{})
		wantCode(t, "call", err, codes.Unauthenticated)
	}
	_, err = auth.WhoAmI(ctx, &adminpb.WhoAmIRequest{})
	wantCode(t, "call over the limit", err, codes.ResourceExhausted)
}

func TestSessionsThroughTheAPIAndREST(t *testing.T) {
	g := startGateway(t, nil)
	token := g.login()
	ctx := ctxT(t)
	// Two sessions opened by supporter "sam" (as its grain would write them).
	for i, code := range []string{"123456789", "223456789"} {
		at := time.Now().Add(time.Duration(i-10) * time.Minute).UnixMilli()
		var evs []events.Event
		for _, m := range []proto.Message{
			&sessionpb.Opened{Code: code, HostUser: "sam", Limits: &sessionpb.Limits{MaxParticipants: 10}, AtUnixMs: at},
			&sessionpb.Joined{Participant: "p1", Role: "host", Name: "Sam", Addr: "10.1.1.1:1", User: "sam", AtUnixMs: at},
			&sessionpb.Joined{Participant: "p2", Role: "guest", Name: "Gina", Addr: "10.2.2.2:2", AtUnixMs: at},
		} {
			data, _ := proto.Marshal(m)
			evs = append(evs, events.Event{Type: string(proto.MessageName(m)), Data: data})
		}
		if _, err := g.b.log.Append(ctx, events.AppendArgs("session/"+code, events.NoStream(), evs...)); err != nil {
			t.Fatal(err)
		}
	}
	sc := adminpb.NewSessionsClient(g.conn)
	live, err := sc.ListLiveSessions(bearer(ctx, token), &adminpb.ListLiveSessionsRequest{Consistent: true})
	if err != nil || len(live.Sessions) != 2 || live.Sessions[0].Code != "223456789" {
		t.Fatalf("live: %v %v", live, err)
	}
	ended, err := sc.EndSession(bearer(ctx, token), &adminpb.EndSessionRequest{Code: "123456789", Reason: "maintenance"})
	if err != nil || ended.Live || ended.EndedBy != "admin:admin" || ended.EndReason != "maintenance" {
		t.Fatalf("end: %v %v", ended, err)
	}
	_, err = sc.EndSession(bearer(ctx, token), &adminpb.EndSessionRequest{Code: "123456789"})
	wantCode(t, "end twice", err, codes.FailedPrecondition)
	_, err = sc.GetSession(bearer(ctx, token), &adminpb.GetSessionRequest{Code: "999999999"})
	wantCode(t, "unknown session", err, codes.NotFound)
	hist, err := sc.SearchSessionHistory(bearer(ctx, token), &adminpb.SearchSessionHistoryRequest{User: "sam"})
	if err != nil || hist.Total != 2 || hist.Live != 1 || len(hist.Sessions) != 2 {
		t.Fatalf("history: %v %v", hist, err)
	}
	au, err := adminpb.NewAuditClient(g.conn).SearchAudit(bearer(ctx, token), &adminpb.SearchAuditRequest{Actor: "user:admin", Type: "switchboard.session.v1.Ended"})
	if err != nil || len(au.Entries) != 1 || au.Entries[0].Stream != "session/123456789" {
		t.Fatalf("audit of the end: %v %v", au, err)
	}

	// The same API as JSON over HTTP.
	srv := httptest.NewServer(g.s.Handler())
	defer srv.Close()
	do := func(method, path, tok string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}
	code, out := do("POST", "/v1/auth/login", "", map[string]string{"name": "admin", "password": g.admin})
	if code != 200 || out["token"] == nil {
		t.Fatalf("REST login: %d %v", code, out)
	}
	tok := out["token"].(string)
	if code, out = do("GET", "/v1/sessions/223456789", tok, nil); code != 200 || out["hostUser"] != "sam" {
		t.Fatalf("REST get session: %d %v", code, out)
	}
	if code, _ = do("GET", "/v1/cluster", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("REST without token: %d", code)
	}
	if code, out = do("GET", "/v1/history?code=12", tok, nil); code != http.StatusBadRequest || !strings.Contains(toJSON(out["details"]), "fieldViolations") {
		t.Fatalf("REST invalid: %d %v", code, out)
	}
	if code, out = do("POST", "/v1/accounts", tok, map[string]string{"name": "Bad Name", "kind": "robot", "role": "god"}); code != http.StatusBadRequest ||
		!strings.Contains(toJSON(out), `"field":"name"`) || !strings.Contains(toJSON(out), `"field":"kind"`) || !strings.Contains(toJSON(out), `"field":"role"`) {
		t.Fatalf("REST invalid account: %d %v", code, toJSON(out))
	}
	if code, out = do("GET", "/v1/openapi.json", "", nil); code != 200 || out["swagger"] != "2.0" {
		t.Fatalf("openapi: %d", code)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
