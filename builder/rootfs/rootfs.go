// Package rootfs makes an appliance's root filesystem from Debian packages
// with mmdebstrap, as a tar archive, and keeps it in a cache keyed by what
// decides its bytes: suite, architecture, variant, package list, the
// package versions the mirror resolves them to, and SOURCE_DATE_EPOCH.
//
// A build first asks mmdebstrap to simulate the installation (a few
// seconds), which resolves every package to a version; an unchanged
// rebuild then finds its tar in the cache and takes seconds. The tar is
// checked against its recorded SHA-256 before use, so a corrupted entry is
// rebuilt. When the mirror cannot be reached, the newest cached tree for
// the same suite, architecture, variant and package list is used, and the
// result says so.
//
// mmdebstrap makes the tar reproducible when SOURCE_DATE_EPOCH is set: the
// same epoch and package versions give the same bytes. The package does not
// add the appliance's own files (the builder overlays them) and does not
// write disks.
package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// Defaults for the fields of Request left empty.
const (
	DefaultMirror  = "http://deb.debian.org/debian"
	DefaultArch    = "amd64"
	DefaultVariant = "minbase"
)

// Request says which tree to make.
type Request struct {
	Suite    string   // bookworm
	Mirror   string   // default DefaultMirror
	Arch     string   // default DefaultArch
	Variant  string   // mmdebstrap variant; default DefaultVariant
	Packages []string // installed on top of the variant
	// Epoch is SOURCE_DATE_EPOCH: no timestamp in the tar is newer. The
	// zero time leaves it unset: files keep the time they were made, and
	// the tree is not reproducible (it is still cached).
	Epoch time.Time
	// CacheDir holds the trees; created when missing.
	CacheDir string
}

// Result is a tree ready to read.
type Result struct {
	Tar      string   // the cached tar; read only
	Key      string   // cache key
	Versions []string // name=version of every installed package, sorted
	// Cached is true when the tree came from the cache (no mmdebstrap run).
	Cached bool
	// Offline is set when the mirror could not be reached and the newest
	// cached tree of the same family was used: why, for the message.
	Offline string
}

// ErrPackage is wrapped when mmdebstrap refuses the package list (a
// package that does not exist in the suite, an unsatisfiable dependency):
// the spec must change, and a cached tree would hide the mistake.
var ErrPackage = errors.New("the package list cannot be installed")

// Builder runs mmdebstrap. The zero value runs the real one and reports
// nothing.
type Builder struct {
	// Progress receives one line per step ("rootfs: ..."); nil discards.
	Progress io.Writer
	// Command is the mmdebstrap executable; default "mmdebstrap".
	Command string
}

// meta is stored beside each cached tar.
type meta struct {
	Family   string    `json:"family"`
	Suite    string    `json:"suite"`
	Arch     string    `json:"arch"`
	Variant  string    `json:"variant"`
	Packages []string  `json:"packages"`
	Versions []string  `json:"versions"`
	Epoch    int64     `json:"epoch"`
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
}

func (r *Request) fill() error {
	if r.Mirror == "" {
		r.Mirror = DefaultMirror
	}
	if r.Arch == "" {
		r.Arch = DefaultArch
	}
	if r.Variant == "" {
		r.Variant = DefaultVariant
	}
	var errs []error
	if !nameRE.MatchString(r.Suite) {
		errs = append(errs, fmt.Errorf("suite %q: give a Debian suite or codename such as bookworm", r.Suite))
	}
	if !nameRE.MatchString(r.Arch) {
		errs = append(errs, fmt.Errorf("architecture %q: give a Debian architecture such as amd64", r.Arch))
	}
	if !nameRE.MatchString(r.Variant) {
		errs = append(errs, fmt.Errorf("variant %q: give an mmdebstrap variant such as minbase", r.Variant))
	}
	for _, p := range r.Packages {
		if !pkgRE.MatchString(p) {
			errs = append(errs, fmt.Errorf("package %q is not a Debian package name (lower-case letters, digits, '+', '-', '.')", p))
		}
	}
	if !strings.HasPrefix(r.Mirror, "http://") && !strings.HasPrefix(r.Mirror, "https://") && !strings.HasPrefix(r.Mirror, "file:/") {
		errs = append(errs, fmt.Errorf("mirror %q: give an http://, https:// or file:/ URL", r.Mirror))
	}
	if r.CacheDir == "" {
		errs = append(errs, errors.New("no cache directory given"))
	}
	return errors.Join(errs...)
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)
	pkgRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
	instRE = regexp.MustCompile(`^Inst (\S+) \((\S+) `)
)

// family identifies trees that differ only by package versions and epoch:
// what an offline build may fall back to.
func (r *Request) family() string {
	pk := slices.Clone(r.Packages)
	slices.Sort(pk)
	pk = slices.Compact(pk)
	return digest("family", r.Suite, r.Arch, r.Variant, strings.Join(pk, ","))
}

