package account_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/gateway/auth"
)

type byteReader struct {
	b []byte
	i int
}

func (r *byteReader) next() byte {
	r.i++
	if r.i > len(r.b) {
		return 0
	}
	return r.b[r.i-1]
}

func (r *byteReader) done() bool { return r.i >= len(r.b) }

func (r *byteReader) by() string { return []string{"root", "ops", ""}[r.next()%3] }

func (r *byteReader) secretID() string { return fmt.Sprintf("s%d", r.next()%12) }

func (r *byteReader) secretHash() []byte {
	if r.next()%16 == 0 {
		return []byte("short")
	}
	return secretHash(fmt.Sprint(r.next() % 4))
}

// role returns a role and tenant, now and then an invalid pair.
func (r *byteReader) role() (string, string) {
	roles := []string{"super", "tenant_admin", "supporter", "auditor", "boss"}
	tenants := []string{"", "acme", "globex", "Bad"}
	return roles[r.next()%5], tenants[r.next()%4]
}

func (r *byteReader) command(t testing.TB) proto.Message {
	switch r.next() % 11 {
	case 0:
		role, tenant := r.role()
		c := &accountpb.Create{Kind: auth.KindAdmin, Role: role, Tenant: tenant, PasswordHash: pwHash(t, int(r.next()%3)),
			MustChangePassword: r.next()%2 == 0, By: r.by()}
		if r.next()%2 == 0 {
			c = &accountpb.Create{Kind: auth.KindClient, Role: role, Tenant: tenant, SecretId: r.secretID(), SecretHash: r.secretHash(), By: r.by()}
		}
		if r.next()%8 == 0 {
			c.PasswordHash, c.SecretId = pwHash(t, 0), "s1" // both credentials
		}
		return c
	case 1:
		return &accountpb.ChangePassword{NewHash: pwHash(t, int(r.next()%3)), By: r.by(), ClearMustChange: r.next()%2 == 0, RequireChange: r.next()%3 == 0}
	case 2, 3:
		return &accountpb.AddSecret{SecretId: r.secretID(), Hash: r.secretHash(), By: r.by(), OverlapS: []uint32{0, 60, 3600, 1 << 30}[r.next()%4]}
	case 4:
		return &accountpb.RevokeSecret{SecretId: r.secretID(), By: r.by()}
	case 5:
		role, tenant := r.role()
		return &accountpb.SetRole{Role: role, Tenant: tenant, By: r.by()}
	case 6:
		return &accountpb.Disable{By: r.by(), Reason: "fuzz"}
	case 7:
		return &accountpb.Enable{By: r.by()}
	case 8:
		if r.next()%4 == 0 {
			return &accountpb.Delete{By: r.by()}
		}
		return &accountpb.Get{}
	case 9:
		return &accountpb.Secret{} // not a command
	default:
		return &accountpb.Get{}
	}
}

// bumps counts the events that raise the generation.
func bumps(evs []proto.Message) uint64 {
	n := uint64(0)
	for _, ev := range evs {
		switch ev.(type) {
		case *accountpb.Created, *accountpb.PasswordChanged, *accountpb.RoleChanged, *accountpb.Disabled, *accountpb.Deleted:
			n++
		}
	}
	return n
}

// FuzzDecide feeds command sequences built from the fuzz bytes through the
// core as the shell would (the driver checks purity, versions, encoding and
// replay), moving the clock and reactivating now and then, and checks that
// nothing panics, every rejection has a documented reason, the generation
// moves exactly with the events that must raise it, the kind's credentials
// stay apart, roles stay valid, secret ids stay unique and no more than
// MaxActiveSecrets are active.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 0, 1, 0, 0, 2, 2, 1, 1, 1, 0, 2, 0, 3, 1, 5, 0, 2, 2, 0, 6, 0, 8, 0})
	f.Add([]byte{0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 5, 0, 0, 0, 6, 1, 7, 1, 8, 0, 0})
	f.Add([]byte{0, 3, 2, 3, 0, 1, 0, 1, 0, 0, 2, 0, 3, 2, 1, 1, 2, 0, 4, 1, 2, 4, 5, 1, 3, 2, 4, 0, 5, 0, 0, 2, 3, 6, 1, 4, 5, 0})
	valid := map[string]bool{}
	for _, r := range account.Reasons {
		valid[r] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDriver(t, "acct")
		r := &byteReader{b: data}
		for steps := 0; !r.done() && steps < 300; steps++ {
			switch b := r.next(); b % 8 {
			case 0:
				d.Reactivate()
			case 1:
				d.Advance(time.Duration(b) * time.Minute)
			}
			cmd := r.command(t)
			gen, v := d.State.Generation, d.Version()
			_, _, err := d.Do(cmd)
			if err != nil {
				if !valid[reasonOf(err)] {
					t.Fatalf("%T rejected without a documented reason: %v", cmd, err)
				}
				continue
			}
			evs := d.Log[v:]
			want := gen + bumps(evs)
			if _, ok := cmd.(*accountpb.Create); ok && len(evs) > 0 {
				want = 1
			}
			if d.State.Generation != want {
				t.Fatalf("%T: generation %d → %d, events %v", cmd, gen, d.State.Generation, evs)
			}
			checkInvariants(t, d)
		}
		d.Reactivate()
	})
}

func checkInvariants(t *testing.T, d *driver) {
	t.Helper()
	s := d.State
	switch s.Status {
	case account.Missing:
		if s.Generation != 0 || s.Kind != "" {
			t.Fatalf("missing account with state %+v", s)
		}
		return
	case account.Deleted:
		if s.PasswordHash != "" || len(s.Secrets) != 0 {
			t.Fatalf("deleted account keeps credentials: %+v", s)
		}
		return
	}
	if err := s.Role.Check(s.Tenant); err != nil {
		t.Fatalf("live account with an invalid role: %v", err)
	}
	switch s.Kind {
	case auth.KindAdmin:
		if len(s.Secrets) != 0 {
			t.Fatalf("admin with secrets: %+v", s.Secrets)
		}
		if _, err := auth.CheckHash(s.PasswordHash); err != nil {
			t.Fatalf("admin without a password hash: %v", err)
		}
	case auth.KindClient:
		if s.PasswordHash != "" || s.MustChangePassword {
			t.Fatalf("client with a password: %+v", s)
		}
		ids := map[string]bool{}
		for _, x := range s.Secrets {
			if ids[x.ID] || len(x.Hash) != auth.SecretHashLen {
				t.Fatalf("secrets %+v", s.Secrets)
			}
			ids[x.ID] = true
		}
		if n := s.ActiveSecrets(d.Now.UnixMilli()); n > account.MaxActiveSecrets {
			t.Fatalf("%d active secrets", n)
		}
		if !slices.IsSortedFunc(s.Secrets, func(a, b account.Secret) int { return int(a.AddedAt - b.AddedAt) }) {
			t.Fatalf("secrets out of order: %+v", s.Secrets)
		}
	default:
		t.Fatalf("live account of kind %q", s.Kind)
	}
}
