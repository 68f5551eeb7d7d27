package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ListenGossip binds memberlist's UDP+TCP transport on bindAddr (host:port,
// host an IP; port 0 picks a free port shared by UDP and TCP). Errors name
// the address. Start calls it when Config.Transport is nil; tests and the
// chaos harness call it to wrap the result (PausableTransport).
func ListenGossip(bindAddr string, logger *slog.Logger) (*memberlist.NetTransport, error) {
	if err := checkHostPort(bindAddr, true); err != nil {
		return nil, fmt.Errorf("membership: gossip.bind_addr: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	host, portStr, _ := net.SplitHostPort(bindAddr)
	port, _ := parsePort(portStr)
	cfg := &memberlist.NetTransportConfig{
		BindAddrs: []string{host},
		BindPort:  port,
		Logger:    newStdLogger(logger, logHooks{}),
	}
	// With port 0 the kernel picks the TCP port and UDP may find it taken:
	// retry a few times, as memberlist itself does.
	attempts := 1
	if port == 0 {
		attempts = 10
	}
	var err error
	for range attempts {
		var t *memberlist.NetTransport
		if t, err = memberlist.NewNetTransport(cfg); err == nil {
			return t, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("membership: cannot bind gossip address %s (UDP and TCP): %w", bindAddr, err)
}

// ErrTransportPaused is returned by a PausableTransport's dials while paused.
var ErrTransportPaused = errors.New("membership: gossip transport paused (injected fault)")

// maxHeldPackets bounds the packets a paused transport keeps for delivery on
// Resume, as a socket's receive buffer would.
const maxHeldPackets = 4096

// PausableTransport wraps a memberlist transport so that a test or the chaos
// harness can cut a node off the gossip network and reconnect it, the way a
// SIGSTOP'd process looks from outside, while its memberlist keeps running.
//
// While paused: outgoing packets are dropped (WriteTo reports success, as a
// send into a dead network does); dials fail at once with ErrTransportPaused;
// incoming stream connections are closed; incoming packets are held (up to
// 4096, later ones dropped) and handed to memberlist on Resume, as a stopped
// process finds its socket buffer full of datagrams when it resumes. Unlike a
// stopped process, the paused node's own failure detector keeps running, so
// it declares its peers dead too (a symmetric partition seen from one node).
type PausableTransport struct {
	inner    memberlist.NodeAwareTransport
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	closing  chan struct{} // closed when Shutdown starts: pumps drop instead of forwarding
	done     chan struct{} // closed once inner is shut down: pumps return
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu     sync.Mutex
	paused bool
	held   []*memberlist.Packet
	err    error // inner.Shutdown's result
}

var _ memberlist.NodeAwareTransport = (*PausableTransport)(nil)

// NewPausableTransport wraps inner (not paused) and takes ownership of it.
func NewPausableTransport(inner memberlist.NodeAwareTransport) *PausableTransport {
	t := &PausableTransport{
		inner:    inner,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.wg.Add(2)
	go t.pumpPackets()
	go t.pumpStreams()
	return t
}

// Pause cuts the node off until Resume.
func (t *PausableTransport) Pause() {
	t.mu.Lock()
	t.paused = true
	t.mu.Unlock()
}

// Resume reconnects the node and delivers the packets held while paused.
func (t *PausableTransport) Resume() {
	t.mu.Lock()
	t.paused = false
	held := t.held
	t.held = nil
	t.mu.Unlock()
	for _, p := range held {
		select {
		case t.packetCh <- p:
		case <-t.closing:
			return
		}
	}
}

// Paused reports whether the transport is paused.
func (t *PausableTransport) Paused() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.paused
}

// hold keeps p if paused and reports whether it did (or dropped it).
func (t *PausableTransport) hold(p *memberlist.Packet) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.paused {
		return false
	}
	if len(t.held) < maxHeldPackets {
		t.held = append(t.held, p)
	}
	return true
}

// The pumps keep draining inner's channels until inner is shut down (a
// NetTransport's listeners block on unbuffered sends, and its Shutdown waits
// for them); after Shutdown started they drop what they read.
func (t *PausableTransport) pumpPackets() {
	defer t.wg.Done()
	for {
		select {
		case <-t.done:
			return
		case p := <-t.inner.PacketCh():
			if p == nil || t.hold(p) {
				continue
			}
			select {
			case t.packetCh <- p:
			case <-t.closing:
			}
		}
	}
}

func (t *PausableTransport) pumpStreams() {
	defer t.wg.Done()
	for {
		select {
		case <-t.done:
			return
		case c := <-t.inner.StreamCh():
			if c == nil {
				continue
			}
			if t.Paused() {
				_ = c.Close()
				continue
			}
			select {
			case t.streamCh <- c:
			case <-t.closing:
				_ = c.Close()
			}
		}
	}
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *PausableTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo implements memberlist.Transport.
func (t *PausableTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.Paused() {
		return time.Now(), nil
	}
	return t.inner.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *PausableTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if t.Paused() {
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, addr)
}

// PacketCh implements memberlist.Transport.
func (t *PausableTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *PausableTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.Paused() {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrTransportPaused)
	}
	return t.inner.DialTimeout(addr, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *PausableTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.Paused() {
		return nil, fmt.Errorf("dial %s: %w", addr.String(), ErrTransportPaused)
	}
	return t.inner.DialAddressTimeout(addr, timeout)
}

// StreamCh implements memberlist.Transport.
func (t *PausableTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport; it is idempotent.
func (t *PausableTransport) Shutdown() error {
	t.stopOnce.Do(func() {
		close(t.closing)
		err := t.inner.Shutdown()
		close(t.done)
		t.wg.Wait()
		t.mu.Lock()
		t.err = err
		t.mu.Unlock()
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}
