package admin

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
	"github.com/switchboard-io/switchboard/projections"
)

func accountOf(a *accountpb.Account) *adminpb.Account {
	out := &adminpb.Account{Name: a.GetName(), Kind: a.GetKind(), Role: a.GetRole(), Tenant: a.GetTenant(), Disabled: a.GetDisabled(),
		DisabledReason: a.GetDisabledReason(), MustChangePassword: a.GetMustChangePassword(), Deleted: a.GetDeleted(),
		CreatedAtUnixMs: a.GetCreatedAtUnixMs(), CreatedBy: a.GetCreatedBy(), UpdatedAtUnixMs: a.GetUpdatedAtUnixMs(), UpdatedBy: a.GetUpdatedBy()}
	for _, x := range a.GetSecrets() {
		out.Secrets = append(out.Secrets, &adminpb.SecretInfo{Id: x.GetId(), AddedAtUnixMs: x.GetAddedAtUnixMs(),
			NotAfterUnixMs: x.GetNotAfterUnixMs(), Revoked: x.GetRevoked(), Active: x.GetActive()})
	}
	return out
}

// target returns an existing account the caller may manage (tenant
// administrators: their tenant's; nobody: itself, for the actions that
// could lock it out).
func (s *Server) target(ctx context.Context, name string, self bool) (*caller, *accountpb.Account, error) {
	c, _ := callerFrom(ctx)
	a, found, err := s.b.Views().Account(name)
	if err != nil {
		return nil, nil, viewError(err)
	}
	if !found || a.GetDeleted() || allowTenant(c, accountReaders, a.GetTenant()) != nil {
		return nil, nil, status.Errorf(codes.NotFound, "no account %q", name)
	}
	if !self && name == c.Subject {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "you may not do this to your own account %q (ask another administrator)", name)
	}
	if err := allowTenant(c, admins, a.GetTenant()); err != nil && ctxWrites(ctx) {
		return nil, nil, err
	}
	return c, a, nil
}

type writesKey struct{}

func ctxWrites(ctx context.Context) bool { return ctx.Value(writesKey{}) != nil }
func writing(ctx context.Context) context.Context {
	return context.WithValue(ctx, writesKey{}, true)
}

// mutate sends cmd to an account the caller may manage.
func (s *Server) mutate(ctx context.Context, name string, self bool, cmd proto.Message) (*adminpb.Account, error) {
	ctx = writing(ctx)
	c, _, err := s.target(ctx, name, self)
	if err != nil {
		return nil, err
	}
	a, err := s.accountCall(ctx, name, cmd)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "account changed", "account", name, "change", proto.MessageName(cmd), "by", c.Subject)
	return accountOf(a), nil
}

// CreateAccount implements adminpb.AccountsServer.
func (s *Server) CreateAccount(ctx context.Context, req *adminpb.CreateAccountRequest) (*adminpb.CreateAccountResponse, error) {
	c, _ := callerFrom(ctx)
	if err := allowTenant(c, admins, req.GetTenant()); err != nil {
		return nil, err
	}
	if c.Role != sbauth.Super && sbauth.Role(req.GetRole()) == sbauth.Super {
		return nil, status.Error(codes.PermissionDenied, "only a super administrator may create super administrators")
	}
	cmd := &accountpb.Create{Kind: req.GetKind(), Role: req.GetRole(), Tenant: req.GetTenant(), By: c.Subject}
	out := &adminpb.CreateAccountResponse{}
	if req.GetKind() == sbauth.KindAdmin {
		pw := sbauth.NewOneTimePassword()
		hash, err := s.hashPassword(ctx, pw)
		if err != nil {
			return nil, err
		}
		cmd.PasswordHash, cmd.MustChangePassword, out.Credential = hash, true, pw
	} else {
		secret, hash := sbauth.NewSecret()
		cmd.SecretId, cmd.SecretHash, out.Credential, out.SecretId = sbauth.NewSecretID(), hash, secret, ""
		out.SecretId = cmd.SecretId
	}
	a, err := s.accountCall(ctx, req.GetName(), cmd)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "account created", "account", req.GetName(), "kind", req.GetKind(), "role", req.GetRole(), "tenant", req.GetTenant(), "by", c.Subject)
	out.Account = accountOf(a)
	return out, nil
}

