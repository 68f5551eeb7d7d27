package adminpb

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/switchboard-io/switchboard/gateway/auth"
)

// Validation of requests: every request type has Violations, which names
// each bad field (empty = valid). The gateway refuses a request with any
// violation as INVALID_ARGUMENT with a google.rpc.BadRequest detail.

// MaxLimit bounds page sizes.
const MaxLimit = 1000

// FieldViolations lists the bad fields of a request.
type FieldViolations []*errdetails.BadRequest_FieldViolation

func (v *FieldViolations) add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v *FieldViolations) name(field, s string, required bool) {
	if s == "" && !required {
		return
	}
	if err := auth.CheckName(field, s); err != nil {
		v.add(field, "%s", strings.TrimPrefix(err.Error(), auth.ErrInvalidName.Error()+": "))
	}
}

func (v *FieldViolations) text(field, s string, max int) {
	if len(s) > max {
		v.add(field, "longer than %d bytes", max)
	} else if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		v.add(field, "not valid UTF-8 text")
	}
}

func (v *FieldViolations) limit(field string, n uint32) {
	if n > MaxLimit {
		v.add(field, "%d is over %d", n, MaxLimit)
	}
}

func (v *FieldViolations) code(field, s string, required bool) {
	if s == "" && !required {
		return
	}
	ok := len(s) == 9 && s[0] != '0'
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= '0' && s[i] <= '9'
	}
	if !ok {
		v.add(field, "%q is not a 9-digit session code", s)
	}
}

func (v *FieldViolations) timeRange(from, to int64) {
	if from < 0 {
		v.add("from_unix_ms", "must not be negative")
	}
	if to < 0 {
		v.add("to_unix_ms", "must not be negative")
	}
	if from > 0 && to > 0 && from >= to {
		v.add("from_unix_ms", "must be before to_unix_ms")
	}
}

func (v *FieldViolations) role(field, role, tenant string) {
	r := auth.Role(role)
	if !r.Valid() {
		v.add(field, "%q is not one of super, tenant_admin, supporter, auditor", role)
		return
	}
	v.name("tenant", tenant, false)
	if err := r.Check(tenant); err != nil {
		v.add("tenant", "%s", strings.TrimPrefix(err.Error(), auth.ErrInvalidRole.Error()+": "))
	}
}

func (r *LoginRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	if r.GetPassword() == "" {
		v.add("password", "required")
	}
	v.text("password", r.GetPassword(), 256)
	return v
}

func (r *ChangePasswordRequest) Violations() (v FieldViolations) {
	if r.GetOldPassword() == "" {
		v.add("old_password", "required")
	}
	v.text("old_password", r.GetOldPassword(), 256)
	if r.GetNewPassword() == "" {
		v.add("new_password", "required")
	}
	v.text("new_password", r.GetNewPassword(), 256)
	return v
}

func (r *WhoAmIRequest) Violations() FieldViolations               { return nil }
func (r *GetProjectionDigestsRequest) Violations() FieldViolations { return nil }
func (r *GetClusterRequest) Violations() FieldViolations           { return nil }
func (r *ListProjectionsRequest) Violations() FieldViolations      { return nil }

func (r *RebuildProjectionRequest) Violations() (v FieldViolations) {
	if r.GetName() == "" {
		v.add("name", "required")
	}
	v.text("name", r.GetName(), 32)
	return v
}

func (r *GetRatesRequest) Violations() (v FieldViolations) {
	v.timeRange(r.GetFromUnixMs(), r.GetToUnixMs())
	if f, t := r.GetFromUnixMs(), r.GetToUnixMs(); f > 0 && t > f && t-f > 1440*60000 {
		v.add("to_unix_ms", "range over 1440 minutes")
	}
	return v
}

func (r *ListLiveSessionsRequest) Violations() (v FieldViolations) {
	v.limit("limit", r.GetLimit())
	v.text("cursor", r.GetCursor(), 2048)
	return v
}

func (r *GetSessionRequest) Violations() (v FieldViolations) {
	v.code("code", r.GetCode(), true)
	return v
}

func (r *EndSessionRequest) Violations() (v FieldViolations) {
	v.code("code", r.GetCode(), true)
	v.text("reason", r.GetReason(), 256)
	return v
}

func (r *SearchSessionHistoryRequest) Violations() (v FieldViolations) {
	v.code("code", r.GetCode(), false)
	v.text("user", r.GetUser(), 256)
	v.text("addr", r.GetAddr(), 256)
	v.timeRange(r.GetFromUnixMs(), r.GetToUnixMs())
	v.limit("limit", r.GetLimit())
	v.text("cursor", r.GetCursor(), 2048)
	return v
}

func (r *GetFailoverStateRequest) Violations() (v FieldViolations) {
	v.code("code", r.GetCode(), false)
	v.limit("limit", r.GetLimit())
	return v
}

func (r *SearchAuditRequest) Violations() (v FieldViolations) {
	v.text("stream", r.GetStream(), 256)
	v.text("type", r.GetType(), 256)
	v.text("actor", r.GetActor(), 256)
	v.timeRange(r.GetFromUnixMs(), r.GetToUnixMs())
	v.limit("limit", r.GetLimit())
	return v
}

func (r *CreateAccountRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	if k := r.GetKind(); k != auth.KindAdmin && k != auth.KindClient {
		v.add("kind", "%q is not admin or client", k)
	}
	v.role("role", r.GetRole(), r.GetTenant())
	return v
}

func (r *ListAccountsRequest) Violations() (v FieldViolations) {
	v.name("tenant", r.GetTenant(), false)
	return v
}

func (r *GetAccountRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	return v
}

func (r *SetRoleRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	v.role("role", r.GetRole(), r.GetTenant())
	return v
}

func (r *DisableAccountRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	v.text("reason", r.GetReason(), 256)
	return v
}

func (r *EnableAccountRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	return v
}

func (r *DeleteAccountRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	return v
}

func (r *ResetPasswordRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	return v
}

func (r *RotateSecretRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	if r.GetOverlapS() > 2592000 {
		v.add("overlap_s", "%d is over 2592000 (30 days)", r.GetOverlapS())
	}
	return v
}

func (r *RevokeSecretRequest) Violations() (v FieldViolations) {
	v.name("name", r.GetName(), true)
	v.name("secret_id", r.GetSecretId(), true)
	return v
}
