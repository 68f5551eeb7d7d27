package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
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

// hostNetDriver is the process driver with network faults (root only): the
// nodes share the host's loopback, so each runs in a cgroup (v2) of its own
// and iptables' cgroup match tells its packets from the others'. The rules
// live in chains of the run (SBCXXXX, jumped to from the filter table's
// OUTPUT, and one chain per node jumped to from it), so that healing node i
// flushes its chain and stopping removes everything. All rules act where a
// packet is sent, which on loopback is also where it is received:
//
//   - isolate i: drop what i sends, and what anyone else sends to i's ports;
//   - cut a–b: drop what a sends to b's ports and b to a's (every connection
//     has one end on a listening port, so both directions die);
//   - loss: drop 30% of what i sends (statistic match);
//   - oneway: drop what the other nodes send to i's ports, and what they send
//     on connections i opened (marked by a CONNMARK rule from the start);
//   - delay: hand what i sends to netfilter queue 4242+i, served by a
//     delayer in the harness (chaos/pktdelay).
type hostNetDriver struct {
	netProcDriver
	host *hostNet
}

var (
	_ Driver      = (*hostNetDriver)(nil)
	_ Partitioner = (*hostNetDriver)(nil)
	_ Shaper      = (*hostNetDriver)(nil)
	_ Cutter      = (*hostNetDriver)(nil)
	_ Members     = (*hostNetDriver)(nil)
)

// startHostNet starts n node processes, each in a cgroup of its own, with
// the run's chains in place.
func startHostNet(ctx context.Context, binary string, n int, dir string, extra []string, diskSize int64, log *slog.Logger) (_ *hostNetDriver, err error) {
	if why := hostNetProblem(nemesis.Isolate); why != "" {
		return nil, fmt.Errorf("process driver: network faults %s", why)
	}
	h, err := newHostNet(log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if cerr := h.close(); cerr != nil {
				log.Warn("process driver: network cleanup", "err", cerr)
			}
		}
	}()
	co := bench.ClusterOptions{
		Prepare: func(nd *bench.LogNode) error { return h.addNode(nodeIndex(nd.ID), nd) },
		Wrap: func(nd *bench.LogNode, path string, args []string) (string, []string) {
			// The shell joins the node's cgroup, then execs the node: every
			// socket it opens is the cgroup's, and it keeps the pid.
			return "/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`,
				filepath.Join(h.cgroupDir(nodeIndex(nd.ID)), "cgroup.procs"), path}, args...)
		},
	}
	pd, err := startProcess(ctx, binary, n, dir, extra, diskSize, co, log)
	if err != nil {
		return nil, err
	}
	return &hostNetDriver{netProcDriver: newNetProcDriver(pd, n, func() netOps { return h }), host: h}, nil
}

// Stop stops the nodes, then removes the chains, the delayers and the
// cgroups.
func (d *hostNetDriver) Stop() error {
	return errors.Join(d.processDriver.Stop(), d.host.close())
}

// hostNetProblem says why the process driver cannot inject network fault k
// here ("" when it can): root, iptables, a cgroup v2 hierarchy, and for
// delay netfilter queues.
func hostNetProblem(k nemesis.Kind) string {
	if os.Geteuid() != 0 {
		return "needs root (iptables rules and a cgroup per node): use --driver netns or docker, or run as root"
	}
	for _, tool := range []string{"iptables", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "needs " + tool
		}
	}
	if _, err := cgroup2Root(); err != nil {
		return "needs " + err.Error()
	}
	if err := run("unshare", "-n", "iptables", "-w", "-A", "OUTPUT", "-m", "cgroup", "--path", "/", "-j", "ACCEPT"); err != nil {
		return "needs the iptables cgroup match: " + err.Error()
	}
	if k == nemesis.Delay {
		return delayProblem()
	}
	return ""
}

// cgroup2Root finds where the cgroup v2 hierarchy is mounted.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("a cgroup v2 hierarchy: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		for j, fl := range fields {
			if fl == "-" && j+1 < len(fields) && fields[j+1] == "cgroup2" && fields[3] == "/" {
				return fields[4], nil
			}
		}
	}
	return "", errors.New("a cgroup v2 hierarchy mounted (none in /proc/self/mountinfo)")
}

// hostNet is the process driver's network-fault state: the run's id (also
// its chain's name, upper case), its cgroup directory, the nodes' ports, and
// the delayers.
type hostNet struct {
	id, chain, cgRoot, cg string
	log                   *slog.Logger
	delays                delayers

	mu    sync.Mutex
	ports map[int][]int // node index → its ports (TCP and UDP alike)
}

// hostOwner is the comment on the run's OUTPUT jump: the harness's pid
// follows, so a later run can remove what a crashed one left.
const hostOwner = "switchboard-chaos-pid-"

var (
	hostChainPattern  = regexp.MustCompile(`^SBC[0-9a-f]{4}$`)
	hostCgroupPattern = regexp.MustCompile(`^sbc[0-9a-f]{4}$`)
)

