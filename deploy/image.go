package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// DockerUsable returns nil when the docker command exists and its daemon
// answers, or an error saying which is missing (tests skip with it).
func DockerUsable(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("docker is not installed")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return fmt.Errorf("docker daemon not usable (%w: %s)", err, bytes.TrimSpace(out))
	}
	return nil
}

// BuildImage builds a static binary of the checkout at root and the
// repository's Dockerfile around it as image ref, in a build context (under
// tmp) holding just what the Dockerfile copies. Nothing is pulled.
func BuildImage(ctx context.Context, root, tmp, ref string) error {
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=image-test",
		"-o", filepath.Join(tmp, "bin", "switchboard"), "./cmd/switchboard")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build static binary: %w\n%s", err, out)
	}
	if err := copyTree(filepath.Join(root, "deploy", "image", "rootfs"), filepath.Join(tmp, "deploy", "image", "rootfs")); err != nil {
		return fmt.Errorf("image skeleton: %w", err)
	}
	out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-f", filepath.Join(root, "Dockerfile"), "-t", ref, tmp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker build: %w\n%s", err, out)
	}
	return nil
}

// copyTree copies the directories of src and its files but .gitkeep (which
// .dockerignore leaves out too).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Name() == ".gitkeep":
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
