package admin

import sbauth "github.com/switchboard-io/switchboard/gateway/auth"

// rule is a method's authorization: the roles that may call it and whether
// it reaches data outside any tenant (cluster-wide data: only principals
// of every tenant, i.e. without a tenant, may). Methods on tenant objects
// (sessions, accounts) check the object's tenant again when they have it.
type rule struct {
	sbauth.Rule
	global bool
}

func (r rule) tenant(c *caller) string {
	if r.global {
		return ""
	}
	return c.Tenant
}

var (
	allRoles       = []sbauth.Role{sbauth.Super, sbauth.TenantAdmin, sbauth.Supporter, sbauth.Auditor}
	readers        = []sbauth.Role{sbauth.Super, sbauth.TenantAdmin, sbauth.Supporter, sbauth.Auditor}
	admins         = []sbauth.Role{sbauth.Super, sbauth.TenantAdmin}
	enders         = []sbauth.Role{sbauth.Super, sbauth.TenantAdmin, sbauth.Supporter}
	overseer       = []sbauth.Role{sbauth.Super, sbauth.Auditor}
	superOnly      = []sbauth.Role{sbauth.Super}
	accountReaders = []sbauth.Role{sbauth.Super, sbauth.TenantAdmin, sbauth.Auditor}
)

func scoped(roles []sbauth.Role) rule {
	return rule{Rule: sbauth.Rule{Roles: roles, TenantScoped: true}}
}
func global(roles []sbauth.Role) rule {
	return rule{Rule: sbauth.Rule{Roles: roles, TenantScoped: true}, global: true}
}

// rules maps every method (but Login) to its rule; docs/api.md has the same
// table for people.
var rules = map[string]rule{
	methodWhoAmI:         {Rule: sbauth.Rule{Roles: allRoles}},
	methodChangePassword: {Rule: sbauth.Rule{Roles: allRoles}},

	"/switchboard.admin.v1.Cluster/GetCluster":           global(overseer),
	"/switchboard.admin.v1.Cluster/ListProjections":      global(overseer),
	"/switchboard.admin.v1.Cluster/GetRates":             global(overseer),
	"/switchboard.admin.v1.Cluster/GetProjectionDigests": global(overseer),
	"/switchboard.admin.v1.Cluster/RebuildProjection":    global(superOnly),

	"/switchboard.admin.v1.Sessions/ListLiveSessions":     scoped(readers),
	"/switchboard.admin.v1.Sessions/GetSession":           scoped(readers),
	"/switchboard.admin.v1.Sessions/SearchSessionHistory": scoped(readers),
	"/switchboard.admin.v1.Sessions/GetFailoverState":     scoped(readers),
	"/switchboard.admin.v1.Sessions/EndSession":           scoped(enders),

	"/switchboard.admin.v1.Audit/SearchAudit": global(overseer),

	"/switchboard.admin.v1.Accounts/ListAccounts":   scoped(accountReaders),
	"/switchboard.admin.v1.Accounts/GetAccount":     scoped(accountReaders),
	"/switchboard.admin.v1.Accounts/CreateAccount":  scoped(admins),
	"/switchboard.admin.v1.Accounts/SetRole":        scoped(admins),
	"/switchboard.admin.v1.Accounts/DisableAccount": scoped(admins),
	"/switchboard.admin.v1.Accounts/EnableAccount":  scoped(admins),
	"/switchboard.admin.v1.Accounts/DeleteAccount":  scoped(admins),
	"/switchboard.admin.v1.Accounts/ResetPassword":  scoped(admins),
	"/switchboard.admin.v1.Accounts/RotateSecret":   scoped(admins),
	"/switchboard.admin.v1.Accounts/RevokeSecret":   scoped(admins),
}
