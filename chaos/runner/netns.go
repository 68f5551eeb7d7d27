package runner

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/internal/bench"
)

// netnsDriver runs every node as a process of the project's binary (as the
// process driver does: certificates, host token, logs, readiness, admin)
// inside a Linux network namespace of its own, joined by a veth pair to a
// bridge in the host with a private /24, so every node has an address of its
// own and the harness reaches them all from the host. Besides the process
// faults (kill, restart, pause) it can isolate a node, cut the links between
// pairs of nodes (halves, ring), drop packets (loss, oneway), and delay them
// (through a netfilter queue the harness serves), all with iptables inside
// the nodes' namespaces. Root only.
type netnsDriver struct {
	netProcDriver
	net    *bridgeNet
	delays delayers
}

var (
	_ Driver      = (*netnsDriver)(nil)
	_ Partitioner = (*netnsDriver)(nil)
	_ Shaper      = (*netnsDriver)(nil)
	_ Cutter      = (*netnsDriver)(nil)
	_ Disks       = (*netnsDriver)(nil)
	_ Admin       = (*netnsDriver)(nil)
)

// startNetns creates the bridge and a namespace per node and starts n nodes
// of binary in them. On failure everything created is removed again.
func startNetns(ctx context.Context, binary string, n int, dir string, extra []string, diskSize int64, log *slog.Logger) (_ *netnsDriver, err error) {
	if why := netProblem("netns", nemesis.Kill); why != "" {
		return nil, fmt.Errorf("netns driver: %s", why)
	}
	bn, err := newBridgeNet(log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if cerr := bn.close(); cerr != nil {
				log.Warn("netns driver: cleanup", "err", cerr)
			}
		}
	}()
	d := &netnsDriver{net: bn}
	co := bench.ClusterOptions{
		Host:    bn.ip,
		Prepare: func(nd *bench.LogNode) error { return bn.addNode(nodeIndex(nd.ID)) },
		Wrap: func(nd *bench.LogNode, path string, args []string) (string, []string) {
			// ip netns exec enters the namespace and execs the node: the
			// process keeps its pid, so signals reach the node.
			return "ip", append([]string{"netns", "exec", bn.ns(nodeIndex(nd.ID)), path}, args...)
		},
	}
	// The harness reaches the admin API from the host's bridge address.
	extra = append([]string{"--admin-trusted-networks", "127.0.0.0/8," + bn.prefix + ".1/32"}, extra...)
	pd, err := startProcess(ctx, binary, n, dir, extra, diskSize, co, log)
	if err != nil {
		return nil, fmt.Errorf("netns driver: %w", err)
	}
	d.netProcDriver = newNetProcDriver(pd, n, func() netOps { return d.faults() })
	return d, nil
}

// nodeIndex returns i for node "n<i+1>".
func nodeIndex(id string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(id, "n"))
	return i - 1
}

func (d *netnsDriver) faults() netFaults {
	return netFaults{exec: d.net.exec, ip: d.net.ip, n: d.nodes(), dev: "eth0", delays: &d.delays,
		netns: func(i int) (string, error) { return "/var/run/netns/" + d.net.ns(i), nil }}
}

// Stop stops the nodes, unmounts their disks and removes the namespaces,
// the bridge and the host's rule for it.
func (d *netnsDriver) Stop() error {
	var err error
	if d.processDriver != nil {
		err = d.processDriver.Stop()
	}
	return errors.Join(err, d.delays.stopAll(), d.net.close())
}

// bridgeNet is the netns driver's network: a bridge in the host with the
// address PREFIX.1/24, and per node a namespace ID-nI whose eth0 (PREFIX.1I,
// from 11 on) is one end of a veth pair; the other end (ID-nI in the host)
// is a port of the bridge. Names start with the run's id ("sbc" and four hex
// digits, interface names are at most 15 bytes); the bridge's alias names
// the process that owns it, so a later run can remove what a crashed one
// left (cleanStale).
type bridgeNet struct {
	id, prefix, bridge string
	log                *slog.Logger

	mu    sync.Mutex
	nodes []int // indexes of the namespaces created
}

// idPattern matches the names the netns driver gives (the id's part).
var idPattern = regexp.MustCompile(`^(sbc[0-9a-f]{4})-`)

const ownerAlias = "switchboard-chaos pid="

// forwardComment marks the host's FORWARD rule of a run.
func forwardComment(id string) string { return "switchboard-chaos-" + id }

func newBridgeNet(log *slog.Logger) (*bridgeNet, error) {
	cleanStale(log)
	b := &bridgeNet{log: log}
	for attempt := 0; ; attempt++ {
		b.id = fmt.Sprintf("sbc%04x", rand.IntN(1<<16))
		if _, err := os.Stat("/sys/class/net/" + b.id + "-br"); err != nil {
			break
		}
		if attempt == 20 {
			return nil, errors.New("netns driver: no free run id")
		}
	}
	b.bridge = b.id + "-br"
	// A /24 of 10.77.0.0/16 derived from the id, moved on while the host
	// already has an address in it.
	h := fnv.New32a()
	h.Write([]byte(b.id))
	used, _ := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	for k := range 250 {
		b.prefix = fmt.Sprintf("10.77.%d", 1+(int(h.Sum32())+k)%250)
		if !strings.Contains(string(used), " "+b.prefix+".") {
			break
		}
	}
	steps := [][]string{
		{"link", "add", b.bridge, "type", "bridge"},
		{"link", "set", "dev", b.bridge, "alias", ownerAlias + strconv.Itoa(os.Getpid())},
		{"addr", "add", b.prefix + ".1/24", "dev", b.bridge},
		{"link", "set", b.bridge, "up"},
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			_ = b.close()
			return nil, fmt.Errorf("netns driver: %w", err)
		}
	}
	// Docker's FORWARD policy (DROP) also applies to bridged packets when
	// br_netfilter is loaded: let the nodes talk across the bridge.
	if err := run("iptables", b.forwardRule("-I")...); err != nil {
		_ = b.close()
		return nil, fmt.Errorf("netns driver: %w", err)
	}
	log.Info("netns network", "bridge", b.bridge, "subnet", b.prefix+".0/24")
	return b, nil
}

