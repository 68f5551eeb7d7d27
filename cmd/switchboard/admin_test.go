package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// adminNode runs one node in-process and returns its admin address, data
// dir and the first administrator's one-time password (from the file the
// node writes, mode 0600).
func adminNode(t *testing.T, extra ...string) (addr, dataDir, password string, out *syncBuffer) {
	t.Helper()
	dataDir = t.TempDir()
	addr = freePort(t)
	args := []string{"--node-id", "a1", "--data-dir", dataDir, "--raft-bind", freePort(t), "--api-bind", freePort(t),
		"--http-bind", freePort(t), "--gossip-bind", freePort(t), "--actor-bind", freePort(t), "--session-bind", freePort(t),
		"--admin-bind", addr, "--log-level", "error"}
	args = append(args, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, args, nil, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	cred := filepath.Join(dataDir, "admin-credential")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(cred)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			fi, _ := os.Stat(cred)
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("credential file mode %v", fi.Mode())
			}
			name, pw, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
			if name != "admin" {
				t.Fatalf("credential file names %q", name)
			}
			password = pw
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin credential; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for !strings.Contains(out.String(), password) {
		if time.Now().After(deadline) {
			t.Fatalf("the one-time password was not printed:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, dataDir, password, out
}

type cliResult struct {
	code           int
	stdout, stderr string
}

func runAdmin(t *testing.T, stdin string, env []string, args ...string) cliResult {
	t.Helper()
	var o, e bytes.Buffer
	code := adminCLI(context.Background(), args, strings.NewReader(stdin), &o, &e, env)
	return cliResult{code, o.String(), e.String()}
}

func TestAdminCLIWholeFlowAndExitCodes(t *testing.T) {
	addr, dataDir, pw, out := adminNode(t)
	if !strings.Contains(out.String(), "console: https://"+addr+"/") || !strings.Contains(out.String(), "SHA-256 fingerprint") {
		t.Fatalf("startup output lacks the console address or fingerprint:\n%s", out.String())
	}
	home := t.TempDir()
	env := []string{"HOME=" + home}
	base := []string{"--addr", addr, "--data-dir", dataDir}
	run := func(stdin string, args ...string) cliResult {
		return runAdmin(t, stdin, env, append(append([]string{}, base...), args...)...)
	}

	if r := run("", "cluster"); r.code != exitUnauthorized {
		t.Fatalf("before login: %+v", r)
	}
	if r := run("wrong-password-123\n", "login", "admin"); r.code != exitUnauthorized {
		t.Fatalf("wrong password: %+v", r)
	}
	if r := run(pw+"\n", "login", "admin"); r.code != exitOK || !strings.Contains(r.stdout, "one-time password") {
		t.Fatalf("login: %+v", r)
	}
	tok, err := os.Stat(filepath.Join(home, ".config", "switchboard", "admin-token"))
	if err != nil || tok.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", tok, err)
	}
	if r := run("", "cluster"); r.code != exitInvalid || !strings.Contains(r.stderr, "password change required") {
		t.Fatalf("before the change: %+v", r)
	}
	if r := run(pw+"\nshort\n", "password"); r.code != exitInvalid || !strings.Contains(r.stderr, "new_password") {
		t.Fatalf("weak password: %+v", r)
	}
	if r := run(pw+"\nSw1tchboard-Operator!\n", "password"); r.code != exitOK {
		t.Fatalf("password: %+v", r)
	}
	r := run("", "--output", "json", "cluster")
	var view struct {
		Node    string
		Members []struct{ Id, State string }
	}
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &view) != nil || view.Node != "a1" || len(view.Members) != 1 {
		t.Fatalf("cluster json: %+v", r)
	}
	if r := run("", "cluster"); r.code != exitOK || !strings.Contains(r.stdout, "members (1)") {
		t.Fatalf("cluster table: %+v", r)
	}
	// An auditor API client: reads, may not write.
	r = run("", "--output", "json", "accounts", "create", "robot", "--kind", "client", "--role", "auditor")
	var created struct{ Credential string }
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &created) != nil || !strings.HasPrefix(created.Credential, "sbs_") {
		t.Fatalf("create client: %+v", r)
	}
	robot := []string{"HOME=" + home, "SWITCHBOARD_ADMIN_SECRET=" + created.Credential}
	if r := runAdmin(t, "", robot, append(base, "--client", "robot", "audit", "--limit", "3")...); r.code != exitOK || !strings.Contains(r.stdout, "entries (3)") {
		t.Fatalf("client reads the audit log: %+v", r)
	}
	if r := runAdmin(t, "", robot, append(base, "--client", "robot", "accounts", "create", "x", "--kind", "admin", "--role", "auditor")...); r.code != exitDenied {
		t.Fatalf("client creates: %+v", r)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"accounts", "create", "robot", "--kind", "client", "--role", "auditor"}, exitConflict},
		{[]string{"sessions", "get", "123456789"}, exitNotFound},
		{[]string{"sessions", "get", "12"}, exitInvalid},
		{[]string{"accounts", "create", "Bad Name", "--kind", "robot", "--role", "god"}, exitInvalid},
		{[]string{"sessions", "frobnicate"}, exitUsage},
		{[]string{"sessions", "history", "--nope", "1"}, exitUsage},
		{[]string{"--output", "yaml", "cluster"}, exitUsage},
	} {
		if r := run("", c.args...); r.code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, r.code, c.code, r.stderr)
		}
	}
	if r := run("", "sessions", "history", "--from", "-1h", "--limit", "5"); r.code != exitOK || !strings.Contains(r.stdout, "total:") {
		t.Fatalf("history: %+v", r)
	}
	if r := run("", "projections", "rebuild", "audit", "--wait"); r.code != exitOK || !strings.Contains(r.stdout, "generation:") {
		t.Fatalf("rebuild: %+v", r)
	}
	// Wrong trust: a fingerprint that is not the node's.
	if r := runAdmin(t, "", env, "--addr", addr, "--fingerprint", strings.Repeat("00", 32), "cluster"); r.code != exitUnavailable && r.code != exitError {
		t.Fatalf("wrong fingerprint: %+v", r)
	}
	if r := run("", "logout"); r.code != exitOK {
		t.Fatal(r)
	}
	if r := run("", "whoami"); r.code != exitUnauthorized {
		t.Fatalf("after logout: %+v", r)
	}
}