// hookVersion changes when the way the tree is made changes, so older cache
// entries are not used for it.
const hookVersion = "1"

func (r *Request) key(versions []string) string {
	epoch := "unset"
	if !r.Epoch.IsZero() {
		epoch = strconv.FormatInt(r.Epoch.Unix(), 10)
	}
	return digest("tree", hookVersion, r.family(), strings.Join(versions, "\n"), epoch)
}

func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

func (b *Builder) say(format string, a ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, "rootfs: "+format+"\n", a...)
	}
}

func (b *Builder) command() string {
	if b.Command != "" {
		return b.Command
	}
	return "mmdebstrap"
}

// Build returns the tree req names, from the cache when it holds it.
func (b *Builder) Build(ctx context.Context, req Request) (Result, error) {
	if err := req.fill(); err != nil {
		return Result{}, fmt.Errorf("root filesystem: %w", err)
	}
	if _, err := exec.LookPath(b.command()); err != nil {
		return Result{}, fmt.Errorf("root filesystem: %s is not installed; install the Debian package mmdebstrap (apt-get install mmdebstrap), or give a tree with --rootfs DIR|TAR", b.command())
	}
	dir := filepath.Join(req.CacheDir, req.family())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("root filesystem cache: %w", err)
	}
	b.say("resolving %d packages of %s/%s (%s) against %s", len(req.Packages), req.Suite, req.Arch, req.Variant, req.Mirror)
	versions, err := b.resolve(ctx, req)
	if err != nil {
		if errors.Is(err, ErrPackage) || ctx.Err() != nil {
			return Result{}, err
		}
		m, tar, cerr := newest(dir)
		if cerr != nil {
			return Result{}, fmt.Errorf("%w; no cached root filesystem for this package list to fall back on: check the network or the mirror, or give a tree with --rootfs", err)
		}
		b.say("mirror unreachable (%v); using the cached root filesystem of %s", err, m.Created.Format(time.RFC3339))
		return Result{Tar: tar, Key: strings.TrimSuffix(filepath.Base(tar), ".tar"), Versions: m.Versions, Cached: true, Offline: err.Error()}, nil
	}
	key := req.key(versions)
	tar := filepath.Join(dir, key+".tar")
	if m, err := readMeta(tar); err == nil {
		b.say("checking cached tree %s", key)
		if err := verify(tar, m); err == nil {
			b.say("using cached tree %s (%d packages)", key, len(m.Versions))
			return Result{Tar: tar, Key: key, Versions: m.Versions, Cached: true}, nil
		} else {
			b.say("cached tree %s is damaged (%v); building it again", key, err)
			os.Remove(tar)
			os.Remove(tar + ".json")
		}
	}
	return b.make(ctx, req, dir, versions)
}

// resolve asks mmdebstrap what it would install.
func (b *Builder) resolve(ctx context.Context, req Request) ([]string, error) {
	args := append([]string{"-v", "--simulate"}, b.commonArgs(req)...)
	args = append(args, req.Suite, "/dev/null", req.Mirror)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, b.command(), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = env(req)
	runErr := cmd.Run()
	var versions []string
	for _, line := range strings.Split(out.String(), "\n") {
		if m := instRE.FindStringSubmatch(line); m != nil {
			versions = append(versions, m[1]+"="+m[2])
		}
	}
	if runErr != nil {
		return nil, mmError(runErr, out.String())
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("mmdebstrap --simulate listed no package to install; its output ends: %s", tail(out.String(), 5))
	}
	slices.Sort(versions)
	return versions, nil
}

// mmError turns mmdebstrap's failure into an error that says why, from its
// "E:" lines, and marks a bad package list with ErrPackage.
func mmError(runErr error, out string) error {
	var reasons []string
	pkgProblem := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "E: ") {
			continue
		}
		if strings.Contains(line, "failed to run") || strings.Contains(line, "setup failed") || strings.Contains(line, " failed") && strings.Contains(line, "apt-get") {
			continue
		}
		if strings.Contains(line, "Unable to locate package") || strings.Contains(line, "has no installation candidate") ||
			strings.Contains(line, "Unable to correct problems") || strings.Contains(line, "unmet dependencies") {
			pkgProblem = true
		}
		reasons = append(reasons, strings.TrimPrefix(line, "E: "))
	}
	if len(reasons) == 0 {
		reasons = []string{fmt.Sprintf("%v; its output ends: %s", runErr, tail(out, 5))}
	}
	msg := "mmdebstrap: " + strings.Join(reasons, "; ")
	if pkgProblem {
		return fmt.Errorf("%w: %s; fix the package list in the image spec", ErrPackage, msg)
	}
	return errors.New(msg)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func (b *Builder) commonArgs(req Request) []string {
	args := []string{"--variant=" + req.Variant, "--architectures=" + req.Arch, "--format=tar"}
	if os.Geteuid() == 0 {
		args = append(args, "--mode=root")
	} else {
		args = append(args, "--mode=unshare")
	}
	if len(req.Packages) > 0 {
		pk := slices.Clone(req.Packages)
		slices.Sort(pk)
		args = append(args, "--include="+strings.Join(slices.Compact(pk), ","))
	}
	return args
}

