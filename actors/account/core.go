// Package account is the pure core of the account job: the administrators
// and API clients of the admin gateway, one grain per account whose identity
// is the account name and whose state is the stream "account/<name>" (see
// accountpb/account.proto for every message and README.md for the rules).
//
// The core does no I/O and reads no clock: time comes from entity.Env.Now,
// and passwords and secrets reach it only as hashes made by the gateway with
// gateway/auth (argon2id for passwords, SHA-256 for client secrets). Decide
// stores and compares what it is given; it never hashes.
//
// Rejections are *entity.Rejection values whose Reason is one of the Reason*
// constants. A rejected command writes nothing; a command that would change
// nothing (a retry, or setting what is set) is accepted and writes nothing.
package account

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/gateway/auth"
)

// Kind is the entity kind of accounts; an account's stream is
// "account/<name>".
const Kind = "account"

// Rejection reasons (entity.Rejection.Reason).
const (
	// ReasonExists: Create on a name that was ever created (deleted
	// accounts' names are not reused).
	ReasonExists = "exists"
	// ReasonNotFound: a command other than Create on a name never created
	// or deleted.
	ReasonNotFound = "not_found"
	// ReasonWrongKind: a password for a client or a secret for an admin.
	ReasonWrongKind = "wrong_kind"
	// ReasonInvalidRole: an unknown role, or a tenant that does not fit it
	// (required for tenant_admin and supporter, forbidden for super).
	ReasonInvalidRole = "invalid_role"
	// ReasonSecretExists: AddSecret with the id of another secret.
	ReasonSecretExists = "secret_exists"
	// ReasonUnknownSecret: RevokeSecret of an id the account does not hold.
	ReasonUnknownSecret = "unknown_secret"
	// ReasonTooManySecrets: AddSecret would leave more than
	// MaxActiveSecrets active.
	ReasonTooManySecrets = "too_many_secrets"
	// ReasonBadRequest: a malformed command (the message names every bad
	// field).
	ReasonBadRequest = "bad_request"
)

// Reasons lists every rejection reason.
var Reasons = []string{ReasonExists, ReasonNotFound, ReasonWrongKind, ReasonInvalidRole, ReasonSecretExists,
	ReasonUnknownSecret, ReasonTooManySecrets, ReasonBadRequest}

// Limits.
const (
	MaxActiveSecrets = 8
	MaxOverlap       = 30 * 24 * time.Hour
	MaxByBytes       = 128 // the "by" of every command
	MaxReasonBytes   = 256 // Disable.reason
)

// Spec returns the account kind's core for the entity shell.
func Spec() entity.Spec[State] {
	return entity.Spec[State]{Kind: Kind, Initial: Initial, Decide: Decide, Evolve: Evolve, Reply: Reply}
}

func reject(reason, format string, args ...any) error { return entity.Reject(reason, format, args...) }

// fields collects a command's bad fields.
type fields []string

func (f *fields) add(format string, args ...any) { *f = append(*f, fmt.Sprintf(format, args...)) }

func (f *fields) text(field, v string, minBytes, maxBytes int) {
	switch {
	case len(v) < minBytes && minBytes == 1:
		f.add("%s is empty", field)
	case len(v) < minBytes || len(v) > maxBytes:
		f.add("%s has %d bytes, not %d..%d", field, len(v), minBytes, maxBytes)
	case !utf8.ValidString(v):
		f.add("%s is not valid UTF-8", field)
	case strings.ContainsFunc(v, unicode.IsControl):
		f.add("%s contains a control character", field)
	}
}

func (f *fields) name(field, v string) {
	if err := auth.CheckName(field, v); err != nil {
		f.add("%s", strings.TrimPrefix(err.Error(), auth.ErrInvalidName.Error()+": "))
	}
}

func (f *fields) passwordHash(field, v string) {
	if _, err := auth.CheckHash(v); err != nil {
		f.add("%s: %s", field, strings.TrimPrefix(err.Error(), auth.ErrMalformedHash.Error()+": "))
	}
}