// ListAccounts implements adminpb.AccountsServer.
func (s *Server) ListAccounts(ctx context.Context, req *adminpb.ListAccountsRequest) (*adminpb.ListAccountsResponse, error) {
	if err := s.consistent(ctx, req.GetConsistent(), projections.AccountsName); err != nil {
		return nil, err
	}
	c, _ := callerFrom(ctx)
	tenant, only := req.GetTenant(), req.GetTenant() != ""
	if !c.Role.AllTenants(c.Tenant) {
		if only && tenant != c.Tenant {
			return nil, status.Errorf(codes.PermissionDenied, "%s of tenant %q may not list tenant %q", c.Role, c.Tenant, tenant)
		}
		tenant, only = c.Tenant, true
	}
	as, err := s.b.Views().Accounts(tenant, only, req.GetIncludeDeleted())
	if err != nil {
		return nil, viewError(err)
	}
	out := &adminpb.ListAccountsResponse{}
	for _, a := range as {
		out.Accounts = append(out.Accounts, accountOf(a))
	}
	return out, nil
}

// GetAccount implements adminpb.AccountsServer.
func (s *Server) GetAccount(ctx context.Context, req *adminpb.GetAccountRequest) (*adminpb.Account, error) {
	_, a, err := s.target(ctx, req.GetName(), true)
	if err != nil {
		return nil, err
	}
	return accountOf(a), nil
}

// SetRole implements adminpb.AccountsServer.
func (s *Server) SetRole(ctx context.Context, req *adminpb.SetRoleRequest) (*adminpb.Account, error) {
	c, _ := callerFrom(ctx)
	if err := allowTenant(c, admins, req.GetTenant()); err != nil {
		return nil, err
	}
	if c.Role != sbauth.Super && sbauth.Role(req.GetRole()) == sbauth.Super {
		return nil, status.Error(codes.PermissionDenied, "only a super administrator may make super administrators")
	}
	return s.mutate(ctx, req.GetName(), false, &accountpb.SetRole{Role: req.GetRole(), Tenant: req.GetTenant(), By: c.Subject})
}

// DisableAccount implements adminpb.AccountsServer.
func (s *Server) DisableAccount(ctx context.Context, req *adminpb.DisableAccountRequest) (*adminpb.Account, error) {
	c, _ := callerFrom(ctx)
	return s.mutate(ctx, req.GetName(), false, &accountpb.Disable{By: c.Subject, Reason: req.GetReason()})
}

// EnableAccount implements adminpb.AccountsServer.
func (s *Server) EnableAccount(ctx context.Context, req *adminpb.EnableAccountRequest) (*adminpb.Account, error) {
	c, _ := callerFrom(ctx)
	return s.mutate(ctx, req.GetName(), false, &accountpb.Enable{By: c.Subject})
}

// DeleteAccount implements adminpb.AccountsServer.
func (s *Server) DeleteAccount(ctx context.Context, req *adminpb.DeleteAccountRequest) (*adminpb.Account, error) {
	c, _ := callerFrom(ctx)
	return s.mutate(ctx, req.GetName(), false, &accountpb.Delete{By: c.Subject})
}

// ResetPassword implements adminpb.AccountsServer.
func (s *Server) ResetPassword(ctx context.Context, req *adminpb.ResetPasswordRequest) (*adminpb.CreateAccountResponse, error) {
	c, _ := callerFrom(ctx)
	pw := sbauth.NewOneTimePassword()
	hash, err := s.hashPassword(ctx, pw)
	if err != nil {
		return nil, err
	}
	a, err := s.mutate(ctx, req.GetName(), false, &accountpb.ChangePassword{NewHash: hash, By: c.Subject, RequireChange: true})
	if err != nil {
		return nil, err
	}
	return &adminpb.CreateAccountResponse{Account: a, Credential: pw}, nil
}

// RotateSecret implements adminpb.AccountsServer.
func (s *Server) RotateSecret(ctx context.Context, req *adminpb.RotateSecretRequest) (*adminpb.CreateAccountResponse, error) {
	c, _ := callerFrom(ctx)
	secret, hash := sbauth.NewSecret()
	id := sbauth.NewSecretID()
	a, err := s.mutate(ctx, req.GetName(), true, &accountpb.AddSecret{SecretId: id, Hash: hash, By: c.Subject, OverlapS: req.GetOverlapS()})
	if err != nil {
		return nil, err
	}
	return &adminpb.CreateAccountResponse{Account: a, Credential: secret, SecretId: id}, nil
}

// RevokeSecret implements adminpb.AccountsServer.
func (s *Server) RevokeSecret(ctx context.Context, req *adminpb.RevokeSecretRequest) (*adminpb.Account, error) {
	c, _ := callerFrom(ctx)
	return s.mutate(ctx, req.GetName(), true, &accountpb.RevokeSecret{SecretId: req.GetSecretId(), By: c.Subject})
}
