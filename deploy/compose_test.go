package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/gateway/sessionclient"
	"github.com/switchboard-io/switchboard/internal/ports"
	"github.com/switchboard-io/switchboard/internal/testlock"
)

// composeNodes are the node services of compose.yaml.
var composeNodes = []string{"n1", "n2", "n3"}

// TestComposeCluster builds the image from this checkout, starts
// deploy/compose.yaml under a project of its own, and checks what docs/deploy.md
// promises: three nodes become ready, a session opens and relays a frame
// through the published ports with the CA and host token init wrote, and after
// the leader's container is killed the other two stay ready under a new leader.
// Everything it created (containers, network, volumes, image) is removed.
func TestComposeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Docker containers: skipped under -short")
	}
	compose := composeCommand(t)
	// Containers add and remove networks: no browser test may run meanwhile.
	testlock.Lock(t, testlock.HostNetwork)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	project := fmt.Sprintf("sbtest%d%04d", os.Getpid(), rand.IntN(10000))
	tag := "test-" + project
	buildImage(ctx, t, "switchboard:"+tag)
	t.Logf("image built after %v", time.Since(start).Round(time.Millisecond))

	published, err := ports.Free(3 * len(composeNodes))
	if err != nil {
		t.Fatal(err)
	}
	c := &composeProject{t: t, cmd: compose, project: project, env: []string{"SB_TAG=" + tag, "SB_PUBLISH=127.0.0.1"}}
	httpAddr, adminAddr := map[string]string{}, map[string]string{}
	var sessionAddrs []string
	for i, n := range composeNodes {
		session, http, admin := published[3*i], published[3*i+1], published[3*i+2]
		N := strings.ToUpper(n)
		c.env = append(c.env, fmt.Sprintf("SB_%s_SESSION=%d", N, session), fmt.Sprintf("SB_%s_HTTP=%d", N, http), fmt.Sprintf("SB_%s_ADMIN=%d", N, admin))
		sessionAddrs = append(sessionAddrs, fmt.Sprintf("127.0.0.1:%d", session))
		httpAddr[n] = fmt.Sprintf("127.0.0.1:%d", http)
		adminAddr[n] = fmt.Sprintf("127.0.0.1:%d", admin)
	}
	t.Cleanup(c.down)
	c.up(ctx)

	ready := func(nodes []string) error { return allReady(ctx, nodes, httpAddr) }
	if err := poll(ctx, 90*time.Second, func() error { return ready(composeNodes) }); err != nil {
		t.Fatalf("cluster not ready: %v", err)
	}
	t.Logf("three nodes ready after %v", time.Since(start).Round(time.Millisecond))

	// The credentials the init service wrote, as an operator gets them.
	n1 := c.containerID(ctx, "n1")
	caPEM := c.copyOut(ctx, n1, "/etc/switchboard/switchboard-ca.pem")
	token := strings.TrimSpace(string(c.copyOut(ctx, n1, "/etc/switchboard/host-token")))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("the CA file holds no certificate")
	}
	cfg := sessionclient.Config{Nodes: sessionAddrs, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		GiveUpAfter: 20 * time.Second}
	relay(ctx, t, cfg, token, "before the kill")

	// The admin port answers the Docker host (its connections arrive from
	// the network's gateway, which the compose file trusts).
	adminClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := poll(ctx, 30*time.Second, func() error {
		resp, err := adminClient.Get("https://" + adminAddr["n1"] + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("admin console: %s", resp.Status)
		}
		return nil
	}); err != nil {
		t.Errorf("admin console through the published port: %v", err)
	}

	var leader string
	if err := poll(ctx, 30*time.Second, func() (err error) { leader, err = leaderOf(ctx, composeNodes, httpAddr); return err }); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	c.run(ctx, "docker", "kill", c.containerID(ctx, leader))
	var rest []string
	for _, n := range composeNodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	var newLeader string
	err = poll(ctx, 30*time.Second, func() (err error) {
		if newLeader, err = leaderOf(ctx, rest, httpAddr); err != nil {
			return err
		}
		return ready(rest)
	})
	if err != nil {
		t.Fatalf("after killing the leader %s: %v", leader, err)
	}
	t.Logf("killed leader %s; %s leads and %v are ready after %v", leader, newLeader, rest, time.Since(killedAt).Round(time.Millisecond))
	relay(ctx, t, cfg, token, "after the kill")
	// Stay ready: a second look a little later still finds both ready.
	for range 5 {
		if err := ready(rest); err != nil {
			t.Fatalf("after the new leader: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("compose test took %v", time.Since(start).Round(time.Millisecond))
}

// composeCommand returns the compose command line (docker-compose v1 or the
// docker compose plugin), or skips the test when Docker is not usable.
func composeCommand(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := DockerUsable(ctx); err != nil {
		t.Skipf("%v: skipping the compose test", err)
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.CommandContext(ctx, "docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	t.Skip("neither docker compose nor docker-compose is installed: skipping the compose test")
	return nil
}

// buildImage builds the image of this checkout as ref and removes it when
// the test ends.
func buildImage(ctx context.Context, t *testing.T, ref string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if err := BuildImage(ctx, root, t.TempDir(), ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
}

// composeProject runs compose.yaml under one project name.
type composeProject struct {
	t       *testing.T
	cmd     []string
	project string
	env     []string
	netUsed string
}

// up starts the project on a /24 of its own: a random one of
// 172.28.100–249.0/24, another if Docker says it overlaps a network.
func (c *composeProject) up(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		c.netUsed = fmt.Sprintf("172.28.%d", 100+rand.IntN(150))
		out, err := c.compose(ctx, "up", "-d")
		if err == nil {
			return
		}
		if attempt < 4 && strings.Contains(string(out), "overlap") {
			c.compose(context.Background(), "down", "-v", "--timeout", "5")
			continue
		}
		c.t.Fatalf("compose up: %v\n%s", err, out)
	}
}

func (c *composeProject) compose(ctx context.Context, args ...string) ([]byte, error) {
	full := append(append(append([]string{}, c.cmd[1:]...), "-p", c.project, "-f", "compose.yaml"), args...)
	cmd := exec.CommandContext(ctx, c.cmd[0], full...)
	cmd.Env = append(append(os.Environ(), c.env...), "SB_NET="+c.netUsed)
	return cmd.CombinedOutput()
}

// down logs the nodes' output if the test failed, then removes the
// project's containers, network and volumes.
func (c *composeProject) down() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c.t.Failed() {
		out, _ := c.compose(ctx, "logs", "--no-color", "--tail", "40")
		c.t.Logf("compose logs:\n%s", out)
	}
	if out, err := c.compose(ctx, "down", "-v", "--timeout", "5"); err != nil {
		c.t.Errorf("compose down: %v\n%s", err, out)
	}
}

func (c *composeProject) containerID(ctx context.Context, service string) string {
	out, err := c.compose(ctx, "ps", "-q", service)
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" {
		c.t.Fatalf("no container for %s: %v\n%s", service, err, out)
	}
	return id
}

func (c *composeProject) run(ctx context.Context, name string, args ...string) {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// copyOut reads one file out of a container (docker cp writes a tar stream).
func (c *composeProject) copyOut(ctx context.Context, id, path string) []byte {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "cp", id+":"+path, "-")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("docker cp %s: %v\n%s", path, err, stderr.String())
	}
	tr := tar.NewReader(bytes.NewReader(out))
	if _, err := tr.Next(); err != nil {
		c.t.Fatalf("docker cp %s: %v", path, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		c.t.Fatalf("docker cp %s: %v", path, err)
	}
	return b
}

// relay opens a session as host, joins it as guest and checks that a durable
// frame from the host arrives at the guest; then ends it.
func relay(ctx context.Context, t *testing.T, cfg sessionclient.Config, token, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	host, err := sessionclient.Open(ctx, cfg, sessionclient.OpenParams{Token: token, Name: "Alice"})
	if err != nil {
		t.Fatalf("%s: open: %v", when, err)
	}
	defer host.Close()
	guest, err := sessionclient.Join(ctx, cfg, sessionclient.JoinParams{Session: host.Code(), Secret: host.JoinSecret(), Name: "Bob"})
	if err != nil {
		t.Fatalf("%s: join: %v", when, err)
	}
	defer guest.Close()
	payload := []byte("hello " + when)
	if err := host.Send(ctx, payload); err != nil {
		t.Fatalf("%s: send: %v", when, err)
	}
	for {
		m, err := guest.Recv(ctx)
		if err != nil {
			t.Fatalf("%s: guest recv: %v", when, err)
		}
		if m.Kind == sessionclient.Durable {
			if !bytes.Equal(m.Payload, payload) {
				t.Fatalf("%s: guest got %q, want %q", when, m.Payload, payload)
			}
			break
		}
	}
	if err := host.End(ctx, "test done"); err != nil {
		t.Errorf("%s: end: %v", when, err)
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// allReady is nil when every node's /readyz answers 200.
func allReady(ctx context.Context, nodes []string, httpAddr map[string]string) error {
	var errs []error
	for _, n := range nodes {
		status, body, err := get(ctx, "http://"+httpAddr[n]+"/readyz")
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		case status != http.StatusOK:
			errs = append(errs, fmt.Errorf("%s: %d %s", n, status, strings.TrimSpace(body)))
		}
	}
	return errors.Join(errs...)
}

// leaderOf returns the one node of nodes whose /metrics say it is the Raft
// leader; an error when none or several do.
func leaderOf(ctx context.Context, nodes []string, httpAddr map[string]string) (string, error) {
	var leaders []string
	for _, n := range nodes {
		status, body, err := get(ctx, "http://"+httpAddr[n]+"/metrics")
		if err != nil || status != http.StatusOK {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == `switchboard_raft_state{state="Leader"} 1` {
				leaders = append(leaders, n)
			}
		}
	}
	if len(leaders) != 1 {
		return "", fmt.Errorf("leaders among %v: %v", nodes, leaders)
	}
	return leaders[0], nil
}

// poll calls f until it returns nil or the timeout passes (then its last
// error is returned).
func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", timeout, err)
		case <-tick.C:
		}
	}
}
