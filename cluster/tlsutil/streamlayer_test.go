package tlsutil_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/switchboard-io/switchboard/chaos/faultnet"
	"github.com/switchboard-io/switchboard/cluster/tlsutil"
)

// PeerConfig is what a raft stream layer needs: one configuration for the
// listener and the dialer, which knows only the peer's address.
func TestPeerConfigWithTCPStreamLayer(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := tlsutil.CreateCA(tlsutil.CAOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	layer := func(node string) *faultnet.TCPStreamLayer {
		t.Helper()
		cert, key, err := tlsutil.CreateCert(tlsutil.CertOptions{Dir: dir, Node: node})
		if err != nil {
			t.Fatal(err)
		}
		b, err := tlsutil.Load(tlsutil.Files{CAFile: dir + "/" + tlsutil.DefaultCACertFile, CertFile: cert, KeyFile: key}, node, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := faultnet.NewTCPStreamLayer(ln, "", b.PeerConfig())
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := layer("n1"), layer("n2")
	accepted := make(chan []byte, 1)
	go func() {
		c, err := b.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			accepted <- nil
			return
		}
		accepted <- buf
	}()
	c, err := a.Dial(raft.ServerAddress(b.Addr().String()), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := <-accepted; string(got) != "hello" {
		t.Fatalf("peer read %q, want hello", got)
	}
}
