// Package qemu runs appliance VMs under QEMU with UEFI firmware (OVMF): each
// VM on a qcow2 overlay of a base image that is never modified, with its own
// static MAC, its configuration through fw_cfg or a CD-ROM, and its serial
// console on a Unix socket and in a log file.
//
// It uses KVM when /dev/kvm works and TCG otherwise (Probe): on some
// machines /dev/kvm opens and then fails with "KVM internal error". It does
// not make networks (the caller gives a tap device or user-mode
// networking) and knows nothing of what runs inside the VM.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Firmware and tools from Debian's packages.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
	System   = "qemu-system-x86_64"
	Img      = "qemu-img"
)

// Check says which Debian package to install when QEMU or OVMF is missing.
func Check() error {
	var missing []string
	if _, err := exec.LookPath(System); err != nil {
		missing = append(missing, System+" (Debian package qemu-system-x86)")
	}
	if _, err := exec.LookPath(Img); err != nil {
		missing = append(missing, Img+" (Debian package qemu-utils)")
	}
	for _, f := range []string{OVMFCode, OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f+" (Debian package ovmf)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s; install them with apt-get install", strings.Join(missing, ", "))
	}
	return nil
}

// Accel is a QEMU accelerator: "kvm" or "tcg".
type Accel string

var (
	probeOnce sync.Once
	probed    Accel
)

// Probe returns "kvm" when a VM really runs under KVM here, else "tcg". It
// boots the firmware alone for a few seconds once per process: opening
// /dev/kvm is not enough, as some machines fail later with "KVM internal
// error".
func Probe(ctx context.Context) Accel {
	probeOnce.Do(func() { probed = probe(ctx) })
	return probed
}

func probe(ctx context.Context) Accel {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "outpost-kvm-probe-*")
	if err != nil {
		return "tcg"
	}
	defer os.RemoveAll(dir)
	vars := filepath.Join(dir, "vars.fd")
	if err := copyFile(OVMFVars, vars); err != nil {
		return "tcg"
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, System, "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "256",
		"-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio", "-net", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	text := out.String()
	switch {
	case strings.Contains(text, "KVM internal error"), strings.Contains(text, "failed to initialize kvm"), strings.Contains(text, "Could not access KVM"):
		return "tcg"
	case ctx.Err() != nil:
		return "kvm" // still running when the probe ended: it works
	case err != nil:
		return "tcg"
	}
	return "kvm"
}

// Config describes one VM.
type Config struct {
	Name string
	// Base is the appliance's qcow2 image; the VM writes only to its
	// overlay, Dir/disk.qcow2, made on first start and kept across restarts.
	Base string
	// Dir holds the VM's files: overlay, firmware variables, serial log and
	// sockets. Created when missing.
	Dir       string
	CPUs      int // default 2
	MemoryMiB int // default 4096
	MAC       string
	// Tap is a tap device to connect the NIC to; empty means QEMU's
	// user-mode network with User's options (e.g. "restrict=on").
	Tap  string
	User string
	// FwCfg maps fw_cfg names (opt/outpost/config) to host files.
	FwCfg map[string]string
	// CDROM is an ISO attached as the first CD-ROM.
	CDROM string
	Accel Accel // default Probe's answer
	// Prefix runs QEMU through another command (e.g. ip netns exec NS).
	Prefix []string
	// NoReboot makes QEMU exit when the guest reboots, so that the caller
	// powers it on again (a cold boot rather than a reset in place).
	NoReboot bool
}

// Files of a VM in its directory.
const (
	OverlayFile = "disk.qcow2"
	SerialLog   = "serial.log"
	SerialSock  = "serial.sock"
)

// VM is a running QEMU process.
type VM struct {
	Config
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	started time.Time
	ran     time.Duration // set when QEMU exited
}

// Uptime is how long QEMU ran: until now, or until it exited.
func (v *VM) Uptime() time.Duration {
	select {
	case <-v.done:
		return v.ran
	default:
		return time.Since(v.started)
	}
}

