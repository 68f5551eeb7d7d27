package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrPermissionDenied: Authorize refused. The wrapping message names the
// role or tenant problem.
var ErrPermissionDenied = errors.New("auth: permission denied")

// ErrInvalidRole: an unknown role, or a tenant that does not fit the role.
var ErrInvalidRole = errors.New("auth: invalid role")

// Role is what an account may do.
type Role string

// The roles.
const (
	// Super: the super administrator, every tenant; has no tenant.
	Super Role = "super"
	// TenantAdmin administers its tenant (required).
	TenantAdmin Role = "tenant_admin"
	// Supporter may open and end its own sessions and read its tenant's
	// (required) live sessions.
	Supporter Role = "supporter"
	// Auditor reads, never writes: its tenant, or every tenant when it has
	// none.
	Auditor Role = "auditor"
)

// Roles lists every role.
var Roles = []Role{Super, TenantAdmin, Supporter, Auditor}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Check reports whether an account of role r may have tenant: required for
// TenantAdmin and Supporter, forbidden for Super, optional for Auditor
// (empty = every tenant), and a valid name when set. The error wraps
// ErrInvalidRole or ErrInvalidName.
func (r Role) Check(tenant string) error {
	if !r.Valid() {
		return fmt.Errorf("%w: %q (want one of %s)", ErrInvalidRole, r, roleList(Roles))
	}
	if err := CheckTenant(tenant); err != nil {
		return err
	}
	switch {
	case r == Super && tenant != "":
		return fmt.Errorf("%w: a %s has no tenant (got %q)", ErrInvalidRole, r, tenant)
	case (r == TenantAdmin || r == Supporter) && tenant == "":
		return fmt.Errorf("%w: a %s needs a tenant", ErrInvalidRole, r)
	}
	return nil
}

// AllTenants reports whether an account of role r and tenant may act on
// every tenant: Super, and an Auditor without a tenant.
func (r Role) AllTenants(tenant string) bool {
	return r == Super || r == Auditor && tenant == ""
}

func roleList(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// Principal kinds.
const (
	KindAdmin  = "admin"  // a person logged in with a password
	KindClient = "client" // a program with an API client secret
)

// Principal is an authenticated caller.
type Principal struct {
	Subject string // the account name
	Kind    string // KindAdmin or KindClient
	Role    Role
	Tenant  string
}

// Rule says who may call one operation. Roles are listed explicitly: no role
// (not even Super) passes a rule that does not list it. A TenantScoped
// operation acts on one tenant's data (the target tenant; "" for data of no
// tenant, such as the cluster): a principal bound to a tenant may act only on
// its own, Super and an all-tenants Auditor on any. An operation that is not
// tenant-scoped is checked by role alone (changing one's own password, say).
//
// Rules compare roles and tenants only; ownership ("its own sessions") is the
// caller's check, after Authorize.
type Rule struct {
	Roles        []Role
	TenantScoped bool
}

// Authorize returns nil when p may perform an operation under r on data of
// targetTenant, else an error wrapping ErrPermissionDenied that names the
// problem. An inconsistent principal (unknown kind or role, a tenant that
// does not fit its role) is refused.
func Authorize(p Principal, r Rule, targetTenant string) error {
	deny := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrPermissionDenied, fmt.Sprintf(format, args...))
	}
	if p.Kind != KindAdmin && p.Kind != KindClient {
		return deny("%q is of unknown kind %q", p.Subject, p.Kind)
	}
	if err := p.Role.Check(p.Tenant); err != nil {
		return deny("%q has an invalid role: %v", p.Subject, err)
	}
	if !slices.Contains(r.Roles, p.Role) {
		return deny("role %s may not do this (allowed: %s)", p.Role, roleList(r.Roles))
	}
	if !r.TenantScoped || p.Role.AllTenants(p.Tenant) {
		return nil
	}
	switch {
	case targetTenant == "":
		return deny("role %s of tenant %q may not act on data outside any tenant", p.Role, p.Tenant)
	case targetTenant != p.Tenant:
		return deny("role %s of tenant %q may not act on tenant %q", p.Role, p.Tenant, targetTenant)
	}
	return nil
}
