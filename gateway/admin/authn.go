package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
)

const (
	methodLogin          = "/switchboard.admin.v1.Auth/Login"
	methodChangePassword = "/switchboard.admin.v1.Auth/ChangePassword"
	methodWhoAmI         = "/switchboard.admin.v1.Auth/WhoAmI"
)

// needsAuth: every method but Login authenticates.
func needsAuth(_ context.Context, c interceptors.CallMeta) bool { return c.FullMethod() != methodLogin }

type principalKey struct{}

// caller is an authenticated principal and its account row.
type caller struct {
	sbauth.Principal
	Account            *accountpb.Account
	MustChangePassword bool
}

func callerFrom(ctx context.Context) (*caller, bool) {
	c, ok := ctx.Value(principalKey{}).(*caller)
	return c, ok
}

// authenticate is the go-grpc-middleware AuthFunc: a bearer token from
// Login or an API client's Basic credentials, checked against the accounts
// projection.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	if tok, err := grpcauth.AuthFromMD(ctx, "bearer"); err == nil {
		c, err := s.checkToken(ctx, tok)
		if err != nil {
			s.metrics.authFailures.WithLabelValues("token").Inc()
			return nil, err
		}
		return context.WithValue(ctx, principalKey{}, c), nil
	}
	if basic, err := grpcauth.AuthFromMD(ctx, "basic"); err == nil {
		c, err := s.checkClient(basic)
		if err != nil {
			s.metrics.authFailures.WithLabelValues("client").Inc()
			return nil, err
		}
		return context.WithValue(ctx, principalKey{}, c), nil
	}
	s.metrics.authFailures.WithLabelValues("missing").Inc()
	return nil, status.Error(codes.Unauthenticated, `missing credentials: send "authorization: Bearer <token from Auth.Login>" or "authorization: Basic base64(<client>:<secret>)"`)
}

var errBadCredentials = status.Error(codes.Unauthenticated, "invalid or expired credentials")

func (s *Server) checkToken(ctx context.Context, tok string) (*caller, error) {
	keys, err := s.b.Keys(ctx, false)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "token keys unavailable: %v", err)
	}
	claims, err := keys.Verify(tok, s.now())
	if errors.Is(err, sbauth.ErrUnknownKey) {
		// Signed by a key this node has not loaded yet.
		if keys, err = s.b.Keys(ctx, true); err == nil {
			claims, err = keys.Verify(tok, s.now())
		}
	}
	if err != nil {
		if errors.Is(err, sbauth.ErrTokenExpired) {
			return nil, status.Error(codes.Unauthenticated, "token expired: log in again")
		}
		return nil, errBadCredentials
	}
	a, found, err := s.b.Views().Account(claims.Subject)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "accounts view: %v", err)
	}
	if !found || a.GetDeleted() || a.GetDisabled() || a.GetKind() != sbauth.KindAdmin || a.GetGeneration() != claims.Generation {
		return nil, errBadCredentials
	}
	return &caller{Principal: sbauth.Principal{Subject: a.GetName(), Kind: sbauth.KindAdmin, Role: sbauth.Role(a.GetRole()), Tenant: a.GetTenant()},
		Account: a, MustChangePassword: a.GetMustChangePassword()}, nil
}

func (s *Server) checkClient(basic string) (*caller, error) {
	raw, err := base64.StdEncoding.DecodeString(basic)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "basic credentials are not base64(<client>:<secret>)")
	}
	name, secret, ok := strings.Cut(string(raw), ":")
	if !ok || !sbauth.ValidName(name) {
		return nil, status.Error(codes.Unauthenticated, "basic credentials are not base64(<client>:<secret>)")
	}
	return s.checkClientSecret(name, secret)
}

func (s *Server) checkClientSecret(name, secret string) (*caller, error) {
	a, found, err := s.b.Views().Account(name)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "accounts view: %v", err)
	}
	if !found {
		return nil, errBadCredentials
	}
	if _, ok := account.MatchSecret(a, secret, s.now()); !ok {
		return nil, errBadCredentials
	}
	return &caller{Principal: sbauth.Principal{Subject: name, Kind: sbauth.KindClient, Role: sbauth.Role(a.GetRole()), Tenant: a.GetTenant()},
		Account: a}, nil
}

// authorize applies the method's rule (rules.go) once the caller is known.
// Methods whose target tenant depends on the object check again inside.
func (s *Server) authorize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod == methodLogin {
		return handler(ctx, req)
	}
	c, ok := callerFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "not authenticated")
	}
	if c.MustChangePassword && info.FullMethod != methodChangePassword && info.FullMethod != methodWhoAmI {
		return nil, status.Error(codes.FailedPrecondition, "password change required: call Auth.ChangePassword (POST /v1/auth/password) first")
	}
	r, ok := rules[info.FullMethod]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s has no authorization rule", info.FullMethod)
	}
	if err := sbauth.Authorize(c.Principal, r.Rule, r.tenant(c)); err != nil {
		s.metrics.denied.WithLabelValues(info.FullMethod).Inc()
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return handler(ctx, req)
}

// allowTenant checks a caller against an object's tenant (sessions,
// accounts) for a tenant-scoped rule.
func allowTenant(c *caller, roles []sbauth.Role, tenant string) error {
	if err := sbauth.Authorize(c.Principal, sbauth.Rule{Roles: roles, TenantScoped: true}, tenant); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// hostRoles may open relayed sessions.
var hostRoles = []sbauth.Role{sbauth.Super, sbauth.TenantAdmin, sbauth.Supporter}

// AuthenticateHost implements sessionedge.HostAuthenticator: a supporter
// opens a session with a token from Login ("sbt1.…") or an API client's
// "<name>:<secret>". The account must be live, enabled, past its one-time
// password, and of a role that may open sessions; the session then belongs
// to the account's tenant.
func (s *Server) AuthenticateHost(ctx context.Context, token string) (user, tenant string, ok bool) {
	var c *caller
	var err error
	if strings.HasPrefix(token, sbauth.TokenPrefix+".") {
		c, err = s.checkToken(ctx, token)
	} else if name, secret, found := strings.Cut(token, ":"); found && sbauth.ValidName(name) {
		c, err = s.checkClientSecret(name, secret)
	} else {
		return "", "", false
	}
	if err != nil || c.MustChangePassword || !slices.Contains(hostRoles, c.Role) {
		s.metrics.authFailures.WithLabelValues("session_host").Inc()
		return "", "", false
	}
	return c.Subject, c.Tenant, true
}