func (f *fields) secretHash(field string, h []byte) {
	if len(h) != auth.SecretHashLen {
		f.add("%s has %d bytes, not %d (SHA-256)", field, len(h), auth.SecretHashLen)
	}
}

func (f fields) err(cmd proto.Message) error {
	if len(f) == 0 {
		return nil
	}
	return reject(ReasonBadRequest, "%s: %s", proto.MessageName(cmd).Name(), strings.Join(f, "; "))
}

func checkRole(role, tenant string) error {
	if err := auth.Role(role).Check(tenant); err != nil {
		return reject(ReasonInvalidRole, "%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(),
			auth.ErrInvalidRole.Error()+": "), auth.ErrInvalidName.Error()+": "))
	}
	return nil
}

// Decide returns the events cmd produces in state s (none for a query or a
// command that changes nothing) or an *entity.Rejection. It never modifies s.
func Decide(s State, cmd proto.Message, env entity.Env) ([]proto.Message, error) {
	switch cmd.(type) {
	case *accountpb.Create:
	case *accountpb.ChangePassword, *accountpb.AddSecret, *accountpb.RevokeSecret, *accountpb.SetRole,
		*accountpb.Disable, *accountpb.Enable, *accountpb.Delete, *accountpb.Get:
		switch s.Status {
		case Missing:
			return nil, reject(ReasonNotFound, "no account %q", env.ID)
		case Deleted:
			return nil, reject(ReasonNotFound, "account %q was deleted", env.ID)
		}
	default:
		return nil, reject(ReasonBadRequest, "%T is not an account command", cmd)
	}
	now := env.Now.UnixMilli()
	switch c := cmd.(type) {
	case *accountpb.Create:
		return decideCreate(s, c, env)
	case *accountpb.ChangePassword:
		return decideChangePassword(s, c, now)
	case *accountpb.AddSecret:
		return decideAddSecret(s, c, now)
	case *accountpb.RevokeSecret:
		var bad fields
		bad.text("by", c.GetBy(), 1, MaxByBytes)
		bad.name("secret_id", c.GetSecretId())
		if err := bad.err(c); err != nil {
			return nil, err
		}
		if s.Kind != auth.KindClient {
			return nil, reject(ReasonWrongKind, "%s %q has no secrets", s.Kind, env.ID)
		}
		i := s.secret(c.GetSecretId())
		switch {
		case i < 0:
			return nil, reject(ReasonUnknownSecret, "account %q holds no secret %q", env.ID, c.GetSecretId())
		case s.Secrets[i].Revoked:
			return nil, nil
		}
		return []proto.Message{&accountpb.SecretRevoked{SecretId: c.GetSecretId(), By: c.GetBy(), AtUnixMs: now}}, nil
	case *accountpb.SetRole:
		var bad fields
		bad.text("by", c.GetBy(), 1, MaxByBytes)
		if err := bad.err(c); err != nil {
			return nil, err
		}
		if err := checkRole(c.GetRole(), c.GetTenant()); err != nil {
			return nil, err
		}
		if auth.Role(c.GetRole()) == s.Role && c.GetTenant() == s.Tenant {
			return nil, nil
		}
		return []proto.Message{&accountpb.RoleChanged{Role: c.GetRole(), Tenant: c.GetTenant(),
			PreviousRole: string(s.Role), PreviousTenant: s.Tenant, By: c.GetBy(), AtUnixMs: now}}, nil
	case *accountpb.Disable:
		var bad fields
		bad.text("by", c.GetBy(), 1, MaxByBytes)
		bad.text("reason", c.GetReason(), 0, MaxReasonBytes)
		if err := bad.err(c); err != nil {
			return nil, err
		}
		if s.Disabled {
			return nil, nil
		}
		return []proto.Message{&accountpb.Disabled{By: c.GetBy(), Reason: c.GetReason(), AtUnixMs: now}}, nil
	case *accountpb.Enable:
		var bad fields
		bad.text("by", c.GetBy(), 1, MaxByBytes)
		if err := bad.err(c); err != nil {
			return nil, err
		}
		if !s.Disabled {
			return nil, nil
		}
		return []proto.Message{&accountpb.Enabled{By: c.GetBy(), AtUnixMs: now}}, nil
	case *accountpb.Delete:
		var bad fields
		bad.text("by", c.GetBy(), 1, MaxByBytes)
		if err := bad.err(c); err != nil {
			return nil, err
		}
		return []proto.Message{&accountpb.Deleted{By: c.GetBy(), AtUnixMs: now}}, nil
	}
	return nil, nil // Get
}

