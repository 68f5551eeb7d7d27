package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionclient/sessiontest"
)

// lockedBuffer is a bytes.Buffer safe for one writer and polling readers
// (serve_test.go has a syncBuffer without Bytes).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *lockedBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// sessionProc is one `switchboard session ...` run in-process.
type sessionProc struct {
	stdout, stderr lockedBuffer
	done           chan error
}

func startSessionCmd(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) *sessionProc {
	t.Helper()
	p := &sessionProc{done: make(chan error, 1)}
	env := []string{"SWITCHBOARD_SESSION_TOKEN=" + sessiontest.DefaultHostToken}
	go func() { p.done <- sessionCmd(ctx, args, stdin, &p.stdout, &p.stderr, env) }()
	return p
}

func (p *sessionProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(d):
		t.Fatalf("command still running after %v; stderr:\n%s", d, p.stderr.String())
		return nil
	}
}

func waitOutput(t *testing.T, d time.Duration, what string, buf *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s to contain %q; it has:\n%s", what, want, buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type sessionInfo struct {
	Code   string `json:"code"`
	Secret string `json:"secret"`
}

// hostInfo waits for the JSON line of --output json.
func hostInfo(t *testing.T, p *sessionProc) sessionInfo {
	t.Helper()
	waitOutput(t, 10*time.Second, "the host's stdout", &p.stdout, "\n")
	line, _, _ := strings.Cut(p.stdout.String(), "\n")
	var info sessionInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil || info.Code == "" || info.Secret == "" {
		t.Fatalf("host's JSON line %q: %v", line, err)
	}
	return info
}

func sessionServer(t *testing.T, nodes int) (srv *sessiontest.Server, urls, caFile string) {
	t.Helper()
	srv, err := sessiontest.New(sessiontest.Options{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, srv.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, strings.Join(srv.URLs(), ","), caFile
}

// Line mode: each line is a frame, printed as "[id name] text"; at end of
// input the host ends the session and both commands exit cleanly.
func TestSessionCmdLines(t *testing.T) {
	_, urls, ca := sessionServer(t, 2)
	ctx := t.Context()
	hostIn, hostW := io.Pipe()
	guestIn, guestW := io.Pipe()
	t.Cleanup(func() { hostW.Close(); guestW.Close() })

	host := startSessionCmd(t, ctx, hostIn, "open", "--nodes", urls, "--ca", ca, "--name", "Alice", "--output", "json", "--wait-guests", "1")
	info := hostInfo(t, host)
	waitOutput(t, 5*time.Second, "the host's stderr", &host.stderr, "secret: "+info.Secret)
	guest := startSessionCmd(t, ctx, guestIn, "join", info.Code, "--secret", info.Secret, "--nodes", urls, "--ca", ca, "--name", "Bob")
	waitOutput(t, 10*time.Second, "the host's stderr", &host.stderr, "Bob (p2, guest) joined")

	if _, err := io.WriteString(hostW, "hello\n\nsecond line\n"); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, 10*time.Second, "the guest's stdout", &guest.stdout, "[p1 Alice] hello\n[p1 Alice] \n[p1 Alice] second line\n")
	if _, err := io.WriteString(guestW, "hi there\n"); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, 10*time.Second, "the host's stdout", &host.stdout, "[p2 Bob] hi there\n")

	hostW.Close()
	if err := host.wait(t, 10*time.Second); err != nil {
		t.Fatalf("host: %v\n%s", err, host.stderr.String())
	}
	if err := guest.wait(t, 10*time.Second); err != nil {
		t.Fatalf("guest: %v\n%s", err, guest.stderr.String())
	}
	if !strings.Contains(guest.stderr.String(), "session ended: host") {
		t.Errorf("guest's stderr:\n%s", guest.stderr.String())
	}
}

// A guest that reaches the end of its input leaves; the host sees it.
func TestSessionCmdGuestLeavesAtEndOfInput(t *testing.T) {
	_, urls, ca := sessionServer(t, 1)
	hostIn, hostW := io.Pipe()
	t.Cleanup(func() { hostW.Close() })
	host := startSessionCmd(t, t.Context(), hostIn, "open", "--nodes", urls, "--ca", ca, "--token", sessiontest.DefaultHostToken, "--output", "json")
	info := hostInfo(t, host)
	guest := startSessionCmd(t, t.Context(), strings.NewReader("last words"), "join", info.Code, "--secret", info.Secret, "--nodes", urls, "--ca", ca, "--name", "Bob")
	if err := guest.wait(t, 10*time.Second); err != nil {
		t.Fatalf("guest: %v\n%s", err, guest.stderr.String())
	}
	waitOutput(t, 10*time.Second, "the host's stdout", &host.stdout, "[p2 Bob] last words\n")
	waitOutput(t, 10*time.Second, "the host's stderr", &host.stderr, "Bob (p2, guest) left")
}