func newHostNet(log *slog.Logger) (*hostNet, error) {
	root, err := cgroup2Root()
	if err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	cleanStaleHost(root, log)
	h := &hostNet{cgRoot: root, log: log, ports: map[int][]int{}}
	for attempt := 0; ; attempt++ {
		h.id = fmt.Sprintf("sbc%04x", rand.IntN(1<<16))
		h.chain = "SBC" + h.id[3:]
		if _, err := os.Stat(filepath.Join(root, h.id)); err != nil && run("iptables", "-w", "-n", "-L", h.chain) != nil {
			break
		}
		if attempt == 20 {
			return nil, errors.New("process driver: no free run id")
		}
	}
	h.cg = filepath.Join(root, h.id)
	// The jump names the owner first: a run starting meanwhile then leaves
	// the cgroup alone.
	steps := [][]string{
		{"-w", "-N", h.chain},
		{"-w", "-I", "OUTPUT", "-m", "comment", "--comment", hostOwner + strconv.Itoa(os.Getpid()), "-j", h.chain},
	}
	for _, s := range steps {
		if err := run("iptables", s...); err != nil {
			_ = h.close()
			return nil, fmt.Errorf("process driver: %w", err)
		}
	}
	if err := os.Mkdir(h.cg, 0o755); err != nil {
		_ = h.close()
		return nil, fmt.Errorf("process driver: cgroup: %w", err)
	}
	log.Info("process driver network faults", "chain", h.chain, "cgroup", h.cg)
	return h, nil
}

func (h *hostNet) cgroupDir(i int) string { return filepath.Join(h.cg, fmt.Sprintf("n%d", i+1)) }

// cgroupPath is node i's cgroup as iptables' cgroup match names it.
func (h *hostNet) cgroupPath(i int) string { return h.id + fmt.Sprintf("/n%d", i+1) }

func (h *hostNet) nodeChain(i int) string { return fmt.Sprintf("%s-N%d", h.chain, i+1) }

// connMark marks the connections node i opens (the oneway fault drops what
// the other nodes send on them).
func connMark(i int) string { return fmt.Sprintf("0x%x", 0x5bc00+i) }

// addNode makes node i's cgroup and chain, remembers its ports and marks
// the connections it opens.
func (h *hostNet) addNode(i int, nd *bench.LogNode) error {
	var ports []int
	for _, addr := range []string{nd.RaftAddr, nd.APIAddr, nd.HTTPAddr, nd.GossipAddr, nd.ActorAddr, nd.SessionAddr, nd.AdminAddr} {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("process driver: node %s address %q: %w", nd.ID, addr, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("process driver: node %s port %q: %w", nd.ID, p, err)
		}
		ports = append(ports, n)
	}
	if err := os.Mkdir(h.cgroupDir(i), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("process driver: cgroup: %w", err)
	}
	h.mu.Lock()
	h.ports[i] = ports
	h.mu.Unlock()
	steps := [][]string{
		{"-w", "-N", h.nodeChain(i)},
		{"-w", "-A", h.chain, "-j", h.nodeChain(i)},
		{"-w", "-A", h.chain, "-m", "cgroup", "--path", h.cgroupPath(i), "-m", "conntrack", "--ctstate", "NEW",
			"-j", "CONNMARK", "--set-mark", connMark(i)},
	}
	for _, s := range steps {
		if err := run("iptables", s...); err != nil {
			return fmt.Errorf("process driver: %w", err)
		}
	}
	return nil
}

// portList is node i's ports as multiport wants them.
func (h *hostNet) portList(i int) (string, error) {
	h.mu.Lock()
	ports, ok := h.ports[i]
	h.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("process driver: no node %d", i+1)
	}
	s := make([]string, len(ports))
	for k, p := range ports {
		s[k] = strconv.Itoa(p)
	}
	return strings.Join(s, ","), nil
}

