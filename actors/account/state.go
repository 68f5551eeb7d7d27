package account

import (
	"bytes"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/gateway/auth"
)

// Status is the life-cycle stage of an account.
type Status int

const (
	// Missing: the stream holds no Created event.
	Missing Status = iota
	// Live: created and not deleted (it may be disabled).
	Live
	// Deleted: deleted for good; the name is not reused.
	Deleted
)

// String returns "missing", "live" or "deleted".
func (s Status) String() string {
	switch s {
	case Missing:
		return "missing"
	case Live:
		return "live"
	case Deleted:
		return "deleted"
	}
	return "unknown"
}

// Secret is one API client secret as stored.
type Secret struct {
	ID      string
	Hash    []byte // SHA-256 of the clear secret; never modified once stored
	AddedAt int64  // Unix ms
	AddedBy string
	// NotAfter is the Unix ms from which the secret is refused; 0 = none.
	NotAfter int64
	Revoked  bool
}

// ActiveAt reports whether the secret is usable at Unix ms t.
func (s Secret) ActiveAt(t int64) bool { return !s.Revoked && (s.NotAfter == 0 || t < s.NotAfter) }

// State is the state of one account stream. It is a value: Evolve returns a
// new State and never modifies the one it is given (the secrets slice is
// copied on write, hashes are never modified once stored).
type State struct {
	Name    string // the entity id
	Version uint64 // events applied: the stream's version
	Status  Status

	Kind               string // auth.KindAdmin or auth.KindClient
	Role               auth.Role
	Tenant             string
	PasswordHash       string // admin: argon2id PHC string
	MustChangePassword bool
	Secrets            []Secret // client: in the order added
	// Generation starts at 1 and increases with every password change,
	// role change, disable and delete.
	Generation     uint64
	Disabled       bool
	DisabledReason string
	CreatedAt      int64 // Unix ms
	CreatedBy      string
	UpdatedAt      int64 // Unix ms of the latest event
	UpdatedBy      string
}

// Initial is the state of an account whose stream is empty.
func Initial(name string) State { return State{Name: name} }

// secret returns the index of secret id, or -1.
func (s *State) secret(id string) int {
	return slices.IndexFunc(s.Secrets, func(x Secret) bool { return x.ID == id })
}

// ActiveSecrets counts the secrets usable at Unix ms t.
func (s State) ActiveSecrets(t int64) int {
	n := 0
	for _, x := range s.Secrets {
		if x.ActiveAt(t) {
			n++
		}
	}
	return n
}

func secretOf(m *accountpb.Secret) Secret {
	return Secret{ID: m.GetId(), Hash: bytes.Clone(m.GetHash()), AddedAt: m.GetAddedAtUnixMs(),
		AddedBy: m.GetAddedBy(), NotAfter: m.GetNotAfterUnixMs(), Revoked: m.GetRevoked()}
}

// Evolve applies one event and returns the new state; s itself is left
// unchanged. Every event counts for the version, known or not.
func Evolve(s State, ev proto.Message) State {
	s.Version++
	touch := func(by string, at int64) { s.UpdatedBy, s.UpdatedAt = by, at }
	switch e := ev.(type) {
	case *accountpb.Created:
		s.Status = Live
		s.Kind, s.Role, s.Tenant = e.GetKind(), auth.Role(e.GetRole()), e.GetTenant()
		s.PasswordHash, s.MustChangePassword = e.GetPasswordHash(), e.GetMustChangePassword()
		s.Secrets = nil
		if e.GetSecret() != nil {
			s.Secrets = []Secret{secretOf(e.GetSecret())}
		}
		s.Generation = 1
		s.CreatedBy, s.CreatedAt = e.GetBy(), e.GetAtUnixMs()
		touch(e.GetBy(), e.GetAtUnixMs())
	case *accountpb.PasswordChanged:
		s.PasswordHash, s.MustChangePassword = e.GetHash(), e.GetMustChangePassword()
		s.Generation++
		touch(e.GetBy(), e.GetAtUnixMs())
	case *accountpb.SecretAdded:
		// Drop the secrets that no longer work, end the others at the
		// overlap's end, add the new one.
		at, end := e.GetAtUnixMs(), e.GetOthersNotAfterUnixMs()
		kept := make([]Secret, 0, len(s.Secrets)+1)
		for _, x := range s.Secrets {
			if !x.ActiveAt(at) {
				continue
			}
			if x.NotAfter == 0 || x.NotAfter > end {
				x.NotAfter = end
			}
			kept = append(kept, x)
		}
		s.Secrets = append(kept, secretOf(e.GetSecret()))
		touch(e.GetBy(), at)
	case *accountpb.SecretRevoked:
		if i := s.secret(e.GetSecretId()); i >= 0 {
			at := e.GetAtUnixMs()
			s.Secrets = slices.Clone(s.Secrets)
			x := &s.Secrets[i]
			x.Revoked = true
			if x.NotAfter == 0 || x.NotAfter > at {
				x.NotAfter = at
			}
		}
		touch(e.GetBy(), e.GetAtUnixMs())
	case *accountpb.RoleChanged:
		s.Role, s.Tenant = auth.Role(e.GetRole()), e.GetTenant()
		s.Generation++
		touch(e.GetBy(), e.GetAtUnixMs())
	case *accountpb.Disabled:
		s.Disabled, s.DisabledReason = true, e.GetReason()
		s.Generation++
		touch(e.GetBy(), e.GetAtUnixMs())
	case *accountpb.Enabled:
		s.Disabled, s.DisabledReason = false, ""
		touch(e.GetBy(), e.GetAtUnixMs())
	case *accountpb.Deleted:
		s.Status = Deleted
		s.PasswordHash, s.Secrets, s.MustChangePassword = "", nil, false
		s.Generation++
		touch(e.GetBy(), e.GetAtUnixMs())
	}
	return s
}