// --stream carries a 1 MiB random file byte for byte while the server
// keeps killing connections.
func TestSessionCmdStreamFileSurvivesKills(t *testing.T) {
	srv, urls, ca := sessionServer(t, 3)
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	host := startSessionCmd(t, ctx, bytes.NewReader(data), "open", "--stream", "--nodes", urls, "--ca", ca, "--output", "json",
		"--wait-guests", "1", "--max-frame-bytes", "1024", "--frames-per-second", "300")
	info := hostInfo(t, host)
	guest := startSessionCmd(t, ctx, strings.NewReader(""), "join", info.Code, "--secret", info.Secret, "--stream", "--wait-end", "--nodes", urls, "--ca", ca)

	stop := make(chan struct{})
	var killer sync.WaitGroup
	kills := 0
	killer.Go(func() {
		rng := mrand.New(mrand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(10+rng.IntN(30)) * time.Millisecond):
			}
			switch rng.IntN(3) {
			case 0:
				srv.KillParticipant(info.Code, "p1")
			case 1:
				srv.KillParticipant(info.Code, "p2")
			default:
				srv.KillNode(rng.IntN(3))
			}
			kills++
		}
	})
	errHost := host.wait(t, 60*time.Second)
	errGuest := guest.wait(t, 60*time.Second)
	close(stop)
	killer.Wait()
	if errHost != nil || errGuest != nil {
		t.Fatalf("host: %v\n%s\nguest: %v\n%s", errHost, host.stderr.String(), errGuest, guest.stderr.String())
	}
	got := guest.stdout.Bytes()
	t.Logf("%d kills during the transfer; %d bytes received", kills, len(got))
	if !bytes.Equal(got, data) {
		i := 0
		for i < len(got) && i < len(data) && got[i] == data[i] {
			i++
		}
		t.Fatalf("received %d bytes that differ from the %d sent from offset %d on\nguest stderr:\n%s", len(got), len(data), i, guest.stderr.String())
	}
	if kills == 0 {
		t.Error("nothing was killed during the transfer")
	}
}

func TestSessionCmdErrors(t *testing.T) {
	_, urls, ca := sessionServer(t, 1)
	ctx := t.Context()
	run := func(stdin string, env []string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := sessionCmd(ctx, args, strings.NewReader(stdin), &out, &errb, env)
		return errb.String(), err
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"open", "--nodes", urls, "--ca", ca}, "--token"},
		{[]string{"open"}, "--nodes is required"},
		{[]string{"join", "--nodes", urls}, "session code is required"},
		{[]string{"join", "123456789", "--nodes", urls}, "--secret is required"},
		{[]string{"open", "--nodes", urls, "--token", "x", "--output", "yaml"}, "--output"},
		{[]string{"open", "--nodes", urls, "--token", "wrong", "--ca", ca}, "unauthorized"},
		{[]string{"join", "123456789", "--secret", "s", "--nodes", urls, "--ca", ca}, "unknown_session"},
		{[]string{"open", "--nodes", urls, "--token", "x", "--ca", filepath.Join(t.TempDir(), "missing.pem")}, "--ca"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"open", "--nodes", "not a node", "--token", "x"}, "Nodes[0]"},
	} {
		_, err := run("", nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	// A wrong secret names the protocol's code.
	var hostOut, hostErr lockedBuffer
	hostIn, hostW := io.Pipe()
	t.Cleanup(func() { hostW.Close() })
	done := make(chan error, 1)
	go func() {
		done <- sessionCmd(ctx, []string{"open", "--nodes", urls, "--ca", ca, "--token", sessiontest.DefaultHostToken, "--output", "json"}, hostIn, &hostOut, &hostErr, nil)
	}()
	waitOutput(t, 10*time.Second, "the host's stdout", &hostOut, "\n")
	var info sessionInfo
	line, _, _ := strings.Cut(hostOut.String(), "\n")
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", nil, "join", info.Code, "--secret", "wrong", "--nodes", urls, "--ca", ca); err == nil || !strings.Contains(err.Error(), "bad_secret") {
		t.Errorf("wrong secret: %v", err)
	}
	hostW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// --insecure works and says so.
	stderr, err := run("", []string{"SWITCHBOARD_SESSION_TOKEN=" + sessiontest.DefaultHostToken}, "open", "--nodes", urls, "--insecure")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "--insecure") || !strings.Contains(stderr, "code: ") {
		t.Errorf("stderr with --insecure:\n%s", stderr)
	}
	// Without --ca the test CA is unknown: the certificate is refused.
	if _, err := run("", []string{"SWITCHBOARD_SESSION_TOKEN=x"}, "open", "--nodes", urls); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: %v", err)
	}
}
