package runner

import (
	"context"
	"errors"
	"sync"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
)

// netOps injects network faults on node i (and heals all of node i's): the
// netns driver's rules inside the nodes' namespaces (netFaults), the process
// driver's rules by cgroup on the host (hostNet).
type netOps interface {
	isolate(i int) error
	cut(pairs [][2]int) error
	shape(i int, k nemesis.Kind) error
	heal(i int) error
}

// netProcDriver is the process driver plus network faults through ops, and
// which nodes have one (a faulted node does not count as up).
type netProcDriver struct {
	*processDriver
	ops func() netOps

	mu                     sync.Mutex // the flags below
	isolated, shaped, cuts []bool
}

func newNetProcDriver(pd *processDriver, n int, ops func() netOps) netProcDriver {
	return netProcDriver{processDriver: pd, ops: ops, isolated: make([]bool, n), shaped: make([]bool, n), cuts: make([]bool, n)}
}

// nodes is how many nodes have flags.
func (d *netProcDriver) nodes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.isolated)
}

// mark sets one of node i's flags (also when the change failed halfway:
// healing removes what was set).
func (d *netProcDriver) mark(flags []bool, i int, v bool) {
	d.mu.Lock()
	flags[i] = v
	d.mu.Unlock()
}

// Isolate drops everything node i sends and receives, from the other nodes
// and from the clients alike.
func (d *netProcDriver) Isolate(i int) error {
	d.mark(d.isolated, i, true)
	return d.ops().isolate(i)
}

func (d *netProcDriver) Rejoin(i int) error {
	err := d.ops().heal(i)
	d.mark(d.isolated, i, false)
	return err
}

func (d *netProcDriver) Shape(i int, k nemesis.Kind) error {
	d.mark(d.shaped, i, true)
	return d.ops().shape(i, k)
}

func (d *netProcDriver) Unshape(i int) error {
	err := d.ops().heal(i)
	d.mark(d.shaped, i, false)
	return err
}

// Cut blocks the links between each pair of nodes, both ways; the clients
// still reach every node.
func (d *netProcDriver) Cut(pairs [][2]int) error {
	for _, p := range pairs {
		d.mark(d.cuts, p[0], true)
		d.mark(d.cuts, p[1], true)
	}
	return d.ops().cut(pairs)
}

// Mend removes every cut.
func (d *netProcDriver) Mend() error {
	var errs []error
	for i := range d.nodes() {
		d.mu.Lock()
		cut := d.cuts[i]
		d.mu.Unlock()
		if cut {
			errs = append(errs, d.ops().heal(i))
			d.mark(d.cuts, i, false)
		}
	}
	return errors.Join(errs...)
}

// AddNode starts a node (placed by the cluster starter's Prepare and Wrap)
// that joins the running cluster.
func (d *netProcDriver) AddNode(ctx context.Context) (int, error) {
	i, err := d.processDriver.AddNode(ctx)
	if err != nil {
		return -1, err
	}
	d.mu.Lock()
	for len(d.isolated) <= i {
		d.isolated, d.shaped, d.cuts = append(d.isolated, false), append(d.shaped, false), append(d.cuts, false)
	}
	d.mu.Unlock()
	return i, nil
}

func (d *netProcDriver) Up(i int) bool {
	d.mu.Lock()
	faulted := d.isolated[i] || d.shaped[i] || d.cuts[i]
	d.mu.Unlock()
	return !faulted && d.processDriver.Up(i)
}