func decideCreate(s State, c *accountpb.Create, env entity.Env) ([]proto.Message, error) {
	if s.Status != Missing {
		return nil, reject(ReasonExists, "account %q exists (%s); names are not reused", env.ID, s.Status)
	}
	var bad fields
	bad.name("account name", env.ID)
	bad.text("by", c.GetBy(), 1, MaxByBytes)
	switch c.GetKind() {
	case auth.KindAdmin:
		if c.GetSecretId() != "" || len(c.GetSecretHash()) > 0 {
			return nil, reject(ReasonWrongKind, "an admin has no secret; it logs in with a password")
		}
		bad.passwordHash("password_hash", c.GetPasswordHash())
	case auth.KindClient:
		if c.GetPasswordHash() != "" || c.GetMustChangePassword() {
			return nil, reject(ReasonWrongKind, "a client has no password; it authenticates with a secret")
		}
		bad.name("secret_id", c.GetSecretId())
		bad.secretHash("secret_hash", c.GetSecretHash())
	default:
		bad.add("kind %q is neither %q nor %q", c.GetKind(), auth.KindAdmin, auth.KindClient)
	}
	if err := bad.err(c); err != nil {
		return nil, err
	}
	if err := checkRole(c.GetRole(), c.GetTenant()); err != nil {
		return nil, err
	}
	now := env.Now.UnixMilli()
	ev := &accountpb.Created{Kind: c.GetKind(), Role: c.GetRole(), Tenant: c.GetTenant(), PasswordHash: c.GetPasswordHash(),
		MustChangePassword: c.GetMustChangePassword(), By: c.GetBy(), AtUnixMs: now}
	if c.GetKind() == auth.KindClient {
		ev.Secret = &accountpb.Secret{Id: c.GetSecretId(), Hash: c.GetSecretHash(), AddedAtUnixMs: now, AddedBy: c.GetBy()}
	}
	return []proto.Message{ev}, nil
}

func decideChangePassword(s State, c *accountpb.ChangePassword, now int64) ([]proto.Message, error) {
	var bad fields
	bad.text("by", c.GetBy(), 1, MaxByBytes)
	bad.passwordHash("new_hash", c.GetNewHash())
	if c.GetClearMustChange() && c.GetRequireChange() {
		bad.add("clear_must_change and require_change are both set")
	}
	if err := bad.err(c); err != nil {
		return nil, err
	}
	if s.Kind != auth.KindAdmin {
		return nil, reject(ReasonWrongKind, "%s %q has no password", s.Kind, s.Name)
	}
	must := s.MustChangePassword
	switch {
	case c.GetClearMustChange():
		must = false
	case c.GetRequireChange():
		must = true
	}
	if c.GetNewHash() == s.PasswordHash && must == s.MustChangePassword {
		return nil, nil // a retry: the salt makes every new hash unique
	}
	return []proto.Message{&accountpb.PasswordChanged{Hash: c.GetNewHash(), MustChangePassword: must, By: c.GetBy(), AtUnixMs: now}}, nil
}

