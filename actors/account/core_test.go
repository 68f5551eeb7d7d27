package account_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/gateway/auth"
)

func TestCreateAdmin(t *testing.T) {
	d := newDriver(t, "alice")
	a := doWrites(t, d, createAdmin(t), 1)
	want := &accountpb.Account{Name: "alice", Kind: "admin", Role: "tenant_admin", Tenant: "acme", Generation: 1,
		MustChangePassword: true, PasswordHash: pwHash(t, 0), CreatedAtUnixMs: t0.UnixMilli(), CreatedBy: "root",
		UpdatedAtUnixMs: t0.UnixMilli(), UpdatedBy: "root", Version: 1}
	if !proto.Equal(a, want) {
		t.Fatalf("reply\n%v\nwant\n%v", a, want)
	}
	if ok, err := auth.VerifyPassword(a.GetPasswordHash(), "first password 1"); !ok || err != nil {
		t.Fatalf("the stored hash does not verify: %v %v", ok, err)
	}
	if got := do(t, d, &accountpb.Get{}); !proto.Equal(got, want) {
		t.Fatalf("Get\n%v\nwant\n%v", got, want)
	}
	d.Reactivate()
}

func TestCreateClient(t *testing.T) {
	d := newDriver(t, "ci-bot")
	a := doWrites(t, d, createClient(), 1)
	if a.GetKind() != "client" || a.GetPasswordHash() != "" || len(a.GetSecrets()) != 1 {
		t.Fatalf("reply %v", a)
	}
	s := a.GetSecrets()[0]
	if s.GetId() != "s1" || !s.GetActive() || s.GetNotAfterUnixMs() != 0 || s.GetAddedBy() != "root" || s.GetAddedAtUnixMs() != t0.UnixMilli() {
		t.Fatalf("secret %v", s)
	}
	if id, ok := account.MatchSecret(a, "sbs_one", t0); !ok || id != "s1" {
		t.Fatalf("MatchSecret = %q, %v", id, ok)
	}
	if _, ok := account.MatchSecret(a, "sbs_two", t0); ok {
		t.Fatal("MatchSecret accepts another secret")
	}
	d.Reactivate()
}

func TestCreateRules(t *testing.T) {
	mod := func(f func(c *accountpb.Create)) *accountpb.Create {
		c := createAdmin(t)
		f(c)
		return c
	}
	modClient := func(f func(c *accountpb.Create)) *accountpb.Create {
		c := createClient()
		f(c)
		return c
	}
	for _, c := range []struct {
		name    string
		id      string
		cmd     *accountpb.Create
		reason  string
		mention []string
	}{
		{"bad account name", "Alice", createAdmin(t), account.ReasonBadRequest, []string{"account name"}},
		{"long account name", strings.Repeat("a", 65), createAdmin(t), account.ReasonBadRequest, []string{"account name"}},
		{"no by", "alice", mod(func(c *accountpb.Create) { c.By = "" }), account.ReasonBadRequest, []string{"by is empty"}},
		{"by with control", "alice", mod(func(c *accountpb.Create) { c.By = "a\nb" }), account.ReasonBadRequest, []string{"control"}},
		{"unknown kind", "alice", mod(func(c *accountpb.Create) { c.Kind = "robot" }), account.ReasonBadRequest, []string{`"robot"`}},
		{"admin without hash", "alice", mod(func(c *accountpb.Create) { c.PasswordHash = "" }), account.ReasonBadRequest, []string{"password_hash"}},
		{"admin with clear password", "alice", mod(func(c *accountpb.Create) { c.PasswordHash = "hunter2hunter2" }), account.ReasonBadRequest, []string{"password_hash"}},
		{"admin with secret", "alice", mod(func(c *accountpb.Create) { c.SecretId, c.SecretHash = "s1", secretHash("x") }), account.ReasonWrongKind, []string{"no secret"}},
		{"client with password", "bot", modClient(func(c *accountpb.Create) { c.PasswordHash = pwHash(t, 0) }), account.ReasonWrongKind, []string{"no password"}},
		{"client must change", "bot", modClient(func(c *accountpb.Create) { c.MustChangePassword = true }), account.ReasonWrongKind, []string{"no password"}},
		{"client bad secret id", "bot", modClient(func(c *accountpb.Create) { c.SecretId = "" }), account.ReasonBadRequest, []string{"secret_id"}},
		{"client short hash", "bot", modClient(func(c *accountpb.Create) { c.SecretHash = []byte("short") }), account.ReasonBadRequest, []string{"secret_hash has 5 bytes"}},
		{"every bad field at once", "Bad", modClient(func(c *accountpb.Create) { c.SecretId, c.SecretHash, c.By = "", nil, "" }), account.ReasonBadRequest,
			[]string{"account name", "by", "secret_id", "secret_hash"}},
		{"unknown role", "alice", mod(func(c *accountpb.Create) { c.Role = "root" }), account.ReasonInvalidRole, []string{`"root"`}},
		{"tenant admin without tenant", "alice", mod(func(c *accountpb.Create) { c.Tenant = "" }), account.ReasonInvalidRole, []string{"needs a tenant"}},
		{"supporter without tenant", "alice", mod(func(c *accountpb.Create) { c.Role, c.Tenant = "supporter", "" }), account.ReasonInvalidRole, []string{"needs a tenant"}},
		{"super with tenant", "alice", mod(func(c *accountpb.Create) { c.Role = "super" }), account.ReasonInvalidRole, []string{"no tenant"}},
		{"bad tenant", "alice", mod(func(c *accountpb.Create) { c.Tenant = "Acme Inc" }), account.ReasonInvalidRole, []string{"tenant"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rejects(t, newDriver(t, c.id), c.cmd, c.reason, c.mention...)
		})
	}
	// Every valid role and tenant combination is accepted.
	for _, c := range []struct{ role, tenant string }{{"super", ""}, {"tenant_admin", "acme"}, {"supporter", "acme"}, {"auditor", "acme"}, {"auditor", ""}} {
		doWrites(t, newDriver(t, "x"), mod(func(cr *accountpb.Create) { cr.Role, cr.Tenant = c.role, c.tenant }), 1)
	}
}

