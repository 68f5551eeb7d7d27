package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-io/switchboard/gateway/sessionclient"
	"github.com/switchboard-io/switchboard/internal/testlock"
)

// chromiumPath finds Debian's chromium (.ci/run installs it).
func chromiumPath() string {
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}

// TestConsoleInBrowser drives the console in headless chromium: log in with
// the one-time credential, change it, see a session a client opened appear
// live, end it, find it in the history and the audit log. With
// SB_TEST_SCREENSHOTS=DIR it saves the pages as PNG (docs/img).
func TestConsoleInBrowser(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		if os.Getenv("SB_TEST_REQUIRE_BROWSER") != "" {
			t.Fatal("chromium is missing: .ci/run installs it (apt-get install chromium)")
		}
		t.Skip("no chromium on this machine (apt-get install chromium)")
	}
	// Docker tests in other packages add and remove networks; chromium aborts
	// its requests when the host's network changes.
	testlock.Lock(t, testlock.HostNetwork)
	token := "sbh_browsertestbrowsertestbrowsertest"
	dataDir := t.TempDir()
	adminAddr, sessionAddr := freePort(t), freePort(t)
	args := []string{"--node-id", "c1", "--data-dir", dataDir, "--raft-bind", freePort(t), "--api-bind", freePort(t),
		"--http-bind", freePort(t), "--gossip-bind", freePort(t), "--actor-bind", freePort(t), "--session-bind", sessionAddr,
		"--admin-bind", adminAddr, "--session-host-tokens", "sam:" + token, "--log-level", "error"}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, args, nil, out) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	var password string
	deadline := time.Now().Add(30 * time.Second)
	for password == "" {
		if b, err := os.ReadFile(filepath.Join(dataDir, "admin-credential")); err == nil && strings.HasSuffix(string(b), "\n") {
			_, password, _ = strings.Cut(strings.TrimSpace(string(b)), ":")
		} else if time.Now().After(deadline) {
			t.Fatalf("no admin credential:\n%s", out.String())
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}

	shots := os.Getenv("SB_TEST_SCREENSHOTS")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.Flag("headless", true),
		chromedp.IgnoreCertErrors, chromedp.NoSandbox, chromedp.WindowSize(1280, 900))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx); err != nil { // starts the browser, bound to bctx
		t.Fatalf("start chromium: %v", err)
	}
	// step bounds one group of actions without closing the browser.
	step := func() context.Context {
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	base := "https://" + adminAddr
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if shots == "" {
				return nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	newPassword := "Browser-Tested-Passw0rd"
	if err := chromedp.Do(step(),
		chromedp.Navigate(base+"/sessions"),
		chromedp.WaitVisible(chromedp.CSS(`#password`)), // redirected to the login page
		shot("console-login"),
		chromedp.SendKeys(chromedp.CSS(`#name`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), password),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm`)), // the one-time password must be changed first
		chromedp.SendKeys(chromedp.CSS(`#old`), password),
		chromedp.SendKeys(chromedp.CSS(`#new`), newPassword),
		chromedp.SendKeys(chromedp.CSS(`#confirm`), newPassword),
		chromedp.Submit(chromedp.CSS(`#confirm`)),
		chromedp.WaitVisible(chromedp.CSS(`#live`)),
	); err != nil {
		t.Fatalf("login and password change: %v\npage: %s", err, pageText(bctx))
	}
	heading, err := chromedp.Run(step(), chromedp.Text(chromedp.CSS(`h1`)))
	if err != nil || heading != "Live sessions" {
		t.Fatalf("after the change the console shows %q", heading)
	}

	// A supporter opens a session through the session edge; the page, already
	// open, shows it without a reload (server-sent events).
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(dataDir, "tls", "switchboard-ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("cluster CA: %v", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	sess, err := sessionclient.Open(sctx, sessionclient.Config{Nodes: []string{sessionAddr}, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		sessionclient.OpenParams{Token: token, Name: "Sam Supporter"})
	if err != nil {
		t.Fatalf("open a session: %v", err)
	}
	defer sess.Close()
	code := sess.Code()
	row := `tr[data-code="` + code + `"]`
	if err := chromedp.Do(step(), chromedp.WaitVisible(chromedp.CSS(row)), shot("console-live-sessions")); err != nil {
		t.Fatalf("the session did not appear live: %v", err)
	}
	// End it from the console; the client learns it ended.
	if err := chromedp.Do(step(),
		chromedp.Click(chromedp.CSS(row+` button`)),
		chromedp.WaitVisible(chromedp.CSS(`p[role="status"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
	); err != nil {
		t.Fatalf("end the session: %v", err)
	}
	for {
		_, err := sess.Recv(sctx)
		var ended *sessionclient.EndedError
		if errors.As(err, &ended) {
			break
		}
		if err != nil && sctx.Err() != nil {
			t.Fatalf("the client did not learn the session ended: %v", err)
		}
	}
	var histText, auditText string
	if err := chromedp.Do(step(),
		chromedp.Navigate(base+"/history?user=sam"),
		chromedp.WaitVisible(chromedp.CSS(`table`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) (err error) {
			histText, err = chromedp.Text(chromedp.CSS(`main`))(ctx, tg)
			return err
		}),
		shot("console-history"),
		chromedp.Navigate(base+"/audit?stream=session/"+code),
		chromedp.WaitVisible(chromedp.CSS(`table.audit`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) (err error) {
			auditText, err = chromedp.Text(chromedp.CSS(`table.audit`))(ctx, tg)
			return err
		}),
		shot("console-audit"),
		chromedp.Navigate(base+"/cluster"),
		chromedp.WaitVisible(chromedp.CSS(`svg.chart`)),
		shot("console-cluster"),
	); err != nil {
		t.Fatalf("history and audit pages: %v", err)
	}
	if !strings.Contains(histText, code) || !strings.Contains(histText, "ended from the console") {
		t.Fatalf("history lacks the ended session:\n%s", histText)
	}
	if !strings.Contains(auditText, "switchboard.session.v1.Ended") || !strings.Contains(auditText, "user:admin") {
		t.Fatalf("audit log lacks the end by the administrator:\n%s", auditText)
	}
}

// pageText returns the current page's URL and text (for failure messages).
func pageText(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	txt, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(page unreadable: " + err.Error() + ")"
	}
	return txt
}
