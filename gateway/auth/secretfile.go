package auth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrInsecureFile: ReadSecretFile found a file others may read or write.
var ErrInsecureFile = errors.New("auth: secret file is accessible to others")

// WriteSecretFile creates path with mode 0600 (only the owner may read it),
// refusing if it exists (O_EXCL: a secret is never written over, nor through
// a link planted in its place), writes content and syncs the file and its
// directory. On a failure after creating it, it removes the file.
func WriteSecretFile(path string, content []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("auth: create secret file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(path) // the error being returned matters more
		}
	}()
	if _, err := f.Write(content); err != nil {
		_ = f.Close() // the write error matters more
		return fmt.Errorf("auth: write secret file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync error matters more
		return fmt.Errorf("auth: sync secret file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("auth: close secret file %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("auth: open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("auth: sync directory %s: %w", dir, err)
	}
	return nil
}

// ReadSecretFile returns the content of a file written by WriteSecretFile.
// It refuses (ErrInsecureFile) a file whose mode lets the group or others
// in, or that is not a regular file.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: open secret file: %w", err)
	}
	defer f.Close() // read-only: nothing to lose on close
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: stat secret file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInsecureFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, want 0600", ErrInsecureFile, path, perm)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("auth: read secret file %s: %w", path, err)
	}
	return b, nil
}
