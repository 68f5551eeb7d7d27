package projections

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/gateway/auth"
)

// AccountsName is the name of the accounts projection.
const AccountsName = "accounts"

// Accounts folds the streams "account/<name>" with the account core's own
// Evolve into one row per account (hashes included: the gateway
// authenticates every request from this node-local row).
//
// Rows:
//
//	n <name>               → accountpb.Account (as of its last event)
//	t <tenant> 0x00 <name> →
type Accounts struct{}

// Name implements Projection.
func (Accounts) Name() string { return AccountsName }

// Version implements Projection.
func (Accounts) Version() uint32 { return 1 }

const accountPrefix = account.Kind + "/"

// Apply implements Projection.
func (Accounts) Apply(w *Writer, evs []events.RecordedEvent) error {
	for _, ev := range evs {
		name, ok := strings.CutPrefix(ev.Stream, accountPrefix)
		if !ok {
			continue
		}
		msg, err := decodeEvent(ev)
		if err != nil {
			w.Skip(ev, err)
			continue
		}
		st := account.Initial(name)
		var before *accountpb.Account
		if v, found, err := w.Get(accountKey(name)); err != nil {
			return err
		} else if found {
			before = &accountpb.Account{}
			if err := proto.Unmarshal(v, before); err != nil {
				w.Skip(ev, fmt.Errorf("account row %s: %w", name, err))
				continue
			}
			st = stateFromView(before)
		}
		st = account.Evolve(st, msg)
		after := account.View(st, timeOf(ev))
		v, err := proto.Marshal(after)
		if err != nil {
			return err
		}
		if err := w.Set(accountKey(name), v); err != nil {
			return err
		}
		if before != nil && before.GetTenant() != after.GetTenant() {
			if err := w.Delete(tenantKey(before.GetTenant(), name)); err != nil {
				return err
			}
		}
		if err := w.Set(tenantKey(after.GetTenant(), name), nil); err != nil {
			return err
		}
	}
	return nil
}

// stateFromView rebuilds the core's state from a stored row (the row is
// account.View of that state, which keeps every field).
func stateFromView(a *accountpb.Account) account.State {
	s := account.State{Name: a.GetName(), Version: a.GetVersion(), Status: account.Live,
		Kind: a.GetKind(), Role: auth.Role(a.GetRole()), Tenant: a.GetTenant(), PasswordHash: a.GetPasswordHash(),
		MustChangePassword: a.GetMustChangePassword(), Generation: a.GetGeneration(), Disabled: a.GetDisabled(),
		DisabledReason: a.GetDisabledReason(), CreatedAt: a.GetCreatedAtUnixMs(), CreatedBy: a.GetCreatedBy(),
		UpdatedAt: a.GetUpdatedAtUnixMs(), UpdatedBy: a.GetUpdatedBy()}
	if a.GetDeleted() {
		s.Status = account.Deleted
	}
	for _, x := range a.GetSecrets() {
		s.Secrets = append(s.Secrets, account.Secret{ID: x.GetId(), Hash: bytes.Clone(x.GetHash()), AddedAt: x.GetAddedAtUnixMs(),
			AddedBy: x.GetAddedBy(), NotAfter: x.GetNotAfterUnixMs(), Revoked: x.GetRevoked()})
	}
	return s
}

func accountKey(name string) []byte { return append([]byte{'n'}, name...) }

func tenantKey(tenant, name string) []byte {
	return append(append(append([]byte{'t'}, tenant...), 0), name...)
}

// Account returns the row of one account.
func (e *Engine) Account(name string) (a *accountpb.Account, found bool, err error) {
	if !auth.ValidName(name) {
		return nil, false, fmt.Errorf("%w: %q is not an account name", ErrBadQuery, name)
	}
	err = e.View(AccountsName, func(r *Reader) error {
		v, ok, err := r.Get(accountKey(name))
		if err != nil || !ok {
			return err
		}
		a = &accountpb.Account{}
		if err := proto.Unmarshal(v, a); err != nil {
			return fmt.Errorf("projections: account row %s: %w", name, err)
		}
		found = true
		return nil
	})
	return a, found, err
}

// Accounts lists the accounts (of one tenant when tenantOnly), in name
// order; deleted ones only with includeDeleted.
func (e *Engine) Accounts(tenant string, tenantOnly, includeDeleted bool) ([]*accountpb.Account, error) {
	var out []*accountpb.Account
	err := e.View(AccountsName, func(r *Reader) error {
		add := func(v []byte) error {
			a := &accountpb.Account{}
			if err := proto.Unmarshal(v, a); err != nil {
				return fmt.Errorf("projections: account row: %w", err)
			}
			if includeDeleted || !a.GetDeleted() {
				out = append(out, a)
			}
			return nil
		}
		if !tenantOnly {
			return r.ScanPrefix([]byte{'n'}, false, func(_, v []byte) (bool, error) { return true, add(v) })
		}
		p := append(append([]byte{'t'}, tenant...), 0)
		return r.ScanPrefix(p, false, func(k, _ []byte) (bool, error) {
			v, ok, err := r.Get(accountKey(string(k[len(p):])))
			if err != nil || !ok {
				return err == nil, err
			}
			return true, add(v)
		})
	})
	return out, err
}

// decodeEvent decodes an event whose type is a protobuf message linked into
// the binary.
func decodeEvent(ev events.RecordedEvent) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(ev.Type))
	if err != nil {
		return nil, fmt.Errorf("event type %q: %w", ev.Type, err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(ev.Data, m); err != nil {
		return nil, fmt.Errorf("event %q: %w", ev.Type, err)
	}
	return m, nil
}

// byActor is the audit actor of an event with a "by" field naming an
// account (or "system").
func byActor(ev events.RecordedEvent) (string, error) {
	m, err := decodeEvent(ev)
	if err != nil {
		return "", err
	}
	by, _ := m.(interface{ GetBy() string })
	if by == nil || by.GetBy() == "" {
		return "", nil
	}
	if by.GetBy() == SystemActor {
		return SystemActor, nil
	}
	return UserActor(by.GetBy()), nil
}

func init() {
	for _, m := range []proto.Message{&accountpb.Created{}, &accountpb.PasswordChanged{}, &accountpb.SecretAdded{},
		&accountpb.SecretRevoked{}, &accountpb.RoleChanged{}, &accountpb.Disabled{}, &accountpb.Enabled{}, &accountpb.Deleted{}} {
		RegisterActor(string(proto.MessageName(m)), byActor)
	}
}

func timeOf(ev events.RecordedEvent) time.Time { return time.Unix(0, ev.Time) }