// A session nobody is connected to any more ends when its expiry passes:
// the leader's sweep finds it in the sessions view (the idle timeout, at
// least 60 s, takes the same path: projections.TestDueSessions).
func TestExpiredSessionWithoutConnectionsIsEnded(t *testing.T) {
	token := "sbh_sweeptestsweeptestsweeptest"
	sessionAddr := freePort(t)
	addr, dataDir, pw, _ := adminNode(t, "--session-sweep-interval", "200ms", "--session-bind", sessionAddr,
		"--session-host-tokens", "sam:"+token)
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(dataDir, "tls", "switchboard-ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("cluster CA: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sess, err := sessionclient.Open(ctx, sessionclient.Config{Nodes: []string{sessionAddr}, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		sessionclient.OpenParams{Token: token, Name: "Sam", Limits: sessionclient.Limits{ExpiresAtUnixMs: time.Now().Add(2 * time.Second).UnixMilli()}})
	if err != nil {
		t.Fatal(err)
	}
	code := sess.Code()
	sess.Close() // gone without leaving or ending
	home := t.TempDir()
	env := []string{"HOME=" + home}
	base := []string{"--addr", addr, "--data-dir", dataDir}
	if r := runAdmin(t, pw+"\n", env, append(base, "login", "admin")...); r.code != exitOK {
		t.Fatal(r)
	}
	if r := runAdmin(t, pw+"\nSw1tchboard-Operator!\n", env, append(base, "password")...); r.code != exitOK {
		t.Fatal(r)
	}
	for {
		r := runAdmin(t, "", env, append(base, "--output", "json", "sessions", "get", code, "--consistent")...)
		var s struct {
			Live      bool
			EndReason string
			EndedBy   string
		}
		if r.code == exitOK && json.Unmarshal([]byte(r.stdout), &s) == nil && !s.Live {
			if s.EndReason != "expired" || s.EndedBy != "system" {
				t.Fatalf("ended as %+v, want expired by system", s)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the expired session was not ended: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A supporter opens a session with its API client credentials; the session
// belongs to its tenant: that tenant's administrator sees and may end it,
// another tenant's does not even see it.
func TestSupporterAccountOpensTenantSession(t *testing.T) {
	sessionAddr := freePort(t)
	addr, dataDir, pw, _ := adminNode(t, "--session-bind", sessionAddr, "--admin-logins-per-minute", "600")
	base := []string{"--addr", addr, "--data-dir", dataDir}
	type who struct{ env []string }
	login := func(name, password, newPassword string) who {
		t.Helper()
		w := who{[]string{"HOME=" + t.TempDir()}}
		if r := runAdmin(t, password+"\n", w.env, append(base, "login", name)...); r.code != exitOK {
			t.Fatalf("login %s: %+v", name, r)
		}
		if r := runAdmin(t, password+"\n"+newPassword+"\n", w.env, append(base, "password")...); r.code != exitOK {
			t.Fatalf("password %s: %+v", name, r)
		}
		return w
	}
	super := login("admin", pw, "Sw1tchboard-Operator!")
	create := func(args ...string) string {
		t.Helper()
		r := runAdmin(t, "", super.env, append(append(base, "--output", "json", "accounts", "create"), args...)...)
		var res struct{ Credential string }
		if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &res) != nil {
			t.Fatalf("create %v: %+v", args, r)
		}
		return res.Credential
	}
	secret := create("desk1", "--kind", "client", "--role", "supporter", "--tenant", "t1")
	ta1 := login("ta1", create("ta1", "--kind", "admin", "--role", "tenant_admin", "--tenant", "t1"), "Tenant-one-admin-99")
	ta2 := login("ta2", create("ta2", "--kind", "admin", "--role", "tenant_admin", "--tenant", "t2"), "Tenant-two-admin-99")

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(dataDir, "tls", "switchboard-ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("cluster CA: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := sessionclient.Config{Nodes: []string{sessionAddr}, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	if _, err := sessionclient.Open(ctx, cfg, sessionclient.OpenParams{Token: "desk1:sbs_wrong", Name: "Desk"}); err == nil {
		t.Fatal("a wrong client secret opened a session")
	}
	sess, err := sessionclient.Open(ctx, cfg, sessionclient.OpenParams{Token: "desk1:" + secret, Name: "Desk One"})
	if err != nil {
		t.Fatalf("open with the supporter's client credentials: %v", err)
	}
	defer sess.Close()
	code := sess.Code()
	r := runAdmin(t, "", ta1.env, append(base, "--output", "json", "sessions", "get", code, "--consistent")...)
	var s struct{ HostUser, Tenant string }
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &s) != nil || s.HostUser != "desk1" || s.Tenant != "t1" {
		t.Fatalf("tenant t1's administrator reads the session: %+v", r)
	}
	if r := runAdmin(t, "", ta2.env, append(base, "sessions", "get", code, "--consistent")...); r.code != exitNotFound {
		t.Fatalf("tenant t2's administrator: %+v", r)
	}
	if r := runAdmin(t, "", ta2.env, append(base, "--output", "json", "sessions", "history")...); r.code != exitOK || strings.Contains(r.stdout, code) {
		t.Fatalf("tenant t2's history: %+v", r)
	}
	if r := runAdmin(t, "", ta1.env, append(base, "sessions", "end", code, "--reason", "tenant admin")...); r.code != exitOK {
		t.Fatalf("tenant t1's administrator ends it: %+v", r)
	}
}

// admin.plaintext serves the console, the JSON API and gRPC (h2c) over
// plain HTTP, and only then.
func TestAdminPlaintextOnlyWhenAsked(t *testing.T) {
	addr, _, pw, out := adminNode(t, "--admin-plaintext")
	if !strings.Contains(out.String(), "console: http://"+addr+"/") {
		t.Fatalf("startup output:\n%s", out.String())
	}
	env := []string{"HOME=" + t.TempDir()}
	if r := runAdmin(t, pw+"\n", env, "--addr", addr, "--plaintext", "login", "admin"); r.code != exitOK {
		t.Fatalf("gRPC over h2c: %+v", r)
	}
	resp, err := http.Get("http://" + addr + "/login")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("console over http: %v %v", resp, err)
	}
	resp.Body.Close()
	// Without the key the same port speaks TLS only.
	tlsAddr, _, _, _ := adminNode(t)
	if resp, err := http.Get("http://" + tlsAddr + "/login"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Fatal("plain HTTP answered on a TLS admin port")
	}
}
