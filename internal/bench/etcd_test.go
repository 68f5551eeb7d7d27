package bench

import (
	"context"
	"crypto/tls"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// An etcd cluster started with TLS serves only https, to clients that
// present a certificate of its CA.
func TestEtcdClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member (not in -short)")
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not on PATH (Debian: apt-get install etcd-server)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ec, err := StartEtcdClusterWith(ctx, bin, 1, t.TempDir(), EtcdOptions{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Stop()
	ep := ec.Endpoints()[0]
	if !strings.HasPrefix(ep, "https://") || ec.ClientTLS() == nil {
		t.Fatalf("endpoint %s, client TLS %v: want https with a client configuration", ep, ec.ClientTLS())
	}
	cli, err := newEtcdClient(ctx, ec.Endpoints(), ec.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	// The CA alone is not enough: the members require a client certificate.
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ec.ClientTLS().RootCAs, MinVersion: tls.VersionTLS12}}}
	if status, body, err := httpGet(ctx, noCert, ep+"/health"); err == nil && status == http.StatusOK {
		t.Fatalf("/health without a client certificate: %d %s, want refused", status, body)
	}
	plainURL := "http://" + strings.TrimPrefix(ep, "https://")
	if status, body, err := httpGet(ctx, &http.Client{Timeout: 5 * time.Second}, plainURL+"/health"); err == nil && status == http.StatusOK {
		t.Fatalf("/health over plain HTTP: %d %s, want refused", status, body)
	}
}