func TestCreateOnlyOnce(t *testing.T) {
	d := newDriver(t, "alice")
	do(t, d, createAdmin(t))
	rejects(t, d, createAdmin(t), account.ReasonExists, "alice")
	rejects(t, d, createClient(), account.ReasonExists)
	do(t, d, &accountpb.Delete{By: "root"})
	rejects(t, d, createAdmin(t), account.ReasonExists, "deleted", "not reused")
	d.Reactivate()
}

// allCommands returns one valid command of every kind but Create.
func allCommands(t testing.TB) []proto.Message {
	return []proto.Message{
		&accountpb.ChangePassword{NewHash: pwHash(t, 1), By: "root"},
		&accountpb.AddSecret{SecretId: "s2", Hash: secretHash("sbs_two"), By: "root"},
		&accountpb.RevokeSecret{SecretId: "s1", By: "root"},
		&accountpb.SetRole{Role: "auditor", By: "root"},
		&accountpb.Disable{By: "root"},
		&accountpb.Enable{By: "root"},
		&accountpb.Delete{By: "root"},
		&accountpb.Get{},
	}
}

func TestNotFound(t *testing.T) {
	missing := newDriver(t, "ghost")
	deleted := newDriver(t, "gone")
	do(t, deleted, createClient())
	do(t, deleted, &accountpb.Delete{By: "root"})
	for _, cmd := range allCommands(t) {
		rejects(t, missing, cmd, account.ReasonNotFound, "ghost")
		rejects(t, deleted, cmd, account.ReasonNotFound, "gone", "deleted")
	}
	rejects(t, missing, &accountpb.Account{}, account.ReasonBadRequest, "not an account command")
	deleted.Reactivate()
}

func TestWrongKind(t *testing.T) {
	admin := newDriver(t, "alice")
	do(t, admin, createAdmin(t))
	rejects(t, admin, &accountpb.AddSecret{SecretId: "s2", Hash: secretHash("x"), By: "root"}, account.ReasonWrongKind, "no secrets")
	rejects(t, admin, &accountpb.RevokeSecret{SecretId: "s2", By: "root"}, account.ReasonWrongKind, "no secrets")
	client := newDriver(t, "bot")
	do(t, client, createClient())
	rejects(t, client, &accountpb.ChangePassword{NewHash: pwHash(t, 1), By: "root"}, account.ReasonWrongKind, "no password")
}

