package account_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/entity/entitytest"
	"github.com/switchboard-io/switchboard/gateway/auth"
)

var t0 = time.UnixMilli(1_800_000_000_000)

type driver = entitytest.Driver[account.State]

// newDriver returns a driver for account name whose checks include deep
// copies of the state (so a core that modified a stored secret would fail).
func newDriver(t testing.TB, name string) *driver {
	d := entitytest.New(t, account.Spec(), name, t0)
	d.Clone, d.Equal = clone, equal
	d.StateVersion = func(s account.State) uint64 { return s.Version }
	return d
}

func clone(s account.State) account.State {
	c := s
	c.Secrets = slices.Clone(s.Secrets)
	for i := range c.Secrets {
		c.Secrets[i].Hash = bytes.Clone(c.Secrets[i].Hash)
	}
	return c
}

func equal(a, b account.State) bool {
	if len(a.Secrets) == 0 && len(b.Secrets) == 0 {
		a.Secrets, b.Secrets = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

var (
	hashOnce sync.Once
	hashes   []string
)

// pwHash returns one of a few argon2id hashes (TestParams) made once.
func pwHash(t testing.TB, i int) string {
	hashOnce.Do(func() {
		for _, pw := range []string{"first password 1", "second password 2", "third password 3"} {
			h, err := auth.HashPassword(pw, auth.TestParams)
			if err != nil {
				panic(err)
			}
			hashes = append(hashes, h)
		}
	})
	return hashes[i]
}

func secretHash(clear string) []byte { return auth.HashSecret(clear) }

func createAdmin(t testing.TB) *accountpb.Create {
	return &accountpb.Create{Kind: auth.KindAdmin, Role: string(auth.TenantAdmin), Tenant: "acme",
		PasswordHash: pwHash(t, 0), MustChangePassword: true, By: "root"}
}

func createClient() *accountpb.Create {
	return &accountpb.Create{Kind: auth.KindClient, Role: string(auth.Supporter), Tenant: "acme",
		SecretId: "s1", SecretHash: secretHash("sbs_one"), By: "root"}
}

func do(t testing.TB, d *driver, cmd proto.Message) *accountpb.Account {
	t.Helper()
	r, _, err := d.Do(cmd)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return r.(*accountpb.Account)
}

// doWrites runs cmd and checks that it wrote n events.
func doWrites(t testing.TB, d *driver, cmd proto.Message, n int) *accountpb.Account {
	t.Helper()
	v := d.Version()
	a := do(t, d, cmd)
	if got := int(d.Version() - v); got != n {
		t.Fatalf("%T wrote %d events, want %d", cmd, got, n)
	}
	return a
}

func reasonOf(err error) string {
	var r *entity.Rejection
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// rejects checks that cmd is rejected with reason, that the message
// mentions every string in mention, and that nothing was written.
func rejects(t testing.TB, d *driver, cmd proto.Message, reason string, mention ...string) {
	t.Helper()
	v, before := d.Version(), clone(d.State)
	_, _, err := d.Do(cmd)
	if got := reasonOf(err); got != reason {
		t.Fatalf("%T: reason %q (err %v), want %q", cmd, got, err, reason)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%T: message %q does not mention %q", cmd, err, m)
		}
	}
	if d.Version() != v || !equal(before, d.State) {
		t.Fatalf("%T: a rejected command changed something", cmd)
	}
}
