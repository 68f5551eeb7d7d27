package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
)

// asRole creates an administrator with role (and tenant) and returns its
// logged-in context.
func (g *gw) asRole(super context.Context, name, role, tenant string) context.Context {
	t := g.t
	t.Helper()
	ctx := ctxT(t)
	acc := adminpb.NewAccountsClient(g.conn)
	auth := adminpb.NewAuthClient(g.conn)
	res, err := acc.CreateAccount(super, &adminpb.CreateAccountRequest{Name: name, Kind: "admin", Role: role, Tenant: tenant})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	l, err := auth.Login(ctx, &adminpb.LoginRequest{Name: name, Password: res.Credential})
	if err != nil {
		t.Fatal(err)
	}
	l, err = auth.ChangePassword(bearer(ctx, l.Token), &adminpb.ChangePasswordRequest{OldPassword: res.Credential, NewPassword: "Another-long-Passw0rd!"})
	if err != nil {
		t.Fatal(err)
	}
	return bearer(ctx, l.Token)
}

// Every method refuses every role its rule does not list with
// PERMISSION_DENIED, before validation, and writes nothing.
func TestEveryMethodRefusesRolesItsRuleDoesNotList(t *testing.T) {
	g := startGateway(t, nil)
	super := bearer(ctxT(t), g.login())
	principals := map[sbauth.Role]context.Context{
		sbauth.TenantAdmin: g.asRole(super, "ta", "tenant_admin", "t1"),
		sbauth.Supporter:   g.asRole(super, "sup", "supporter", "t1"),
		sbauth.Auditor:     g.asRole(super, "aud", "auditor", "t1"),
	}
	before := g.b.log.LastPosition()
	checked := 0
	for m, req := range everyMethod(t) {
		r, ok := rules[m]
		if !ok {
			continue
		}
		for role, ctx := range principals {
			if slices.Contains(r.Roles, role) && !(r.global && role != sbauth.Super) {
				continue
			}
			err := g.conn.Invoke(ctx, m, req, outputOf(t, m))
			wantCode(t, m+" as "+string(role), err, codes.PermissionDenied)
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d refusals checked", checked)
	}
	if after := g.b.log.LastPosition(); after != before {
		t.Fatalf("refused calls wrote %d events", after-before)
	}
}

// Every method answers RESOURCE_EXHAUSTED once the caller's bucket is
// empty, even before authentication.
func TestEveryMethodIsRateLimited(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.Burst, c.RequestsPerSecond = 1, 0.0001 })
	ctx := ctxT(t)
	_ = g.conn.Invoke(ctx, methodWhoAmI, &adminpb.WhoAmIRequest{}, &adminpb.Principal{}) // empties the bucket
	for m, req := range everyMethod(t) {
		err := g.conn.Invoke(ctx, m, req, outputOf(t, m))
		wantCode(t, m, err, codes.ResourceExhausted)
	}
	srv := httptest.NewServer(g.s.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// The REST caller is another address bucket (the HTTP client's), so
	// exhaust it first.
	for i := 0; i < 3 && res.StatusCode != http.StatusTooManyRequests; i++ {
		res, _ = http.Get(srv.URL + "/v1/cluster")
		res.Body.Close()
	}
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("REST over the limit: %d", res.StatusCode)
	}
}

// Every REST route of the OpenAPI document exists and refuses a request
// without credentials with 401 (Login: 400 for an empty body).
func TestEveryRESTRouteNeedsCredentials(t *testing.T) {
	g := startGateway(t, nil)
	srv := httptest.NewServer(g.s.Handler())
	defer srv.Close()
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	b, err := os.ReadFile("adminpb/admin.swagger.json")
	if err != nil || json.Unmarshal(b, &doc) != nil {
		t.Fatalf("openapi: %v", err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	n := 0
	for path, methods := range doc.Paths {
		for method := range methods {
			u := param.ReplaceAllStringFunc(path, func(p string) string {
				if strings.Contains(p, "code") {
					return "123456789"
				}
				return "someone"
			})
			req, _ := http.NewRequest(strings.ToUpper(method), srv.URL+u, strings.NewReader("{}"))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			want := http.StatusUnauthorized
			if path == "/v1/auth/login" {
				want = http.StatusBadRequest
			}
			if res.StatusCode != want {
				t.Errorf("%s %s: %d, want %d", method, u, res.StatusCode, want)
			}
			n++
		}
	}
	if n != len(rules)+1 {
		t.Fatalf("%d REST routes for %d methods", n, len(rules)+1)
	}
}

// A panic in a handler becomes INTERNAL (logged), and the server goes on.
func TestPanicIsRecovered(t *testing.T) {
	g := startGateway(t, nil)
	super := bearer(ctxT(t), g.login())
	g.b.panicCluster.Store(true)
	_, err := adminpb.NewClusterClient(g.conn).GetCluster(super, &adminpb.GetClusterRequest{})
	wantCode(t, "panicking handler", err, codes.Internal)
	g.b.panicCluster.Store(false)
	if _, err := adminpb.NewClusterClient(g.conn).GetCluster(super, &adminpb.GetClusterRequest{}); err != nil {
		t.Fatalf("after the panic: %v", err)
	}
}

// Supporters open relayed sessions with their account: a token from Login
// or an API client's "name:secret"; the session belongs to their tenant.
func TestAuthenticateHost(t *testing.T) {
	g := startGateway(t, nil)
	superTok := g.login()
	super := bearer(ctxT(t), superTok)
	ctx := ctxT(t)
	acc := adminpb.NewAccountsClient(g.conn)
	client, err := acc.CreateAccount(super, &adminpb.CreateAccountRequest{Name: "bot", Kind: "client", Role: "supporter", Tenant: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := acc.CreateAccount(super, &adminpb.CreateAccountRequest{Name: "aud", Kind: "client", Role: "auditor"})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := acc.CreateAccount(super, &adminpb.CreateAccountRequest{Name: "new", Kind: "admin", Role: "supporter", Tenant: "t2"})
	if err != nil {
		t.Fatal(err)
	}
	freshLogin, err := adminpb.NewAuthClient(g.conn).Login(ctx, &adminpb.LoginRequest{Name: "new", Password: fresh.Credential})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, token, user, tenant string
		ok                        bool
	}{
		{"super's login token", superTok, "admin", "", true},
		{"supporter client", "bot:" + client.Credential, "bot", "t1", true},
		{"supporter client, wrong secret", "bot:sbs_nope", "", "", false},
		{"auditor client (may not open)", "aud:" + auditor.Credential, "", "", false},
		{"token of a one-time password", freshLogin.Token, "", "", false},
		{"forged token", superTok[:len(superTok)-3] + "AAA", "", "", false},
		{"garbage", "something", "", "", false},
	} {
		user, tenant, ok := g.s.AuthenticateHost(ctx, c.token)
		if ok != c.ok || user != c.user || tenant != c.tenant {
			t.Errorf("%s: got %q %q %v, want %q %q %v", c.what, user, tenant, ok, c.user, c.tenant, c.ok)
		}
	}
}

// A login for a name without an account verifies a hash made with the
// configured parameters, not cheaper ones: its time does not reveal whether
// the account exists.
func TestUnknownNameCostsARealHash(t *testing.T) {
	g := startGateway(t, func(c *Config) {
		c.PasswordParams = sbauth.Params{Memory: 8 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
	})
	p, err := sbauth.CheckHash(g.s.dummyHash())
	if err != nil || p != g.s.cfg.PasswordParams {
		t.Fatalf("dummy hash parameters %+v (%v), configured %+v", p, err, g.s.cfg.PasswordParams)
	}
}
