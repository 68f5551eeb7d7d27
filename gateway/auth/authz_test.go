package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestAuthorize(t *testing.T) {
	super := Principal{Subject: "root", Kind: KindAdmin, Role: Super}
	admin := Principal{Subject: "ann", Kind: KindAdmin, Role: TenantAdmin, Tenant: "acme"}
	supporter := Principal{Subject: "sam", Kind: KindClient, Role: Supporter, Tenant: "acme"}
	auditor := Principal{Subject: "aud", Kind: KindAdmin, Role: Auditor, Tenant: "acme"}
	globalAuditor := Principal{Subject: "gaud", Kind: KindClient, Role: Auditor}
	all := Rule{Roles: Roles}
	allScoped := Rule{Roles: Roles, TenantScoped: true}
	const (
		own, other, none = "acme", "globex", ""
		ok               = ""
	)
	for _, c := range []struct {
		p      Principal
		r      Rule
		target string
		want   string // ok, or a word the refusal names
	}{
		// Not tenant-scoped: the role decides, the target does not matter.
		{super, all, own, ok}, {super, all, other, ok}, {super, all, none, ok},
		{admin, all, own, ok}, {admin, all, other, ok}, {admin, all, none, ok},
		{supporter, all, own, ok}, {supporter, all, other, ok}, {supporter, all, none, ok},
		{auditor, all, own, ok}, {auditor, all, other, ok}, {auditor, all, none, ok},
		{globalAuditor, all, own, ok}, {globalAuditor, all, other, ok}, {globalAuditor, all, none, ok},
		// Tenant-scoped: tenant-bound roles only in their own tenant.
		{super, allScoped, own, ok}, {super, allScoped, other, ok}, {super, allScoped, none, ok},
		{admin, allScoped, own, ok}, {admin, allScoped, other, `tenant "globex"`}, {admin, allScoped, none, "outside any tenant"},
		{supporter, allScoped, own, ok}, {supporter, allScoped, other, `tenant "globex"`}, {supporter, allScoped, none, "outside any tenant"},
		{auditor, allScoped, own, ok}, {auditor, allScoped, other, `tenant "globex"`}, {auditor, allScoped, none, "outside any tenant"},
		{globalAuditor, allScoped, own, ok}, {globalAuditor, allScoped, other, ok}, {globalAuditor, allScoped, none, ok},
	} {
		check(t, c.p, c.r, c.target, c.want)
	}
	// A role the rule does not list is refused whatever the scope and
	// target, Super included.
	for _, p := range []Principal{super, admin, supporter, auditor, globalAuditor} {
		for _, scoped := range []bool{false, true} {
			var others []Role
			for _, r := range Roles {
				if r != p.Role {
					others = append(others, r)
				}
			}
			for _, target := range []string{own, other, none} {
				check(t, p, Rule{Roles: others, TenantScoped: scoped}, target, "role "+string(p.Role)+" may not")
				check(t, p, Rule{TenantScoped: scoped}, target, "may not")
			}
		}
	}
}

func TestAuthorizeRefusesInconsistentPrincipals(t *testing.T) {
	all := Rule{Roles: Roles}
	for _, c := range []struct {
		p    Principal
		want string
	}{
		{Principal{Subject: "x", Kind: "robot", Role: Super}, "unknown kind"},
		{Principal{Subject: "x", Kind: KindAdmin, Role: "root"}, "invalid role"},
		{Principal{Subject: "x", Kind: KindAdmin, Role: Super, Tenant: "acme"}, "no tenant"},
		{Principal{Subject: "x", Kind: KindAdmin, Role: TenantAdmin}, "needs a tenant"},
		{Principal{Subject: "x", Kind: KindAdmin, Role: Supporter}, "needs a tenant"},
		{Principal{Subject: "x", Kind: KindAdmin, Role: Auditor, Tenant: "Bad Tenant"}, "invalid role"},
	} {
		check(t, c.p, all, "acme", c.want)
	}
}

func check(t *testing.T, p Principal, r Rule, target, want string) {
	t.Helper()
	err := Authorize(p, r, target)
	name := fmt.Sprintf("%s(%s/%q) rule %v scoped=%v target %q", p.Subject, p.Role, p.Tenant, r.Roles, r.TenantScoped, target)
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want allowed", name, err)
	case want != "" && !errors.Is(err, ErrPermissionDenied):
		t.Errorf("%s: %v, want ErrPermissionDenied", name, err)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("%s: %q does not say %q", name, err, want)
	}
}

func TestRoleCheck(t *testing.T) {
	for _, c := range []struct {
		r      Role
		tenant string
		ok     bool
	}{
		{Super, "", true}, {Super, "acme", false},
		{TenantAdmin, "acme", true}, {TenantAdmin, "", false},
		{Supporter, "acme", true}, {Supporter, "", false},
		{Auditor, "acme", true}, {Auditor, "", true},
		{"", "", false}, {"Super", "", false}, {Auditor, "-acme", false},
	} {
		if err := c.r.Check(c.tenant); (err == nil) != c.ok {
			t.Errorf("Role(%q).Check(%q) = %v, want ok=%v", c.r, c.tenant, err, c.ok)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, ok := range map[string]bool{
		"a": true, "0": true, "alice": true, "ops.team_1-b": true, strings.Repeat("a", 64): true,
		"": false, strings.Repeat("a", 65): false, "Alice": false, ".a": false, "-a": false, "_a": false,
		"a b": false, "a/b": false, "ä": false, "a@b": false,
	} {
		if ValidName(s) != ok {
			t.Errorf("ValidName(%q) = %v", s, !ok)
		}
		if err := CheckName("account name", s); (err == nil) != ok || !ok && !errors.Is(err, ErrInvalidName) {
			t.Errorf("CheckName(%q) = %v", s, err)
		}
		if ValidTenant(s) != (ok || s == "") {
			t.Errorf("ValidTenant(%q) = %v", s, !ok)
		}
	}
	if err := CheckTenant(""); err != nil {
		t.Errorf("CheckTenant(\"\") = %v: empty means no tenant", err)
	}
	if err := CheckName("account name", "Alice"); err == nil || !strings.Contains(err.Error(), "account name") {
		t.Errorf("CheckName does not name what it checks: %v", err)
	}
}