func decideAddSecret(s State, c *accountpb.AddSecret, now int64) ([]proto.Message, error) {
	var bad fields
	bad.text("by", c.GetBy(), 1, MaxByBytes)
	bad.name("secret_id", c.GetSecretId())
	bad.secretHash("hash", c.GetHash())
	if c.GetOverlapS() > uint32(MaxOverlap/time.Second) {
		bad.add("overlap_s %d is over %d", c.GetOverlapS(), uint32(MaxOverlap/time.Second))
	}
	if err := bad.err(c); err != nil {
		return nil, err
	}
	if s.Kind != auth.KindClient {
		return nil, reject(ReasonWrongKind, "%s %q has no secrets", s.Kind, s.Name)
	}
	if i := s.secret(c.GetSecretId()); i >= 0 {
		if x := s.Secrets[i]; !x.Revoked && bytes.Equal(x.Hash, c.GetHash()) {
			return nil, nil // a retry
		}
		return nil, reject(ReasonSecretExists, "account %q already holds a secret %q", s.Name, c.GetSecretId())
	}
	active := 1
	if c.GetOverlapS() > 0 {
		active += s.ActiveSecrets(now)
	}
	if active > MaxActiveSecrets {
		return nil, reject(ReasonTooManySecrets, "account %q would have %d active secrets, at most %d: revoke one, or add with overlap_s 0",
			s.Name, active, MaxActiveSecrets)
	}
	return []proto.Message{&accountpb.SecretAdded{
		Secret:               &accountpb.Secret{Id: c.GetSecretId(), Hash: c.GetHash(), AddedAtUnixMs: now, AddedBy: c.GetBy()},
		OverlapS:             c.GetOverlapS(),
		OthersNotAfterUnixMs: now + int64(c.GetOverlapS())*1000,
		By:                   c.GetBy(),
		AtUnixMs:             now,
	}}, nil
}

// Reply returns the account after cmd, as of env.Now.
func Reply(s State, _ proto.Message, env entity.Env) proto.Message { return View(s, env.Now) }

// View returns the account as the gateway sees it at now (secrets' active
// flags are as of now).
func View(s State, now time.Time) *accountpb.Account {
	a := &accountpb.Account{
		Name: s.Name, Kind: s.Kind, Role: string(s.Role), Tenant: s.Tenant, Generation: s.Generation,
		Disabled: s.Disabled, DisabledReason: s.DisabledReason, MustChangePassword: s.MustChangePassword,
		Deleted: s.Status == Deleted, PasswordHash: s.PasswordHash,
		CreatedAtUnixMs: s.CreatedAt, CreatedBy: s.CreatedBy, UpdatedAtUnixMs: s.UpdatedAt, UpdatedBy: s.UpdatedBy,
		Version: s.Version,
	}
	t := now.UnixMilli()
	for _, x := range s.Secrets {
		a.Secrets = append(a.Secrets, &accountpb.Secret{Id: x.ID, Hash: bytes.Clone(x.Hash), AddedAtUnixMs: x.AddedAt,
			AddedBy: x.AddedBy, NotAfterUnixMs: x.NotAfter, Revoked: x.Revoked, Active: x.ActiveAt(t)})
	}
	return a
}

// MatchSecret returns the id of the secret of client account a that clear
// is, if that secret is usable at now and the account may authenticate (a
// live, enabled client). It judges by not_after and revoked, not by the
// reply's active flags, so a cached Account stays correct as time passes.
// Every active secret is compared, in constant time each.
func MatchSecret(a *accountpb.Account, clear string, now time.Time) (id string, ok bool) {
	if a.GetKind() != auth.KindClient || a.GetDeleted() || a.GetDisabled() {
		return "", false
	}
	t := now.UnixMilli()
	for _, x := range a.GetSecrets() {
		usable := !x.GetRevoked() && (x.GetNotAfterUnixMs() == 0 || t < x.GetNotAfterUnixMs())
		if auth.VerifySecret(x.GetHash(), clear) && usable && !ok {
			id, ok = x.GetId(), true
		}
	}
	return id, ok
}
