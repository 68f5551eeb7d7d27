package admin

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/switchboard-io/switchboard/actors/account"
	"github.com/switchboard-io/switchboard/actors/account/accountpb"
	"github.com/switchboard-io/switchboard/actors/entity"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
	"github.com/switchboard-io/switchboard/projections"
)

// FirstAdmin is the name of the administrator created at the first start.
const FirstAdmin = "admin"

// Bootstrap creates the first administrator (super, must change its
// password at first login) when the cluster has never had one. It returns
// the one-time password only to the node that created the account (it is
// also written to credFile, readable only by the owner); otherwise "".
// There is no default password: the credential is random and shown once.
func (s *Server) Bootstrap(ctx context.Context, credFile string) (password string, err error) {
	views := s.b.Views()
	if err := views.Consistent(ctx, projections.AccountsName); err != nil {
		return "", fmt.Errorf("admin: bootstrap: %w", err)
	}
	if _, found, err := views.Account(FirstAdmin); err != nil || found {
		return "", err
	}
	pw := sbauth.NewOneTimePassword()
	hash, err := sbauth.HashPassword(pw, s.cfg.PasswordParams)
	if err != nil {
		return "", fmt.Errorf("admin: bootstrap: %w", err)
	}
	_, err = s.b.Call(ctx, account.Kind, FirstAdmin, &accountpb.Create{Kind: sbauth.KindAdmin, Role: string(sbauth.Super),
		PasswordHash: hash, MustChangePassword: true, By: projections.SystemActor})
	var ee *entity.Error
	if errors.As(err, &ee) && ee.Reason == account.ReasonExists {
		return "", nil // another node created it
	}
	if err != nil {
		return "", fmt.Errorf("admin: bootstrap: create %q: %w", FirstAdmin, err)
	}
	if credFile != "" {
		_ = os.Remove(credFile) // a file from an older cluster in the same data dir
		if err := sbauth.WriteSecretFile(credFile, []byte(FirstAdmin+":"+pw+"\n")); err != nil {
			s.log.Warn("cannot write the one-time admin credential file (it is printed once)", "file", credFile, "err", err)
		}
	}
	if err := views.Consistent(ctx, projections.AccountsName); err != nil {
		return pw, fmt.Errorf("admin: bootstrap: %w", err)
	}
	return pw, nil
}
