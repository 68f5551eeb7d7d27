package admin

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
	"github.com/switchboard-io/switchboard/projections"
)

// Login implements adminpb.AuthServer.
func (s *Server) Login(ctx context.Context, req *adminpb.LoginRequest) (*adminpb.LoginResponse, error) {
	a, found, err := s.b.Views().Account(req.GetName())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "accounts view: %v", err)
	}
	hash := s.dummyHash() // a wrong name costs as much as a wrong password
	usable := found && a.GetKind() == sbauth.KindAdmin && !a.GetDeleted() && !a.GetDisabled()
	if usable {
		hash = a.GetPasswordHash()
	}
	ok, err := s.verifyPassword(ctx, hash, req.GetPassword())
	if err != nil {
		return nil, err
	}
	if !ok || !usable {
		s.metrics.authFailures.WithLabelValues("login").Inc()
		s.log.WarnContext(ctx, "admin login failed", "name", req.GetName(), "client", clientAddr(ctx))
		return nil, status.Error(codes.Unauthenticated, "wrong name or password (or the account is disabled)")
	}
	s.log.InfoContext(ctx, "admin logged in", "name", a.GetName(), "client", clientAddr(ctx))
	return s.issue(ctx, a)
}

// dummyHash is verified for a name without a usable account, with the
// same parameters as real hashes, so that the time a login takes does not
// tell whether an account exists.
func (s *Server) dummyHash() string {
	s.dummyOnce.Do(func() {
		s.dummy, _ = sbauth.HashPassword("switchboard-dummy-password", s.cfg.PasswordParams)
	})
	return s.dummy
}

// issue returns a token for admin account a.
func (s *Server) issue(ctx context.Context, a *accountpb.Account) (*adminpb.LoginResponse, error) {
	keys, err := s.b.Keys(ctx, false)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "token keys unavailable: %v", err)
	}
	now := s.now()
	c := sbauth.Claims{Subject: a.GetName(), Role: sbauth.Role(a.GetRole()), Tenant: a.GetTenant(), Generation: a.GetGeneration(),
		IssuedAt: now, ExpiresAt: now.Add(s.cfg.TokenTTL), MustChangePassword: a.GetMustChangePassword()}
	tok, err := keys.Issue(c)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "issue token: %v", err)
	}
	return &adminpb.LoginResponse{Token: tok, ExpiresAtUnixMs: c.ExpiresAt.UnixMilli(), Principal: principalOf(a)}, nil
}

func principalOf(a *accountpb.Account) *adminpb.Principal {
	return &adminpb.Principal{Name: a.GetName(), Kind: a.GetKind(), Role: a.GetRole(), Tenant: a.GetTenant(),
		MustChangePassword: a.GetMustChangePassword()}
}

// verifyPassword runs the memory-hard check with at most
// MaxConcurrentHashes at once.
func (s *Server) verifyPassword(ctx context.Context, hash, pw string) (bool, error) {
	if err := s.acquireHash(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.hashes }()
	ok, err := sbauth.VerifyPassword(hash, pw)
	if err != nil {
		s.log.ErrorContext(ctx, "stored password hash unreadable", "err", err)
		return false, nil
	}
	return ok, nil
}

func (s *Server) hashPassword(ctx context.Context, pw string) (string, error) {
	if err := s.acquireHash(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.hashes }()
	h, err := sbauth.HashPassword(pw, s.cfg.PasswordParams)
	if err != nil {
		return "", status.Errorf(codes.Internal, "hash password: %v", err)
	}
	return h, nil
}

func (s *Server) acquireHash(ctx context.Context) error {
	select {
	case s.hashes <- struct{}{}:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// ChangePassword implements adminpb.AuthServer.
func (s *Server) ChangePassword(ctx context.Context, req *adminpb.ChangePasswordRequest) (*adminpb.LoginResponse, error) {
	c, _ := callerFrom(ctx)
	if c.Kind != sbauth.KindAdmin {
		return nil, status.Error(codes.FailedPrecondition, "API clients have secrets, not passwords: rotate the secret instead")
	}
	ok, err := s.verifyPassword(ctx, c.Account.GetPasswordHash(), req.GetOldPassword())
	if err != nil {
		return nil, err
	}
	if !ok {
		s.metrics.authFailures.WithLabelValues("login").Inc()
		return nil, invalidField("old_password", "is not the current password")
	}
	if err := sbauth.CheckPassword(req.GetNewPassword(), c.Subject); err != nil {
		return nil, invalidField("new_password", "%s", trimAuthErr(err))
	}
	if req.GetNewPassword() == req.GetOldPassword() {
		return nil, invalidField("new_password", "must differ from the old password")
	}
	hash, err := s.hashPassword(ctx, req.GetNewPassword())
	if err != nil {
		return nil, err
	}
	a, err := s.accountCall(ctx, c.Subject, &accountpb.ChangePassword{NewHash: hash, By: c.Subject, ClearMustChange: true})
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "admin changed password", "name", c.Subject, "client", clientAddr(ctx))
	return s.issue(ctx, a)
}

// WhoAmI implements adminpb.AuthServer.
func (s *Server) WhoAmI(ctx context.Context, _ *adminpb.WhoAmIRequest) (*adminpb.Principal, error) {
	c, _ := callerFrom(ctx)
	return principalOf(c.Account), nil
}

// accountCall sends a command to an account grain and waits until this
// node's accounts view includes its effect (the next request is checked
// against the view).
func (s *Server) accountCall(ctx context.Context, name string, cmd proto.Message) (*accountpb.Account, error) {
	reply, err := s.b.Call(ctx, account.Kind, name, cmd)
	if err != nil {
		return nil, grainError(err)
	}
	a, ok := reply.(*accountpb.Account)
	if !ok {
		return nil, status.Errorf(codes.Internal, "account grain replied %T", reply)
	}
	if err := s.b.Views().Consistent(ctx, projections.AccountsName); err != nil {
		return nil, status.Errorf(codes.Unavailable, "the change is made but this node's view could not catch up: %v", err)
	}
	return a, nil
}

// grainError maps an entity refusal to a gRPC status.
func grainError(err error) error {
	var ee *entity.Error
	if !errors.As(err, &ee) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return status.FromContextError(err).Err()
		}
		return status.Errorf(codes.Unavailable, "%v", err)
	}
	code := codes.Unavailable
	switch ee.Code {
	case entity.CodeRejected:
		code = codes.FailedPrecondition
		switch ee.Reason {
		case account.ReasonExists, account.ReasonSecretExists:
			code = codes.AlreadyExists
		case account.ReasonNotFound, account.ReasonUnknownSecret:
			code = codes.NotFound
		case account.ReasonBadRequest, account.ReasonInvalidRole, account.ReasonWrongKind:
			code = codes.InvalidArgument
		case "unknown_session":
			code = codes.NotFound
		}
	case entity.CodeInvalid, entity.CodeTooLarge:
		code = codes.InvalidArgument
	}
	msg := ee.Message
	if ee.Reason != "" {
		msg = ee.Reason + ": " + msg
	}
	return status.Error(code, msg)
}

func trimAuthErr(err error) string {
	msg := err.Error()
	for _, p := range []string{"auth: weak password: ", "auth: "} {
		if len(msg) > len(p) && msg[:len(p)] == p {
			return msg[len(p):]
		}
	}
	return msg
}
