package rootfs

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

func needMmdebstrap(t *testing.T) {
	t.Helper()
	testtool.Need(t, "mmdebstrap")
}

// closedURL is a mirror URL on loopback where nothing listens.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/debian"
}

// TestBuildCacheReproducible builds Debian's smallest tree (the essential
// variant) once, finds it in the cache the second time, rebuilds it when
// the cached tar is damaged — getting the same bytes, which is the
// reproducibility check — and falls back to it when the mirror is
// unreachable.
func TestBuildCacheReproducible(t *testing.T) {
	needMmdebstrap(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	b := &Builder{Progress: &progress}
	req := Request{Suite: "bookworm", Variant: "essential", Epoch: time.Unix(1700000000, 0), CacheDir: t.TempDir()}

	first, err := b.Build(ctx, req)
	if err != nil {
		t.Fatalf("first build: %v\nprogress:\n%s", err, progress.String())
	}
	if first.Cached || first.Offline != "" {
		t.Fatalf("first build came from the cache: %+v", first)
	}
	if !strings.Contains(progress.String(), "rootfs: building with mmdebstrap") {
		t.Errorf("no progress shown while building:\n%s", progress.String())
	}
	if !hasPrefix(first.Versions, "libc6=") || !hasPrefix(first.Versions, "base-files=") {
		t.Errorf("installed versions miss libc6 or base-files: %v", first.Versions)
	}
	m1, err := readMeta(first.Tar)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	second, err := b.Build(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Cached || second.Key != first.Key || second.Tar != first.Tar {
		t.Fatalf("unchanged rebuild did not use the cache: first %+v, second %+v", first, second)
	}
	t.Logf("cached rebuild took %s", time.Since(start).Round(time.Millisecond))

	// Damage one byte in the middle: the hash check catches it and the
	// tree is built again, to the same bytes.
	f, err := os.OpenFile(first.Tar, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	var one [1]byte
	f.ReadAt(one[:], fi.Size()/2)
	one[0] ^= 0xff
	f.WriteAt(one[:], fi.Size()/2)
	f.Close()
	progress.Reset()
	third, err := b.Build(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if third.Cached {
		t.Fatal("a damaged cache entry was used")
	}
	if !strings.Contains(progress.String(), "is damaged") {
		t.Errorf("the rebuild does not say why:\n%s", progress.String())
	}
	m3, err := readMeta(third.Tar)
	if err != nil {
		t.Fatal(err)
	}
	if m3.SHA256 != m1.SHA256 || third.Key != first.Key {
		t.Errorf("same epoch and versions gave different trees: %s then %s (keys %s, %s)", m1.SHA256, m3.SHA256, first.Key, third.Key)
	}

	// No route to the mirror: the cached tree is used, and the result says so.
	off := req
	off.Mirror = closedURL(t)
	progress.Reset()
	got, err := b.Build(ctx, off)
	if err != nil {
		t.Fatalf("offline build with a cached tree: %v", err)
	}
	if got.Offline == "" || got.Tar != first.Tar {
		t.Fatalf("offline build: %+v, want the cached %s with the reason", got, first.Tar)
	}
	if !strings.Contains(progress.String(), "mirror unreachable") || !strings.Contains(got.Offline, "Could not connect") {
		t.Errorf("offline fallback not explained: %q / %s", got.Offline, progress.String())
	}
}

func TestOfflineWithoutCache(t *testing.T) {
	needMmdebstrap(t)
	b := &Builder{}
	_, err := b.Build(context.Background(), Request{Suite: "bookworm", Variant: "essential", Mirror: closedURL(t), CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no cached root filesystem") || !strings.Contains(err.Error(), "Could not connect") {
		t.Fatalf("err = %v, want mmdebstrap's reason and that there is no cache", err)
	}
}

func TestUnknownPackage(t *testing.T) {
	needMmdebstrap(t)
	b := &Builder{}
	_, err := b.Build(context.Background(), Request{Suite: "bookworm", Packages: []string{"outpost-no-such-package"}, CacheDir: t.TempDir()})
	if !errors.Is(err, ErrPackage) {
		t.Fatalf("err = %v, want ErrPackage", err)
	}
	if !strings.Contains(err.Error(), "Unable to locate package outpost-no-such-package") {
		t.Errorf("mmdebstrap's reason is not surfaced: %v", err)
	}
}

func TestRequestValidation(t *testing.T) {
	b := &Builder{Command: "true"}
	_, err := b.Build(context.Background(), Request{Suite: "Bookworm!", Packages: []string{"ok", "Bad Name"}, Mirror: "ftp://x", CacheDir: t.TempDir()})
	if err == nil {
		t.Fatal("bad request accepted")
	}
	for _, want := range []string{`suite "Bookworm!"`, `package "Bad Name"`, `mirror "ftp://x"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func hasPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
