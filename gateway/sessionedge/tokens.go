package sessionedge

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// EnsureHostToken returns the host-token entry stored in path
// ("user:sha256:<hex>"). When the file does not exist it creates a new random
// token for user, stores only its hash (file mode 0600) and returns the token
// in clear as created, to be shown once; created is empty otherwise.
func EnsureHostToken(path, user string) (entry, created string, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		entry = strings.TrimSpace(string(b))
		if _, perr := ParseHostTokens([]string{entry}); perr != nil {
			return "", "", fmt.Errorf("host token file %s: %w (delete it to create a new token)", path, perr)
		}
		return entry, "", nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("host token file: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", fmt.Errorf("host token: %w", err)
	}
	created = "sbh_" + base64.RawURLEncoding.EncodeToString(raw[:])
	h := sha256.Sum256([]byte(created))
	entry = user + ":sha256:" + hex.EncodeToString(h[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("host token file: %w", err)
	}
	if _, err := f.WriteString(entry + "\n"); err != nil {
		f.Close()
		return "", "", fmt.Errorf("host token file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("host token file %s: %w", path, err)
	}
	return entry, created, nil
}