func TestChangePassword(t *testing.T) {
	d := newDriver(t, "alice")
	do(t, d, createAdmin(t))
	d.Advance(time.Minute)
	a := doWrites(t, d, &accountpb.ChangePassword{NewHash: pwHash(t, 1), By: "alice", ClearMustChange: true}, 1)
	if a.GetPasswordHash() != pwHash(t, 1) || a.GetMustChangePassword() || a.GetGeneration() != 2 ||
		a.GetUpdatedBy() != "alice" || a.GetUpdatedAtUnixMs() != t0.Add(time.Minute).UnixMilli() {
		t.Fatalf("after the change: %v", a)
	}
	// A retry writes nothing and keeps the generation (a token issued
	// after the first attempt stays valid).
	a = doWrites(t, d, &accountpb.ChangePassword{NewHash: pwHash(t, 1), By: "alice", ClearMustChange: true}, 0)
	if a.GetGeneration() != 2 {
		t.Fatalf("a retried change bumped the generation: %v", a)
	}
	// A reset by an administrator forces a change at the next login.
	a = doWrites(t, d, &accountpb.ChangePassword{NewHash: pwHash(t, 2), By: "root", RequireChange: true}, 1)
	if !a.GetMustChangePassword() || a.GetGeneration() != 3 {
		t.Fatalf("after the reset: %v", a)
	}
	// Neither flag keeps must_change_password as it is.
	a = doWrites(t, d, &accountpb.ChangePassword{NewHash: pwHash(t, 0), By: "root"}, 1)
	if !a.GetMustChangePassword() {
		t.Fatalf("must_change_password cleared without clear_must_change: %v", a)
	}
	// The same hash with another must_change outcome writes.
	doWrites(t, d, &accountpb.ChangePassword{NewHash: pwHash(t, 0), By: "alice", ClearMustChange: true}, 1)
	rejects(t, d, &accountpb.ChangePassword{NewHash: pwHash(t, 1), By: "root", ClearMustChange: true, RequireChange: true},
		account.ReasonBadRequest, "both")
	rejects(t, d, &accountpb.ChangePassword{NewHash: "$argon2id$v=19$m=1,t=1,p=1$x$y", By: "root"}, account.ReasonBadRequest, "new_hash")
	rejects(t, d, &accountpb.ChangePassword{NewHash: pwHash(t, 1)}, account.ReasonBadRequest, "by")
	d.Reactivate()
}

func TestSecretRotation(t *testing.T) {
	d := newDriver(t, "bot")
	do(t, d, createClient())
	d.Advance(time.Minute)
	t1 := d.Now
	a := doWrites(t, d, &accountpb.AddSecret{SecretId: "s2", Hash: secretHash("sbs_two"), By: "ops", OverlapS: 3600}, 1)
	if len(a.GetSecrets()) != 2 {
		t.Fatalf("secrets %v", a.GetSecrets())
	}
	if s := a.GetSecrets()[0]; !s.GetActive() || s.GetNotAfterUnixMs() != t1.Add(time.Hour).UnixMilli() {
		t.Fatalf("the old secret during the overlap: %v", s)
	}
	if s := a.GetSecrets()[1]; !s.GetActive() || s.GetNotAfterUnixMs() != 0 || s.GetAddedBy() != "ops" {
		t.Fatalf("the new secret: %v", s)
	}
	for _, c := range []struct {
		at     time.Time
		clear  string
		wantID string
	}{
		{t1, "sbs_one", "s1"}, {t1, "sbs_two", "s2"},
		{t1.Add(time.Hour - time.Millisecond), "sbs_one", "s1"},
		{t1.Add(time.Hour), "sbs_one", ""}, {t1.Add(time.Hour), "sbs_two", "s2"},
	} {
		if id, _ := account.MatchSecret(a, c.clear, c.at); id != c.wantID {
			t.Errorf("MatchSecret(%s at +%v) = %q, want %q", c.clear, c.at.Sub(t1), id, c.wantID)
		}
	}
	// A retry writes nothing; the same id with another hash is refused.
	doWrites(t, d, &accountpb.AddSecret{SecretId: "s2", Hash: secretHash("sbs_two"), By: "ops", OverlapS: 3600}, 0)
	rejects(t, d, &accountpb.AddSecret{SecretId: "s2", Hash: secretHash("sbs_other"), By: "ops"}, account.ReasonSecretExists, "s2")
	// After the overlap, the next addition drops the expired secret; with
	// overlap 0 the others stop at once.
	d.Advance(2 * time.Hour)
	a = doWrites(t, d, &accountpb.AddSecret{SecretId: "s3", Hash: secretHash("sbs_three"), By: "ops"}, 1)
	if len(a.GetSecrets()) != 2 || a.GetSecrets()[0].GetId() != "s2" || a.GetSecrets()[0].GetActive() ||
		a.GetSecrets()[0].GetNotAfterUnixMs() != d.Now.UnixMilli() || !a.GetSecrets()[1].GetActive() {
		t.Fatalf("after a rotation without overlap: %v", a.GetSecrets())
	}
	if _, ok := account.MatchSecret(a, "sbs_two", d.Now); ok {
		t.Fatal("a secret retired without overlap still works")
	}
	rejects(t, d, &accountpb.AddSecret{SecretId: "s4", Hash: secretHash("x"), By: "ops", OverlapS: 30*24*3600 + 1}, account.ReasonBadRequest, "overlap_s")
	rejects(t, d, &accountpb.AddSecret{SecretId: "S4", Hash: secretHash("x")[:16], By: "ops"}, account.ReasonBadRequest, "secret_id", "hash has 16 bytes", "by")
	d.Reactivate()
}

