// Package console is the web admin console: server-rendered pages (Go
// html/template, no JavaScript build step) over the admin API. Every page
// calls the API in-process with the logged-in administrator's token, so the
// console can do exactly what that administrator may do through the API,
// with the same authentication, authorization, validation and rate limits.
//
// The pages work without JavaScript; one small hand-written script
// (static/live.js) refreshes the live sessions table from a server-sent
// event stream. Charts are SVG rendered on the server.
//
// Security: the token lives in an HttpOnly, SameSite=Strict cookie (Secure
// unless the console is served over plain HTTP); every form that changes
// something carries a CSRF token derived from the login token, and POSTs
// whose Origin is another site are refused.
package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

//go:embed templates/*.html static/*
var assets embed.FS

// CookieName is the cookie holding the administrator's token.
const CookieName = "sb_token"

// Config tunes the console.
type Config struct {
	// Plaintext: the console is served over plain HTTP (cookies lose Secure).
	Plaintext bool
	// LiveInterval is how often the live sessions stream checks for changes
	// (default 1 s).
	LiveInterval time.Duration
}

// Gateway is what the console needs from the admin gateway.
type Gateway interface {
	Conn() *grpc.ClientConn
}

// Console serves the pages.
type Console struct {
	cfg     Config
	log     *slog.Logger
	tmpl    *template.Template
	auth    adminpb.AuthClient
	cluster adminpb.ClusterClient
	sess    adminpb.SessionsClient
	audit   adminpb.AuditClient
	mux     *http.ServeMux
}

// New builds the console on gw's in-process API connection.
func New(cfg Config, gw Gateway, logger *slog.Logger) (*Console, error) {
	if cfg.LiveInterval <= 0 {
		cfg.LiveInterval = time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	conn := gw.Conn()
	c := &Console{cfg: cfg, log: logger.With("component", "console"), tmpl: t,
		auth: adminpb.NewAuthClient(conn), cluster: adminpb.NewClusterClient(conn), sess: adminpb.NewSessionsClient(conn),
		audit: adminpb.NewAuditClient(conn), mux: http.NewServeMux()}
	c.routes()
	return c, nil
}

// Handler serves the console.
func (c *Console) Handler() http.Handler { return c.mux }

func (c *Console) routes() {
	c.mux.Handle("GET /static/", http.FileServerFS(assets))
	c.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/sessions", http.StatusSeeOther) })
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.loginPost)
	c.mux.HandleFunc("POST /logout", c.logout)
	c.mux.HandleFunc("GET /password", c.page(c.passwordPage))
	c.mux.HandleFunc("POST /password", c.page(c.passwordPost))
	c.mux.HandleFunc("GET /cluster", c.page(c.clusterPage))
	c.mux.HandleFunc("GET /sessions", c.page(c.sessionsPage))
	c.mux.HandleFunc("GET /sessions/live", c.liveStream)
	c.mux.HandleFunc("GET /sessions/{code}", c.page(c.sessionPage))
	c.mux.HandleFunc("POST /sessions/{code}/end", c.page(c.endSession))
	c.mux.HandleFunc("GET /history", c.page(c.historyPage))
	c.mux.HandleFunc("GET /audit", c.page(c.auditPage))
}

// request is one page request of a logged-in administrator.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context // carries the token and client address to the API
	token string
	me    *adminpb.Principal
}

// CSRF returns the form token of this login.
func (q *request) CSRF() string { return csrfOf(q.token) }

func csrfOf(token string) string {
	sum := sha256.Sum256([]byte("switchboard-console-csrf:" + token))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}

// apiContext carries the token and the browser's address to the API.
func apiContext(r *http.Request, token string) context.Context {
	md := metadata.Pairs("x-switchboard-client-addr", r.RemoteAddr)
	if token != "" {
		md.Append("authorization", "Bearer "+token)
	}
	return metadata.NewOutgoingContext(r.Context(), md)
}

// page wraps a handler of a logged-in administrator: no token → the login
// page; a POST from another origin or without the CSRF token → 403; API
// errors → the right page.
func (c *Console) page(h func(q *request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(CookieName)
		if err != nil || ck.Value == "" {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		q := &request{w: w, r: r, token: ck.Value, ctx: apiContext(r, ck.Value)}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(q.CSRF())) != 1 {
				c.render(w, http.StatusForbidden, "error", map[string]any{"Title": "Refused", "Message": "The form was stale or came from another site. Go back, reload and try again."})
				return
			}
		}
		q.me, err = c.auth.WhoAmI(q.ctx, &adminpb.WhoAmIRequest{})
		if err == nil && q.me.MustChangePassword && r.URL.Path != "/password" {
			http.Redirect(w, r, "/password", http.StatusSeeOther)
			return
		}
		if err == nil {
			err = h(q)
		}
		if err != nil {
			c.apiError(q, err)
		}
	}
}

