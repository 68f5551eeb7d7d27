package admin

import (
	"net"
	"testing"
	"time"
)

func TestTrustedListenerDropsOtherNetworks(t *testing.T) {
	if _, err := ParseNetworks([]string{"10.0.0.0/8", "nope", "1.2.3.4"}); err == nil {
		t.Fatal("bad CIDRs accepted")
	}
	for _, c := range []struct {
		nets   []string
		accept bool
	}{{[]string{"10.0.0.0/8"}, false}, {[]string{"10.0.0.0/8", "127.0.0.0/8"}, true}} {
		nets, err := ParseNetworks(c.nets)
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tl := TrustedListener(l, nets, quiet)
		accepted := make(chan net.Conn, 1)
		go func() {
			if conn, err := tl.Accept(); err == nil {
				accepted <- conn
			}
		}()
		conn, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if c.accept {
			select {
			case a := <-accepted:
				a.Close()
			case <-time.After(5 * time.Second):
				t.Fatalf("%v: connection from 127.0.0.1 not accepted", c.nets)
			}
		} else {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatalf("%v: read from a refused connection", c.nets)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%v: refused connection was left open", c.nets)
			}
			select {
			case <-accepted:
				t.Fatalf("%v: connection from 127.0.0.1 accepted", c.nets)
			default:
			}
		}
		conn.Close()
		l.Close()
	}
}