// add appends a rule to node i's chain, once for TCP and once for UDP when
// toPorts names a node whose ports the rule matches (-1: any destination).
func (h *hostNet) add(i, toPorts int, match ...string) error {
	if toPorts < 0 {
		return run("iptables", append([]string{"-w", "-A", h.nodeChain(i)}, match...)...)
	}
	ports, err := h.portList(toPorts)
	if err != nil {
		return err
	}
	for _, proto := range []string{"tcp", "udp"} {
		args := append([]string{"-w", "-A", h.nodeChain(i), "-p", proto, "-m", "multiport", "--dports", ports}, match...)
		if err := run("iptables", args...); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostNet) isolate(i int) error {
	from := []string{"-m", "cgroup", "--path", h.cgroupPath(i)}
	if err := h.add(i, -1, append(from, "-j", "DROP")...); err != nil {
		return err
	}
	return h.add(i, i, "-m", "cgroup", "!", "--path", h.cgroupPath(i), "-j", "DROP")
}

func (h *hostNet) cut(pairs [][2]int) error {
	for _, p := range pairs {
		for _, s := range [][2]int{p, {p[1], p[0]}} {
			if err := h.add(s[0], s[1], "-m", "cgroup", "--path", h.cgroupPath(s[0]), "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *hostNet) shape(i int, k nemesis.Kind) error {
	from := []string{"-m", "cgroup", "--path", h.cgroupPath(i)}
	switch k {
	case nemesis.Delay:
		q := delayQueue + i
		if err := h.delays.startQueue(i, "", uint16(q)); err != nil {
			return err
		}
		return h.add(i, -1, append(from, "-j", "NFQUEUE", "--queue-num", strconv.Itoa(q), "--queue-bypass")...)
	case nemesis.Loss:
		return h.add(i, -1, append(from, "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP")...)
	case nemesis.OneWay:
		h.mu.Lock()
		var others []int
		for j := range h.ports {
			if j != i {
				others = append(others, j)
			}
		}
		h.mu.Unlock()
		for _, j := range others {
			if err := h.add(i, i, "-m", "cgroup", "--path", h.cgroupPath(j), "-j", "DROP"); err != nil {
				return err
			}
			if err := h.add(i, -1, "-m", "cgroup", "--path", h.cgroupPath(j), "-m", "connmark", "--mark", connMark(i), "-j", "DROP"); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("cannot shape the network with %s", k)
}

// heal flushes node i's chain, then lets go of what its delayer holds.
func (h *hostNet) heal(i int) error {
	return errors.Join(run("iptables", "-w", "-F", h.nodeChain(i)), h.delays.stop(i))
}

// close removes the run's jump, chains and cgroups and stops the delayers;
// the nodes must have exited (a cgroup with a process cannot be removed).
func (h *hostNet) close() error {
	errs := []error{h.delays.stopAll()}
	errs = append(errs, removeHostChains(h.chain, hostOwner+strconv.Itoa(os.Getpid())))
	errs = append(errs, removeCgroups(h.cg))
	return errors.Join(errs...)
}

// removeHostChains deletes the OUTPUT jump with comment owner to chain, then
// chain and its node chains.
func removeHostChains(chain, owner string) error {
	var errs []error
	if err := run("iptables", "-w", "-D", "OUTPUT", "-m", "comment", "--comment", owner, "-j", chain); err != nil &&
		!strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "No chain") && !strings.Contains(err.Error(), "Bad rule") {
		errs = append(errs, err)
	}
	out, _ := exec.Command("iptables", "-w", "-S").Output()
	var chains []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "-N "); ok && (name == chain || strings.HasPrefix(name, chain+"-")) {
			chains = append(chains, name)
		}
	}
	for _, c := range chains {
		errs = append(errs, run("iptables", "-w", "-F", c))
	}
	for _, c := range chains {
		errs = append(errs, run("iptables", "-w", "-X", c))
	}
	return errors.Join(errs...)
}

// removeCgroups kills whatever still runs in dir's child cgroups (nodes a
// crashed run left), then removes them and dir.
func removeCgroups(dir string) error {
	var errs []error
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		child := filepath.Join(dir, e.Name())
		if procs, _ := os.ReadFile(filepath.Join(child, "cgroup.procs")); len(strings.TrimSpace(string(procs))) > 0 {
			_ = os.WriteFile(filepath.Join(child, "cgroup.kill"), []byte("1"), 0o644)
			waitEmpty(child)
		}
		if err := os.Remove(child); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// waitEmpty waits up to 5 s for cgroup dir to hold no process.
func waitEmpty(dir string) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ev, _ := os.ReadFile(filepath.Join(dir, "cgroup.events")); strings.Contains(string(ev), "populated 0") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanStaleHost removes what runs whose harness is gone left: their
// chains (OUTPUT jumps whose owner comment names a dead pid), their cgroups
// (every sbcXXXX cgroup no live run owns), and the nodes still running in
// them.
func cleanStaleHost(cgRoot string, log *slog.Logger) {
	out, _ := exec.Command("iptables", "-w", "-S", "OUTPUT").Output()
	live := map[string]bool{}
	removed := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var owner, chain string
		for k := 0; k+1 < len(f); k++ {
			switch f[k] {
			case "--comment":
				owner = strings.Trim(f[k+1], `"`)
			case "-j":
				chain = f[k+1]
			}
		}
		pidStr, ok := strings.CutPrefix(owner, hostOwner)
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || !hostChainPattern.MatchString(chain) {
			continue
		}
		if pid == os.Getpid() || processAlive(pid) {
			live["sbc"+chain[3:]] = true
			continue
		}
		if err := removeHostChains(chain, owner); err != nil {
			log.Warn("process driver: stale chains", "chain", chain, "err", err)
		}
		removed++
	}
	dirs, _ := os.ReadDir(cgRoot)
	for _, e := range dirs {
		if e.IsDir() && hostCgroupPattern.MatchString(e.Name()) && !live[e.Name()] {
			if err := removeCgroups(filepath.Join(cgRoot, e.Name())); err != nil {
				log.Warn("process driver: stale cgroups", "cgroup", e.Name(), "err", err)
			}
			removed++
		}
	}
	if removed > 0 {
		log.Info("process driver: removed what crashed runs left", "chains_and_cgroups", removed)
	}
}
