package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
)

// adminClient talks to the nodes' admin JSON API (docs/api.md) as the first
// administrator. The admin certificates are self-signed per node (their
// fingerprints are only printed in the nodes' logs), so this test client does
// not verify them; it only ever connects to nodes the driver started.
type adminClient struct {
	http  *http.Client
	token string
}

func newAdminClient() *adminClient {
	return &adminClient{http: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}} //nolint:gosec // see the type comment
}

func (a *adminClient) call(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}

// login logs in with the one-time credential and replaces the password
// (an account past its one-time password may call the other methods).
func (a *adminClient) login(ctx context.Context, endpoint, name, password string) error {
	var resp struct {
		Token string `json:"token"`
	}
	if err := a.call(ctx, http.MethodPost, "https://"+endpoint+"/v1/auth/login", map[string]string{"name": name, "password": password}, &resp); err != nil {
		return fmt.Errorf("admin login: %w", err)
	}
	a.token = resp.Token
	var raw [18]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	if err := a.call(ctx, http.MethodPost, "https://"+endpoint+"/v1/auth/password",
		map[string]string{"oldPassword": password, "newPassword": "Chaos-" + hex.EncodeToString(raw[:])}, &resp); err != nil {
		return fmt.Errorf("admin password change: %w", err)
	}
	a.token = resp.Token
	return nil
}

// digests asks one node for its projection digests (consistent: the node
// first catches up with the log).
func (a *adminClient) digests(ctx context.Context, endpoint string) ([]check.Digest, error) {
	var resp struct {
		Digests []struct {
			Name     string `json:"name"`
			Position uint64 `json:"position,string"`
			Rows     uint64 `json:"rows,string"`
			SHA256   string `json:"sha256"`
		} `json:"digests"`
	}
	if err := a.call(ctx, http.MethodGet, "https://"+endpoint+"/v1/projections:digests?consistent=true", nil, &resp); err != nil {
		return nil, err
	}
	out := make([]check.Digest, len(resp.Digests))
	for i, d := range resp.Digests {
		out[i] = check.Digest{Name: d.Name, Position: d.Position, Rows: d.Rows, SHA256: d.SHA256}
	}
	return out, nil
}

// projectionDigests logs in and collects every node's digests, asking again
// (up to timeout) until all nodes report the same positions (once the
// cluster is quiet they have all folded the same log). Then the first node
// rebuilds every projection from log position 1 and the digests are
// collected again the same way: after, with the first node's entry renamed,
// shows whether a fold from zero equals the other nodes' incremental folds.
func projectionDigests(ctx context.Context, a *adminClient, ends, names []string, timeout time.Duration) (before, after map[string][]check.Digest, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	collect := func() (map[string][]check.Digest, error) {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			out := map[string][]check.Digest{}
			var errs []error
			for i, e := range ends {
				ds, err := a.digests(ctx, e)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", names[i], err))
					continue
				}
				out[names[i]] = ds
			}
			if len(errs) == 0 && check.SamePositions(out) {
				return out, nil
			}
			select {
			case <-ctx.Done():
				if len(errs) > 0 {
					return nil, errors.Join(errs...)
				}
				return out, nil // positions still differ: the checker says where
			case <-tick.C:
			}
		}
	}
	if before, err = collect(); err != nil {
		return nil, nil, err
	}
	for _, dg := range before[names[0]] {
		var st map[string]any
		if err := a.call(ctx, http.MethodPost, "https://"+ends[0]+"/v1/projections/"+dg.Name+":rebuild", map[string]any{"wait": true}, &st); err != nil {
			return nil, nil, fmt.Errorf("%s: rebuild %s: %w", names[0], dg.Name, err)
		}
	}
	if after, err = collect(); err != nil {
		return nil, nil, err
	}
	after[names[0]+" rebuilt from position 1"] = after[names[0]]
	delete(after, names[0])
	return before, after, nil
}

// adminLogin logs in to the first node as the first administrator, waiting
// (until ctx ends) for the node that creates it to write its credential.
func adminLogin(ctx context.Context, d Admin) (*adminClient, error) {
	for {
		name, password, err := d.AdminCredential(ctx)
		if err == nil {
			a := newAdminClient()
			if err = a.login(ctx, d.AdminEndpoints()[0], name, password); err == nil {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AdminStats counts the admin queries made during a run (an operator
// watching the console while faults happen).
type AdminStats struct {
	Queries, OK, Failed int
	P50MS, P99MS        float64
}

// queryAdmin asks the nodes, in turn, for their live sessions and the newest
// audit entries every interval until ctx ends.
func queryAdmin(ctx context.Context, a *adminClient, ends []string, every time.Duration) AdminStats {
	var st AdminStats
	var lat []time.Duration
	paths := []string{"/v1/sessions?limit=20", "/v1/audit?limit=20", "/v1/cluster"}
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			slices.Sort(lat)
			if n := len(lat); n > 0 {
				st.P50MS = float64(lat[n/2].Microseconds()) / 1000
				st.P99MS = float64(lat[min(n-1, n*99/100)].Microseconds()) / 1000
			}
			return st
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		var out map[string]any
		err := a.call(qctx, http.MethodGet, "https://"+ends[i%len(ends)]+paths[i%len(paths)], nil, &out)
		cancel()
		if ctx.Err() != nil {
			continue
		}
		st.Queries++
		if err != nil {
			st.Failed++
			continue
		}
		st.OK++
		lat = append(lat, time.Since(start))
	}
}

// readCredential returns the first administrator's credential from the
// admin-credential file ("name:password") in one of dirs.
func readCredential(dirs []string) (string, string, error) {
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "admin-credential"))
		if err != nil {
			continue
		}
		if name, pass, ok := strings.Cut(strings.TrimSpace(string(b)), ":"); ok {
			return name, pass, nil
		}
	}
	return "", "", fmt.Errorf("no admin-credential file in %s", strings.Join(dirs, ", "))
}
