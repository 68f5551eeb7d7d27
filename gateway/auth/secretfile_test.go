package auth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-credential")
	if err := WriteSecretFile(path, []byte("k3zqa-7mfte\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("mode %04o, want 0600", perm)
	}
	got, err := ReadSecretFile(path)
	if err != nil || string(got) != "k3zqa-7mfte\n" {
		t.Fatalf("ReadSecretFile = %q, %v", got, err)
	}
	if err := WriteSecretFile(path, []byte("other")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: %v, want fs.ErrExist", err)
	}
	if got, _ := ReadSecretFile(path); string(got) != "k3zqa-7mfte\n" {
		t.Fatalf("the refused write changed the file: %q", got)
	}
}

func TestWriteSecretFileRefusesALink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretFile(link, []byte("s")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("write through a dangling link: %v, want fs.ErrExist", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the link's target was created: %v", err)
	}
}

func TestReadSecretFileRefusesOpenModes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	if err := os.WriteFile(path, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(path); !errors.Is(err, ErrInsecureFile) {
		t.Fatalf("mode 0644: %v, want ErrInsecureFile", err)
	}
	if _, err := ReadSecretFile(dir); !errors.Is(err, ErrInsecureFile) {
		t.Fatalf("a directory: %v, want ErrInsecureFile", err)
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v, want fs.ErrNotExist", err)
	}
}