func env(req Request) []string {
	e := []string{"LC_ALL=C.UTF-8"}
	if !req.Epoch.IsZero() {
		e = append(e, "SOURCE_DATE_EPOCH="+strconv.FormatInt(req.Epoch.Unix(), 10))
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TMPDIR=") || strings.HasPrefix(kv, "HOME=") ||
			strings.HasPrefix(kv, "http_proxy=") || strings.HasPrefix(kv, "https_proxy=") {
			e = append(e, kv)
		}
	}
	return e
}

// make runs mmdebstrap into a temporary tar in the cache, records the
// versions really installed, and publishes the tar under its key.
func (b *Builder) make(ctx context.Context, req Request, dir string, resolved []string) (Result, error) {
	tmp, err := os.CreateTemp(dir, ".build-*.tar")
	if err != nil {
		return Result{}, fmt.Errorf("root filesystem cache: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName)
	listName := tmpName + ".versions"
	defer os.Remove(listName)

	args := b.commonArgs(req)
	// The versions installed, read from the tree itself, so the key names
	// what is in it even if the mirror moved since resolve.
	args = append(args, `--customize-hook=chroot "$1" dpkg-query -W -f='${Package}=${Version}\n' > `+shellQuote(listName))
	args = append(args, req.Suite, tmpName, req.Mirror)
	b.say("building with mmdebstrap (%d packages); this takes about a minute", len(resolved))
	cmd := exec.CommandContext(ctx, b.command(), args...)
	cmd.Env = env(req)
	var out bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			if strings.HasPrefix(line, "I: ") {
				b.say("%s", strings.TrimPrefix(line, "I: "))
			}
		}
		io.Copy(io.Discard, pr)
	}()
	started := time.Now()
	runErr := cmd.Run()
	pw.Close()
	<-done
	if runErr != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, fmt.Errorf("root filesystem: %w", mmError(runErr, out.String()))
	}
	list, err := os.ReadFile(listName)
	if err != nil {
		return Result{}, fmt.Errorf("root filesystem: reading the installed package list: %w", err)
	}
	versions := strings.Fields(string(list))
	slices.Sort(versions)
	key := req.key(versions)
	tar := filepath.Join(dir, key+".tar")
	sum, size, err := hashFile(tmpName)
	if err != nil {
		return Result{}, fmt.Errorf("root filesystem: %w", err)
	}
	m := meta{Family: req.family(), Suite: req.Suite, Arch: req.Arch, Variant: req.Variant, Packages: req.Packages,
		Versions: versions, Epoch: req.Epoch.Unix(), SHA256: sum, Size: size, Created: time.Now().UTC()}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := atomicfile.WriteFile(tar+".json", mb, 0o644); err != nil {
		return Result{}, fmt.Errorf("root filesystem cache: %w", err)
	}
	if err := os.Rename(tmpName, tar); err != nil {
		return Result{}, fmt.Errorf("root filesystem cache: %w", err)
	}
	b.say("built %s in %s (%d packages, %d MiB)", key, time.Since(started).Round(time.Second), len(versions), size>>20)
	return Result{Tar: tar, Key: key, Versions: versions}, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func readMeta(tar string) (meta, error) {
	var m meta
	b, err := os.ReadFile(tar + ".json")
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s.json: %w", tar, err)
	}
	return m, nil
}

func verify(tar string, m meta) error {
	sum, size, err := hashFile(tar)
	if err != nil {
		return err
	}
	if size != m.Size || sum != m.SHA256 {
		return fmt.Errorf("SHA-256 %s… of %d bytes, recorded %s… of %d bytes", sum[:12], size, short(m.SHA256), m.Size)
	}
	return nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// newest returns the most recently built intact tree in dir.
func newest(dir string) (meta, string, error) {
	tars, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	var best meta
	bestTar := ""
	for _, t := range tars {
		m, err := readMeta(t)
		if err != nil || (bestTar != "" && !m.Created.After(best.Created)) {
			continue
		}
		if verify(t, m) != nil {
			continue
		}
		best, bestTar = m, t
	}
	if bestTar == "" {
		return meta{}, "", errors.New("no cached tree")
	}
	return best, bestTar, nil
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