func TestSecretLimit(t *testing.T) {
	d := newDriver(t, "bot")
	do(t, d, createClient())
	for i := 2; i <= account.MaxActiveSecrets; i++ {
		doWrites(t, d, &accountpb.AddSecret{SecretId: fmt.Sprintf("s%d", i), Hash: secretHash(fmt.Sprint(i)), By: "ops", OverlapS: 60}, 1)
	}
	if n := d.State.ActiveSecrets(d.Now.UnixMilli()); n != account.MaxActiveSecrets {
		t.Fatalf("%d active", n)
	}
	rejects(t, d, &accountpb.AddSecret{SecretId: "s9", Hash: secretHash("9"), By: "ops", OverlapS: 60}, account.ReasonTooManySecrets, "at most 8")
	// A revoked secret no longer counts.
	doWrites(t, d, &accountpb.RevokeSecret{SecretId: "s3", By: "ops"}, 1)
	doWrites(t, d, &accountpb.AddSecret{SecretId: "s9", Hash: secretHash("9"), By: "ops", OverlapS: 60}, 1)
	rejects(t, d, &accountpb.AddSecret{SecretId: "s10", Hash: secretHash("10"), By: "ops", OverlapS: 60}, account.ReasonTooManySecrets)
	// Without overlap the others retire, so the limit is never in the way.
	a := doWrites(t, d, &accountpb.AddSecret{SecretId: "s10", Hash: secretHash("10"), By: "ops"}, 1)
	if n := d.State.ActiveSecrets(d.Now.UnixMilli()); n != 1 {
		t.Fatalf("%d active after a rotation without overlap: %v", n, a.GetSecrets())
	}
	// Once expired, they are dropped at the next addition.
	d.Advance(time.Millisecond)
	a = doWrites(t, d, &accountpb.AddSecret{SecretId: "s11", Hash: secretHash("11"), By: "ops", OverlapS: 60}, 1)
	if len(a.GetSecrets()) != 2 {
		t.Fatalf("expired secrets kept: %v", a.GetSecrets())
	}
	d.Reactivate()
}

func TestRevokeSecret(t *testing.T) {
	d := newDriver(t, "bot")
	do(t, d, createClient())
	d.Advance(time.Second)
	a := doWrites(t, d, &accountpb.RevokeSecret{SecretId: "s1", By: "ops"}, 1)
	s := a.GetSecrets()[0]
	if !s.GetRevoked() || s.GetActive() || s.GetNotAfterUnixMs() != d.Now.UnixMilli() || a.GetGeneration() != 1 {
		t.Fatalf("after revoke: %v", a)
	}
	if _, ok := account.MatchSecret(a, "sbs_one", t0); ok {
		t.Fatal("a revoked secret works (even at a time before its revocation)")
	}
	doWrites(t, d, &accountpb.RevokeSecret{SecretId: "s1", By: "ops"}, 0)
	rejects(t, d, &accountpb.RevokeSecret{SecretId: "s7", By: "ops"}, account.ReasonUnknownSecret, "s7")
	rejects(t, d, &accountpb.RevokeSecret{SecretId: "s1"}, account.ReasonBadRequest, "by")
	// A revoked id cannot be added again while listed.
	rejects(t, d, &accountpb.AddSecret{SecretId: "s1", Hash: secretHash("sbs_one"), By: "ops"}, account.ReasonSecretExists)
	d.Reactivate()
}

