// Package frozen imitates, for tests, what a frozen process (SIGSTOP, a VM
// pause) looks like to its peers over TCP: the kernel still accepts
// connections, and nobody ever reads from them or answers.
package frozen

import (
	"errors"
	"net"
	"sync"
)

// Listener accepts TCP connections and holds them, unread, until Close.
type Listener struct {
	ln   net.Listener
	mu   sync.Mutex
	held []net.Conn
	done chan struct{}
}

// Listen starts a Listener on addr ("127.0.0.1:0" for any free port).
func Listen(addr string) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Listener{ln: ln, done: make(chan struct{})}
	go l.accept()
	return l, nil
}

func (l *Listener) accept() {
	defer close(l.done)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		l.held = append(l.held, c)
		l.mu.Unlock()
	}
}

// Addr is the address the Listener accepts on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accepted is the number of connections accepted so far.
func (l *Listener) Accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// Close stops accepting and closes every held connection (the process
// thaws into a restart, or dies); the address is free again when it
// returns.
func (l *Listener) Close() error {
	err := l.ln.Close()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.held {
		err = errors.Join(err, c.Close())
	}
	l.held = nil
	return err
}