func (b *bridgeNet) forwardRule(op string) []string {
	return []string{"-w", op, "FORWARD", "-i", b.bridge, "-o", b.bridge, "-m", "comment", "--comment", forwardComment(b.id), "-j", "ACCEPT"}
}

// ns names node i's namespace; ip its address.
func (b *bridgeNet) ns(i int) string { return fmt.Sprintf("%s-n%d", b.id, i+1) }
func (b *bridgeNet) ip(i int) string { return fmt.Sprintf("%s.%d", b.prefix, 11+i) }

// addNode creates node i's namespace and its link to the bridge.
func (b *bridgeNet) addNode(i int) error {
	if i < 0 || 11+i > 254 {
		return fmt.Errorf("netns driver: no address for node %d", i+1)
	}
	ns, host := b.ns(i), b.ns(i) // the host end of the veth is named as the namespace
	if err := run("ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("netns driver: %w", err)
	}
	b.mu.Lock()
	b.nodes = append(b.nodes, i)
	b.mu.Unlock()
	steps := [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", host + "p", "netns", ns},
		{"link", "set", host, "master", b.bridge, "up"},
		{"-n", ns, "link", "set", host + "p", "name", "eth0"},
		{"-n", ns, "addr", "add", b.ip(i) + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return fmt.Errorf("netns driver: %w", err)
		}
	}
	return nil
}

// exec runs a host tool (iptables, tc) in node i's namespace.
func (b *bridgeNet) exec(i int, args ...string) error {
	return run("ip", append([]string{"netns", "exec", b.ns(i)}, args...)...)
}

// close removes the namespaces (and with them the veth pairs), the bridge
// and the FORWARD rule. The nodes' processes must have exited.
func (b *bridgeNet) close() error {
	b.mu.Lock()
	nodes := b.nodes
	b.nodes = nil
	b.mu.Unlock()
	var errs []error
	for _, i := range nodes {
		if err := run("ip", "netns", "del", b.ns(i)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + b.bridge); err == nil {
		errs = append(errs, run("ip", "link", "del", b.bridge))
	}
	// The kernel destroys a namespace, and the veth pair with it, a moment
	// after its last reference is gone: wait, so nothing is left on return.
	deadline := time.Now().Add(10 * time.Second)
	for _, i := range nodes {
		for {
			if _, err := os.Stat("/sys/class/net/" + b.ns(i)); err != nil {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("the veth %s is still there 10 s after its namespace was deleted", b.ns(i)))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for run("iptables", b.forwardRule("-D")...) == nil {
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netns driver: cleanup: %w", err)
	}
	return nil
}

// cleanStale removes what earlier runs of the netns driver left behind when
// they crashed: namespaces, bridges (and their veths) and FORWARD rules
// whose id belongs to no bridge owned by a live process. Runs still going
// (their owner is alive, or their bridge has no alias yet) are left alone:
// several runs may share the host.
func cleanStale(log *slog.Logger) {
	live := map[string]bool{}
	var stale []string
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		m := idPattern.FindStringSubmatch(l.Name())
		if m == nil || l.Name() != m[1]+"-br" {
			continue
		}
		// A bridge without its alias yet belongs to a run that is
		// starting (the alias is set right after the bridge is made).
		alias, _ := os.ReadFile(filepath.Join("/sys/class/net", l.Name(), "ifalias"))
		owner, ok := strings.CutPrefix(strings.TrimSpace(string(alias)), ownerAlias)
		pid, err := strconv.Atoi(owner)
		if !ok || err != nil || pid == os.Getpid() || processAlive(pid) {
			live[m[1]] = true
			continue
		}
		stale = append(stale, l.Name())
	}
	removed := 0
	nss, _ := os.ReadDir("/run/netns")
	for _, ns := range nss {
		if m := idPattern.FindStringSubmatch(ns.Name()); m != nil && !live[m[1]] {
			if err := run("ip", "netns", "del", ns.Name()); err == nil {
				removed++
			}
		}
	}
	for _, l := range links {
		if m := idPattern.FindStringSubmatch(l.Name()); m != nil && !live[m[1]] {
			if err := run("ip", "link", "del", l.Name()); err == nil {
				removed++
			}
		}
	}
	if out, err := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			i := strings.Index(line, forwardComment(""))
			if !strings.HasPrefix(line, "-A FORWARD ") || i < 0 {
				continue
			}
			id := strings.Fields(line[i+len(forwardComment("")):])[0]
			if live[id] {
				continue
			}
			if err := run("iptables", append([]string{"-w", "-D"}, strings.Fields(line)[1:]...)...); err == nil {
				removed++
			}
		}
	}
	if removed > 0 || len(stale) > 0 {
		log.Info("netns driver: removed what crashed runs left", "items", removed, "bridges", stale)
	}
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}