func TestSetRole(t *testing.T) {
	d := newDriver(t, "alice")
	do(t, d, createAdmin(t))
	a := doWrites(t, d, &accountpb.SetRole{Role: "super", By: "root"}, 1)
	if a.GetRole() != "super" || a.GetTenant() != "" || a.GetGeneration() != 2 {
		t.Fatalf("after SetRole: %v", a)
	}
	if ev := d.Log[len(d.Log)-1].(*accountpb.RoleChanged); ev.GetPreviousRole() != "tenant_admin" || ev.GetPreviousTenant() != "acme" {
		t.Fatalf("event %v", ev)
	}
	doWrites(t, d, &accountpb.SetRole{Role: "super", By: "root"}, 0)
	rejects(t, d, &accountpb.SetRole{Role: "supporter", By: "root"}, account.ReasonInvalidRole, "needs a tenant")
	rejects(t, d, &accountpb.SetRole{Role: "boss", By: "root"}, account.ReasonInvalidRole, "boss")
	rejects(t, d, &accountpb.SetRole{Role: "super"}, account.ReasonBadRequest, "by")
	a = doWrites(t, d, &accountpb.SetRole{Role: "auditor", Tenant: "acme", By: "root"}, 1)
	if a.GetGeneration() != 3 {
		t.Fatalf("generation %d", a.GetGeneration())
	}
	d.Reactivate()
}

func TestDisableEnable(t *testing.T) {
	d := newDriver(t, "alice")
	do(t, d, createAdmin(t))
	a := doWrites(t, d, &accountpb.Disable{By: "root", Reason: "left the company"}, 1)
	if !a.GetDisabled() || a.GetDisabledReason() != "left the company" || a.GetGeneration() != 2 {
		t.Fatalf("after Disable: %v", a)
	}
	doWrites(t, d, &accountpb.Disable{By: "root", Reason: "again"}, 0)
	rejects(t, d, &accountpb.Disable{By: "root", Reason: strings.Repeat("x", 257)}, account.ReasonBadRequest, "reason")
	a = doWrites(t, d, &accountpb.Enable{By: "root"}, 1)
	if a.GetDisabled() || a.GetDisabledReason() != "" || a.GetGeneration() != 2 {
		t.Fatalf("after Enable: %v", a)
	}
	doWrites(t, d, &accountpb.Enable{By: "root"}, 0)
	rejects(t, d, &accountpb.Enable{}, account.ReasonBadRequest, "by")
	// A disabled client's secrets do not match.
	c := newDriver(t, "bot")
	do(t, c, createClient())
	a = do(t, c, &accountpb.Disable{By: "root"})
	if _, ok := account.MatchSecret(a, "sbs_one", t0); ok {
		t.Fatal("a disabled client's secret works")
	}
	d.Reactivate()
	c.Reactivate()
}

func TestDelete(t *testing.T) {
	for _, create := range []*accountpb.Create{createAdmin(t), createClient()} {
		d := newDriver(t, "x")
		do(t, d, create)
		d.Advance(time.Second)
		a := doWrites(t, d, &accountpb.Delete{By: "root"}, 1)
		if !a.GetDeleted() || a.GetPasswordHash() != "" || len(a.GetSecrets()) != 0 || a.GetGeneration() != 2 ||
			a.GetUpdatedBy() != "root" || a.GetUpdatedAtUnixMs() != d.Now.UnixMilli() {
			t.Fatalf("after Delete: %v", a)
		}
		if _, ok := account.MatchSecret(a, "sbs_one", t0); ok {
			t.Fatal("a deleted client's secret works")
		}
		rejects(t, d, &accountpb.Delete{By: "root"}, account.ReasonNotFound)
		d.Reactivate()
	}
}

// The generation changes exactly with password changes, role changes,
// disables and deletes, and never goes back.
func TestGeneration(t *testing.T) {
	d := newDriver(t, "alice")
	steps := []struct {
		cmd  proto.Message
		bump bool
	}{
		{createAdmin(t), true}, // 0 → 1
		{&accountpb.Get{}, false},
		{&accountpb.ChangePassword{NewHash: pwHash(t, 1), By: "a"}, true},
		{&accountpb.SetRole{Role: "auditor", By: "a"}, true},
		{&accountpb.Disable{By: "a"}, true},
		{&accountpb.Enable{By: "a"}, false},
		{&accountpb.Delete{By: "a"}, true},
	}
	var gen uint64
	for _, s := range steps {
		do(t, d, s.cmd)
		got := d.State.Generation
		if s.bump && got != gen+1 || !s.bump && got != gen {
			t.Fatalf("%T: generation %d → %d", s.cmd, gen, got)
		}
		gen = got
	}
	d.Reactivate()
}

// Evolve counts every event for the version, even one it does not know.
func TestEvolveUnknownEvent(t *testing.T) {
	s := account.Evolve(account.Initial("x"), &accountpb.Get{})
	if s.Version != 1 || s.Status != account.Missing {
		t.Fatalf("state %+v", s)
	}
}
