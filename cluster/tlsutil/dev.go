package tlsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Lock file timings of EnsureDev. Creating a CA and a certificate takes
// milliseconds, so a lock older than devLockStale was left by a process that
// died holding it.
const (
	devLockFile  = ".switchboard-tls.lock"
	devLockWait  = 10 * time.Second
	devLockStale = 30 * time.Second
	devLockPoll  = 10 * time.Millisecond
)

// EnsureDev makes sure dir holds a throw-away development identity for
// nodeName and returns its Files: a CA (switchboard-ca.pem, created if
// missing or no longer usable at now) and "<node>.pem" / "<node>-key.pem"
// signed by it (created, or replaced when Load would refuse them at now,
// e.g. expired, from another CA or for another node). Files that pass are
// reused, so repeated calls are cheap and stable. Several nodes may share
// dir (and so the CA) and call EnsureDev at the same time: a lock file in
// dir serialises them. Never use this for production: the CA key lies next
// to the certificates.
func EnsureDev(dir, nodeName string, now time.Time) (Files, error) {
	if !validDNSName(nodeName, false) {
		return Files{}, fmt.Errorf("tlsutil: dev certificates: node name %q is not a DNS name (letters, digits, '-' and '.'): set node_id", nodeName)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("tlsutil: dev certificates: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return Files{}, fmt.Errorf("tlsutil: dev certificates: %w", err)
	}
	defer unlock()

	caCert := filepath.Join(dir, DefaultCACertFile)
	caKey := filepath.Join(dir, DefaultCAKeyFile)
	certPath, keyPath := CertFiles(dir, nodeName)
	f := Files{CAFile: caCert, CertFile: certPath, KeyFile: keyPath}
	if _, err := Load(f, nodeName, now); err == nil {
		return f, nil
	}
	if _, _, err := loadCA(caCert, caKey, now); err != nil {
		if err := removeAll(caCert, caKey); err != nil {
			return Files{}, fmt.Errorf("tlsutil: dev certificates: %w", err)
		}
		if _, _, err := createCA(CAOptions{Dir: dir}, now); err != nil {
			return Files{}, fmt.Errorf("tlsutil: dev certificates: %w", err)
		}
	}
	if err := removeAll(certPath, keyPath); err != nil {
		return Files{}, fmt.Errorf("tlsutil: dev certificates: %w", err)
	}
	if _, _, err := createCert(CertOptions{Dir: dir, Node: nodeName}, now); err != nil {
		return Files{}, fmt.Errorf("tlsutil: dev certificates: %w", err)
	}
	if _, err := Load(f, nodeName, now); err != nil {
		return Files{}, fmt.Errorf("tlsutil: dev certificates: created files do not load: %w", err)
	}
	return f, nil
}

func removeAll(paths ...string) error {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// lockDir takes dir's lock file, waiting up to devLockWait and breaking a
// lock older than devLockStale.
func lockDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, devLockFile)
	deadline := time.Now().Add(devLockWait)
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, werr := f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(path)
				return nil, fmt.Errorf("lock %s: %w", path, werr)
			}
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if st, serr := os.Stat(path); serr == nil && time.Since(st.ModTime()) > devLockStale {
			os.Remove(path) // left by a process that died holding it
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lock %s: still held after %s by another process (remove it if no switchboard is starting)", path, devLockWait)
		}
		time.Sleep(devLockPoll)
	}
}
