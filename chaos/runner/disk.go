package runner

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Disks is a driver whose nodes keep their data on a small file system of
// their own (a tmpfs the driver mounted), which the harness fills from the
// host (the diskfull nemesis).
type Disks interface {
	// DiskDir returns a host directory on node i's data file system.
	DiskDir(i int) string
	// Exited reports whether node i's process ended on its own (it was not
	// killed or stopped by the harness): a node may exit on a full disk.
	Exited(i int) bool
}

// fillerName is the file that fills a node's disk.
const fillerName = "chaos-diskfull"

// tmpfsDisks mounts a tmpfs of a fixed size at each node's data directory
// and unmounts them all at the end. A tmpfs outlives the node's process
// (kill and restart keep the data) as long as it stays mounted.
type tmpfsDisks struct {
	size int64
	// opts are extra mount options (uid=, gid= for a container's user).
	opts string

	mu      sync.Mutex
	mounted []string
}

// mount mounts a tmpfs at dir (created if missing).
func (t *tmpfsDisks) mount(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	data := fmt.Sprintf("size=%d,mode=0755", t.size)
	if t.opts != "" {
		data += "," + t.opts
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, data); err != nil {
		return fmt.Errorf("disk: mount a tmpfs (%s) at %s: %w", data, dir, err)
	}
	t.mu.Lock()
	t.mounted = append(t.mounted, dir)
	t.mu.Unlock()
	return nil
}

// unmountAll unmounts every tmpfs mounted (the nodes must have stopped).
func (t *tmpfsDisks) unmountAll() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	dirs := t.mounted
	t.mounted = nil
	t.mu.Unlock()
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, unmount(dir))
	}
	return errors.Join(errs...)
}

// unmount unmounts dir, detaching it lazily if it is still busy.
func unmount(dir string) error {
	err := syscall.Unmount(dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: not mounted
		return fmt.Errorf("disk: unmount %s: %w", dir, err)
	}
	return nil
}

// unmountBelow unmounts every file system mounted at or below dir: the data
// directories a crashed earlier run with the same report directory left
// mounted (they would make removing the directory fail).
func unmountBelow(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil // not Linux: nothing of ours can be mounted
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			found = append(found, mp)
		}
	}
	var errs []error
	for i := len(found) - 1; i >= 0; i-- { // deepest last mounted first
		errs = append(errs, unmount(found[i]))
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fillDisk writes a filler file into dir until its file system is full
// (ENOSPC) and returns how many bytes it wrote: what is left is less than
// one write.
func fillDisk(dir string) (int64, error) {
	f, err := os.OpenFile(filepath.Join(dir, fillerName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("diskfull: %w", err)
	}
	defer f.Close()
	var n int64
	for _, size := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return n, fmt.Errorf("diskfull: write %s: %w", f.Name(), err)
			}
		}
	}
	return n, nil
}

// freeDisk removes the filler file from dir.
func freeDisk(dir string) error {
	if err := os.Remove(filepath.Join(dir, fillerName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("diskfull: %w", err)
	}
	return nil
}

// ParseSize reads a size such as 512MiB, 1GiB, 64M or 1048576 (bytes).
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	var v int64
	if _, err := fmt.Sscanf(num, "%d", &v); err != nil || v <= 0 || fmt.Sprint(v) != strings.TrimSpace(num) {
		return 0, fmt.Errorf("size %q: want a positive number of bytes with an optional unit (KiB, MiB, GiB), e.g. 512MiB", s)
	}
	return v * mult, nil
}
