// Package testrootfs makes the boot test's root filesystem: Debian's cloud
// kernel (linux-image-cloud-amd64, whose virtio drivers are modules) and an
// initrd holding the static Go init in images/testinit plus the modules it
// loads. Downloads are cached under CacheDir. It is test support, not part
// of outpost's image pipeline.
package testrootfs

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// CacheDir is where the kernel package is downloaded and unpacked:
// ${XDG_CACHE_HOME:-$HOME/.cache}/outpost.
func CacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "outpost"), nil
}

// Modules are loaded in this dependency-closed order by the init.
var wantModules = []string{"virtio_blk", "virtio_pci"}

// Make writes a root filesystem into dir: boot/vmlinuz-V, boot/initrd.img-V
// and outpost-marker containing marker. repo is the outpost module root
// (where images/testinit is built from).
func Make(ctx context.Context, dir, repo, marker string) (kernelVersion string, err error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	kdir, err := kernelTree(ctx, cache)
	if err != nil {
		return "", err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return "", fmt.Errorf("unpacked kernel package %s: want one boot/vmlinuz-*, found %d", kdir, len(vmlinuz))
	}
	kver := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	modDir := filepath.Join(kdir, "lib", "modules", kver)
	order, err := moduleOrder(modDir, wantModules)
	if err != nil {
		return "", err
	}

	initBin := filepath.Join(dir, ".testinit")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", initBin, "./images/testinit")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building images/testinit: %v\n%s", err, out)
	}
	defer os.Remove(initBin)

	if err := os.MkdirAll(filepath.Join(dir, "boot"), 0o755); err != nil {
		return "", err
	}
	if err := copyFile(vmlinuz[0], filepath.Join(dir, "boot", "vmlinuz-"+kver)); err != nil {
		return "", err
	}
	var c cpioWriter
	initData, err := os.ReadFile(initBin)
	if err != nil {
		return "", err
	}
	c.file("init", 0o755, initData)
	c.dir("modules")
	var names []string
	for _, m := range order {
		data, err := os.ReadFile(m)
		if err != nil {
			return "", err
		}
		name := filepath.Base(m)
		c.file("modules/"+name, 0o644, data)
		names = append(names, name)
	}
	c.file("modules/order", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	for _, d := range []string{"proc", "sys", "dev", "newroot"} {
		c.dir(d)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot", "initrd.img-"+kver), c.finish(), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "outpost-marker"), []byte(marker+"\n"), 0o644); err != nil {
		return "", err
	}
	return kver, nil
}

// kernelTree returns the unpacked cloud kernel package, downloading it with
// apt-get on first use.
func kernelTree(ctx context.Context, cache string) (string, error) {
	debDir := filepath.Join(cache, "deb")
	debs, _ := filepath.Glob(filepath.Join(debDir, "linux-image-*-cloud-amd64_*.deb"))
	if len(debs) == 0 {
		out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-cloud-amd64").Output()
		if err != nil {
			return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %v", err)
		}
		var pkg string
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: "); ok && strings.HasPrefix(v, "linux-image-") {
				pkg = v
			}
		}
		if pkg == "" {
			return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64 names no kernel package:\n%s", out)
		}
		if err := os.MkdirAll(debDir, 0o755); err != nil {
			return "", err
		}
		dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
		dl.Dir = debDir
		if out, err := dl.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(debDir, "linux-image-*-cloud-amd64_*.deb"))
		if len(debs) == 0 {
			return "", fmt.Errorf("apt-get download %s left no .deb in %s", pkg, debDir)
		}
	}
	sort.Strings(debs)
	deb := debs[len(debs)-1]
	tree := filepath.Join(cache, "kernel", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(filepath.Join(tree, "boot")); err == nil {
		return tree, nil
	}
	tmp := tree + ".partial"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	if err := os.Rename(tmp, tree); err != nil {
		return "", err
	}
	return tree, nil
}

// moduleOrder returns the .ko files for want and their dependencies, each
// after the modules it depends on, read from the modules' .modinfo
// sections (the package ships no modules.dep: depmod makes it at install).
func moduleOrder(modDir string, want []string) ([]string, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
			paths[name] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("module %s not found under %s (built into the kernel?)", name, modDir)
		}
		state[name] = 1
		deps, err := modDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, w := range want {
		if err := visit(w); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func modDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", ko)
	}
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(strings.ReplaceAll(string(v), "-", "_"), ","), nil
		}
	}
	return nil, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cpioWriter writes a "newc" cpio archive, the initramfs format.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	c.ino++
	fmt.Fprintf(&c.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.buf.WriteString(name)
	c.buf.WriteByte(0)
	c.pad()
}

func (c *cpioWriter) pad() {
	for c.buf.Len()%4 != 0 {
		c.buf.WriteByte(0)
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, 0o040755, 0) }

func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.header(name, 0o100000|perm, len(data))
	c.buf.Write(data)
	c.pad()
}

func (c *cpioWriter) finish() []byte {
	c.header("TRAILER!!!", 0, 0)
	return c.buf.Bytes()
}
