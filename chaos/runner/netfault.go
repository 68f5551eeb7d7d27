package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
)

// netFaults injects network faults with iptables inside the nodes' network
// namespaces, where nothing else sets rules: the docker driver enters a
// container's namespace with nsenter, the netns driver runs ip netns exec.
// Every rule goes into the INPUT and OUTPUT chains of the filter table;
// healing flushes both. Delay sends what a node sends to a netfilter queue
// that a delayer of the harness serves (chaos/pktdelay: no netem needed).
type netFaults struct {
	// exec runs a host tool (iptables) in node i's network namespace.
	exec func(i int, args ...string) error
	// netns returns the path of node i's network namespace; delays holds
	// the delayers running.
	netns  func(i int) (string, error)
	delays *delayers
	// ip returns node i's address.
	ip func(i int) string
	// n is the number of nodes; dev the nodes' interface (eth0).
	n   int
	dev string
}

// Cutter is a driver that can cut the links between pairs of nodes, both
// ways, while every node stays reachable from the clients (the halves and
// ring partitions). Mend removes every cut.
type Cutter interface {
	Cut(pairs [][2]int) error
	Mend() error
}

// netProblem says why this process cannot inject fault k with driver
// ("docker" or "netns") ("" when it can): the rules need root and
// iptables (docker: also nsenter); delay also needs the NFQUEUE target and
// netfilter queues (delayProblem).
func netProblem(driver string, k nemesis.Kind) string {
	how := "it changes a container's network namespace with nsenter"
	tools := []string{"nsenter", "iptables"}
	if driver == "netns" {
		how, tools = "it creates network namespaces, a bridge and iptables rules", []string{"ip", "iptables"}
	}
	if os.Geteuid() != 0 {
		return "needs root (" + how + ")"
	}
	if k == nemesis.Delay {
		tools = append(tools, "unshare")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return "needs " + tool
		}
	}
	if k == nemesis.Delay {
		return delayProblem()
	}
	return ""
}

// shape degrades node i's network: a delay of 150 ± 50 ms on every packet
// it sends (order kept), loss of 30% of what it sends, or a one-way
// partition (it drops what it receives from the other nodes, which still
// hear it).
func (f netFaults) shape(i int, k nemesis.Kind) error {
	switch k {
	case nemesis.Delay:
		ns, err := f.netns(i)
		if err != nil {
			return err
		}
		// The delayer first: the rule's --queue-bypass lets packets pass
		// while no delayer is bound, but a bound queue must be there to
		// hold them.
		if err := f.delays.start(i, ns); err != nil {
			return err
		}
		return f.exec(i, "iptables", "-w", "-A", "OUTPUT", "-o", f.dev, "-j", "NFQUEUE",
			"--queue-num", strconv.Itoa(delayQueue), "--queue-bypass")
	case nemesis.Loss:
		// iptables' statistic match rather than netem: it needs no
		// kernel module beyond what Docker itself uses.
		return f.exec(i, "iptables", "-w", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP")
	case nemesis.OneWay:
		for j := range f.n {
			if j != i {
				if err := f.exec(i, "iptables", "-w", "-A", "INPUT", "-s", f.ip(j), "-j", "DROP"); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return fmt.Errorf("cannot shape the network with %s", k)
}

// isolate drops everything node i sends or receives on its interface.
func (f netFaults) isolate(i int) error {
	if err := f.exec(i, "iptables", "-w", "-A", "INPUT", "-i", f.dev, "-j", "DROP"); err != nil {
		return err
	}
	return f.exec(i, "iptables", "-w", "-A", "OUTPUT", "-o", f.dev, "-j", "DROP")
}

// cut blocks each pair both ways: each side drops what comes from and goes
// to the other's address.
func (f netFaults) cut(pairs [][2]int) error {
	for _, p := range pairs {
		for _, s := range [][2]int{p, {p[1], p[0]}} {
			if err := f.exec(s[0], "iptables", "-w", "-A", "INPUT", "-s", f.ip(s[1]), "-j", "DROP"); err != nil {
				return err
			}
			if err := f.exec(s[0], "iptables", "-w", "-A", "OUTPUT", "-d", f.ip(s[1]), "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

// heal removes every rule of node i, then lets go of the packets its
// delayer (if any) still holds.
func (f netFaults) heal(i int) error {
	var errs []error
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		if err := f.exec(i, "iptables", "-w", "-F", chain); err != nil {
			errs = append(errs, err)
		}
	}
	if f.delays != nil {
		errs = append(errs, f.delays.stop(i))
	}
	return errors.Join(errs...)
}

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