func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// apiError renders an API error as the page a person expects.
func (c *Console) apiError(q *request, err error) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated:
		c.clearCookie(q.w)
		http.Redirect(q.w, q.r, "/login?expired=1", http.StatusSeeOther)
	case codes.FailedPrecondition:
		if strings.Contains(st.Message(), "password change required") {
			http.Redirect(q.w, q.r, "/password", http.StatusSeeOther)
			return
		}
		c.render(q.w, http.StatusConflict, "error", map[string]any{"Title": "Not possible", "Message": st.Message(), "Me": q.me})
	case codes.PermissionDenied:
		c.render(q.w, http.StatusForbidden, "error", map[string]any{"Title": "Not allowed", "Message": st.Message(), "Me": q.me})
	case codes.InvalidArgument:
		c.render(q.w, http.StatusBadRequest, "error", map[string]any{"Title": "Check the form", "Message": st.Message(), "Me": q.me})
	case codes.NotFound:
		c.render(q.w, http.StatusNotFound, "error", map[string]any{"Title": "Not found", "Message": st.Message(), "Me": q.me})
	case codes.ResourceExhausted:
		c.render(q.w, http.StatusTooManyRequests, "error", map[string]any{"Title": "Slow down", "Message": st.Message(), "Me": q.me})
	default:
		c.log.Warn("console page failed", "path", q.r.URL.Path, "err", err)
		c.render(q.w, http.StatusServiceUnavailable, "error", map[string]any{"Title": "Unavailable", "Message": st.Message(), "Me": q.me})
	}
}

func (c *Console) render(w http.ResponseWriter, code int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin") // "no-referrer" would make browsers send Origin: null on our own forms
	w.WriteHeader(code)
	if err := c.tmpl.ExecuteTemplate(w, name, data); err != nil {
		c.log.Error("console template", "template", name, "err", err)
	}
}

func (c *Console) setCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/", Expires: expires, HttpOnly: true,
		Secure: !c.cfg.Plaintext, SameSite: http.SameSiteStrictMode})
}

func (c *Console) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: !c.cfg.Plaintext, SameSite: http.SameSiteStrictMode})
}

// ---- login, logout, password ----

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, http.StatusOK, "login", map[string]any{"Next": safeNext(r.URL.Query().Get("next")), "Expired": r.URL.Query().Get("expired") != ""})
}

func (c *Console) loginPost(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.render(w, http.StatusForbidden, "error", map[string]any{"Title": "Refused", "Message": "The login form came from another site."})
		return
	}
	name, next := r.PostFormValue("name"), safeNext(r.PostFormValue("next"))
	res, err := c.auth.Login(apiContext(r, ""), &adminpb.LoginRequest{Name: name, Password: r.PostFormValue("password")})
	if err != nil {
		code := http.StatusUnauthorized
		if status.Code(err) == codes.ResourceExhausted {
			code = http.StatusTooManyRequests
		}
		c.render(w, code, "login", map[string]any{"Next": next, "Name": name, "Error": status.Convert(err).Message()})
		return
	}
	c.setCookie(w, res.Token, time.UnixMilli(res.ExpiresAtUnixMs))
	if res.Principal.MustChangePassword {
		next = "/password"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps redirects on this site.
func safeNext(n string) string {
	if n == "" || !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.ContainsAny(n, "\\\r\n") {
		return "/sessions"
	}
	return n
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	c.clearCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (c *Console) passwordPage(q *request) error {
	c.render(q.w, http.StatusOK, "password", map[string]any{"Me": q.me, "Q": q})
	return nil
}

func (c *Console) passwordPost(q *request) error {
	if q.r.PostFormValue("new") != q.r.PostFormValue("confirm") {
		c.render(q.w, http.StatusBadRequest, "password", map[string]any{"Me": q.me, "Q": q, "Error": "The new password and its confirmation differ."})
		return nil
	}
	res, err := c.auth.ChangePassword(q.ctx, &adminpb.ChangePasswordRequest{OldPassword: q.r.PostFormValue("old"), NewPassword: q.r.PostFormValue("new")})
	if err != nil {
		st := status.Convert(err)
		if st.Code() == codes.InvalidArgument {
			c.render(q.w, http.StatusBadRequest, "password", map[string]any{"Me": q.me, "Q": q, "Error": st.Message()})
			return nil
		}
		return err
	}
	c.setCookie(q.w, res.Token, time.UnixMilli(res.ExpiresAtUnixMs))
	http.Redirect(q.w, q.r, "/sessions?changed=1", http.StatusSeeOther)
	return nil
}
