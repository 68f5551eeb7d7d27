package console

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

// fakeAPI is a tiny admin API: one valid token, one live session whose
// host name tries to inject markup, and a record of EndSession calls.
type fakeAPI struct {
	adminpb.UnimplementedAuthServer
	adminpb.UnimplementedSessionsServer
	adminpb.UnimplementedClusterServer
	mu    sync.Mutex
	ended []string
}

const goodToken = "sbt1.good"

func authorized(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 1 && v[0] == "Bearer "+goodToken {
		return nil
	}
	return status.Error(codes.Unauthenticated, "bad token")
}

func (f *fakeAPI) WhoAmI(ctx context.Context, _ *adminpb.WhoAmIRequest) (*adminpb.Principal, error) {
	if err := authorized(ctx); err != nil {
		return nil, err
	}
	return &adminpb.Principal{Name: "admin", Role: "super", Kind: "admin"}, nil
}

func (f *fakeAPI) ListLiveSessions(ctx context.Context, _ *adminpb.ListLiveSessionsRequest) (*adminpb.ListLiveSessionsResponse, error) {
	if err := authorized(ctx); err != nil {
		return nil, err
	}
	return &adminpb.ListLiveSessionsResponse{Sessions: []*adminpb.Session{{Code: "123456789", Live: true, HostName: `<script>alert(1)</script>`, HostUser: "sam"}}}, nil
}

func (f *fakeAPI) EndSession(ctx context.Context, req *adminpb.EndSessionRequest) (*adminpb.Session, error) {
	if err := authorized(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.ended = append(f.ended, req.Code)
	f.mu.Unlock()
	return &adminpb.Session{Code: req.Code}, nil
}

type fakeGateway struct{ conn *grpc.ClientConn }

func (g fakeGateway) Conn() *grpc.ClientConn { return g.conn }

func startConsole(t *testing.T) (*httptest.Server, *fakeAPI) {
	t.Helper()
	api := &fakeAPI{}
	gs := grpc.NewServer()
	adminpb.RegisterAuthServer(gs, api)
	adminpb.RegisterSessionsServer(gs, api)
	adminpb.RegisterClusterServer(gs, api)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := New(Config{Plaintext: true}, fakeGateway{conn}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv, api
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func httpDo(t *testing.T, method, u, origin string, form url.Values, token string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if token != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: token})
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func TestPagesNeedALoginAndEscapeWhatTheyShow(t *testing.T) {
	srv, _ := startConsole(t)
	res, _ := httpDo(t, "GET", srv.URL+"/sessions", "", nil, "")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login?next=%2Fsessions" {
		t.Fatalf("without a login: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = httpDo(t, "GET", srv.URL+"/sessions", "", nil, "sbt1.stale")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login?expired") {
		t.Fatalf("with a stale token: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, body := httpDo(t, "GET", srv.URL+"/sessions", "", nil, goodToken)
	if res.StatusCode != http.StatusOK || strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("sessions page: %d\n%s", res.StatusCode, body)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP: %q", csp)
	}
	for _, want := range []string{`<html lang="en">`, `<caption>`, `scope="col"`, `aria-live="polite"`, `name="csrf" value="` + csrfOf(goodToken) + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("sessions page lacks %q", want)
		}
	}
}

func TestEndSessionNeedsCSRFTokenAndSameOrigin(t *testing.T) {
	srv, api := startConsole(t)
	u := srv.URL + "/sessions/123456789/end"
	good := url.Values{"csrf": {csrfOf(goodToken)}, "reason": {"test"}}
	for _, c := range []struct {
		what   string
		origin string
		form   url.Values
	}{
		{"no CSRF token", srv.URL, url.Values{"reason": {"x"}}},
		{"another login's CSRF token", srv.URL, url.Values{"csrf": {csrfOf("sbt1.other")}}},
		{"a foreign origin", "https://evil.example", good},
		{"an opaque origin", "null", good},
	} {
		if res, _ := httpDo(t, "POST", u, c.origin, c.form, goodToken); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", c.what, res.StatusCode)
		}
	}
	api.mu.Lock()
	if len(api.ended) != 0 {
		t.Fatalf("refused forms ended sessions: %v", api.ended)
	}
	api.mu.Unlock()
	res, _ := httpDo(t, "POST", u, srv.URL, good, goodToken)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/sessions?ended=123456789" {
		t.Fatalf("end: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.ended) != 1 || api.ended[0] != "123456789" {
		t.Fatalf("ended: %v", api.ended)
	}
}

func TestSafeNextStaysOnSite(t *testing.T) {
	for in, want := range map[string]string{"/history?user=a": "/history?user=a", "//evil.example/": "/sessions",
		"https://evil.example": "/sessions", "/\\evil": "/sessions", "": "/sessions"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBarChartIsAccessibleAndEscaped(t *testing.T) {
	svg := string(barChart(`Rate <of> "things"`, "events", []bar{{Label: "<b>", Value: 3}, {Label: "x", Value: 0}}))
	for _, want := range []string{`role="img"`, `aria-label="Rate &lt;of&gt; &#34;things&#34;"`, `<title>&lt;b&gt;: 3 events</title>`} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q:\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "<b>") {
		t.Errorf("label not escaped:\n%s", svg)
	}
	if empty := string(barChart("t", "u", nil)); !strings.Contains(empty, "no data") {
		t.Errorf("empty chart: %s", empty)
	}
}