// Start makes the overlay (first time), copies the firmware variables and
// starts QEMU. The serial console is logged to Dir/serial.log (appended to
// across restarts) and served on Dir/serial.sock.
func Start(ctx context.Context, c Config) (*VM, error) {
	c, args, err := Prepare(ctx, c)
	if err != nil {
		return nil, err
	}
	args = append(c.Prefix, args...)
	cmd := exec.Command(args[0], args[1:]...)
	logf, err := os.OpenFile(filepath.Join(c.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", System, err)
	}
	vm := &VM{Config: c, cmd: cmd, done: make(chan struct{}), started: time.Now()}
	go func() {
		vm.err = cmd.Wait()
		vm.ran = time.Since(vm.started)
		logf.Close()
		close(vm.done)
	}()
	return vm, nil
}

// Prepare fills c's defaults, makes the overlay (first time) and the
// firmware variables, and returns QEMU's command line (without c.Prefix),
// for a caller that starts it some other way (the lab's namespace holder).
func Prepare(ctx context.Context, c Config) (Config, []string, error) {
	if err := Check(); err != nil {
		return c, nil, err
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 4096
	}
	if c.Accel == "" {
		c.Accel = Probe(ctx)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return c, nil, err
	}
	overlay := filepath.Join(c.Dir, OverlayFile)
	if _, err := os.Stat(overlay); errors.Is(err, os.ErrNotExist) {
		base, err := filepath.Abs(c.Base)
		if err != nil {
			return c, nil, err
		}
		if out, err := exec.CommandContext(ctx, Img, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay).CombinedOutput(); err != nil {
			return c, nil, fmt.Errorf("overlay for %s: %v: %s", c.Name, err, strings.TrimSpace(string(out)))
		}
	}
	vars := filepath.Join(c.Dir, "OVMF_VARS.fd")
	if _, err := os.Stat(vars); errors.Is(err, os.ErrNotExist) {
		if err := copyFile(OVMFVars, vars); err != nil {
			return c, nil, err
		}
	}
	sock := filepath.Join(c.Dir, SerialSock)
	os.Remove(sock)
	cpu := "max"
	if c.Accel == "kvm" {
		cpu = "host"
	}
	args := []string{System, "-name", c.Name, "-accel", string(c.Accel), "-machine", "q35", "-cpu", cpu,
		"-smp", strconv.Itoa(c.CPUs), "-m", strconv.Itoa(c.MemoryMiB),
		"-display", "none", "-monitor", "none", "-no-user-config", "-nodefaults",
		"-chardev", "socket,id=ser0,path=" + sock + ",server=on,wait=off,logfile=" + filepath.Join(c.Dir, SerialLog) + ",logappend=on",
		"-serial", "chardev:ser0",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "file=" + overlay + ",format=qcow2,if=virtio",
		"-device", "virtio-rng-pci",
	}
	if c.NoReboot {
		args = append(args, "-no-reboot")
	}
	if c.Tap != "" {
		args = append(args, "-netdev", "tap,id=n0,ifname="+c.Tap+",script=no,downscript=no")
	} else {
		user := "user,id=n0"
		if c.User != "" {
			user += "," + c.User
		}
		args = append(args, "-netdev", user)
	}
	args = append(args, "-device", "virtio-net-pci,netdev=n0,mac="+c.MAC)
	for name, file := range c.FwCfg {
		args = append(args, "-fw_cfg", "name="+name+",file="+file)
	}
	if c.CDROM != "" {
		// On virtio-scsi: the appliance's cloud kernel has no AHCI driver
		// for q35's SATA (VMware attaches the OVF environment's CD-ROM to
		// IDE, which it drives with ata_piix).
		args = append(args, "-device", "virtio-scsi-pci,id=scsi0",
			"-drive", "if=none,id=cd0,media=cdrom,readonly=on,file="+c.CDROM,
			"-device", "scsi-cd,bus=scsi0.0,drive=cd0")
	}
	return c, args, nil
}

// PID is QEMU's process id.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// Done is closed when QEMU exits.
func (v *VM) Done() <-chan struct{} { return v.done }

// Stop kills QEMU (a power cut) and waits for it.
func (v *VM) Stop() {
	select {
	case <-v.done:
		return
	default:
	}
	v.cmd.Process.Kill()
	<-v.done
}

// Console connects to the serial console.
func (v *VM) Console() (net.Conn, error) { return DialConsole(v.Dir) }

// DialConsole connects to the serial console of the VM whose directory is
// dir, waiting up to 5 s for QEMU to open it.
func DialConsole(dir string) (net.Conn, error) {
	sock := filepath.Join(dir, SerialSock)
	var err error
	for i := 0; i < 50; i++ {
		var c net.Conn
		if c, err = net.Dial("unix", sock); err == nil {
			return c, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("serial console %s: %w", sock, err)
}

// Serial returns what the serial console printed so far, across restarts.
func (v *VM) Serial() string {
	b, _ := os.ReadFile(filepath.Join(v.Dir, SerialLog))
	return string(b)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
