package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
)

// Files the access stage writes.
const (
	ShadowFile         = "/etc/shadow"
	AuthorizedKeysFile = "/root/.ssh/authorized_keys"
	// sshWants enables openssh-server; the image ships without it.
	sshWants  = "/etc/systemd/system/multi-user.target.wants/ssh.service"
	sshUnit   = "/lib/systemd/system/ssh.service"
	sshdAlias = "/etc/systemd/system/sshd.service"
)

// accessStage gives the administrator a way in, and only through the
// properties: a password hash for root at the console, SSH public keys for
// root over SSH (which enables openssh-server). Without them the image has
// no password and SSH stays off.
type accessStage struct {
	root sysroot.Root
	// systemctl runs systemctl on the real machine; nil under another root.
	systemctl func(ctx context.Context, args ...string) error
	log       *slog.Logger
}

func (accessStage) Name() StageName    { return StageAccess }
func (accessStage) Schedule() Schedule { return UntilEnrolled }
func (s accessStage) Run(ctx context.Context, st *State) error {
	return s.apply(ctx, st.cfg)
}

func (s accessStage) apply(ctx context.Context, c *config.Config) error {
	if c.PasswordHash != "" {
		if err := setRootHash(s.root, c.PasswordHash); err != nil {
			return err
		}
		s.log.Info("administrator password set for root at the console")
	}
	if len(c.SSHKeys) == 0 {
		return nil
	}
	if err := s.root.WriteFile(AuthorizedKeysFile, []byte(strings.Join(c.SSHKeys, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if p, err := s.root.Path("/root/.ssh"); err == nil {
		os.Chmod(p, 0o700)
	}
	if err := s.root.Symlink(sshUnit, sshWants); err != nil {
		return err
	}
	if err := s.root.Symlink(sshUnit, sshdAlias); err != nil {
		return err
	}
	if s.systemctl != nil {
		if err := s.systemctl(ctx, "daemon-reload"); err != nil {
			return err
		}
		if err := s.systemctl(ctx, "start", "--no-block", "ssh.service"); err != nil {
			return err
		}
	}
	s.log.Info("SSH enabled for root", "keys", len(c.SSHKeys))
	return nil
}

// setRootHash puts hash in root's line of /etc/shadow, keeping the file's
// mode and group.
func setRootHash(root sysroot.Root, hash string) error {
	b, err := root.ReadFile(ShadowFile)
	if err != nil {
		return fmt.Errorf("set the administrator password: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	found := false
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) >= 2 && f[0] == "root" {
			f[1] = hash
			lines[i] = strings.Join(f, ":")
			found = true
		}
	}
	if !found {
		return errors.New("set the administrator password: /etc/shadow has no line for root")
	}
	mode, gid := fs.FileMode(0o640), -1
	if fi, err := root.Stat(ShadowFile); err == nil {
		mode = fi.Mode().Perm()
		gid = statGID(fi)
	}
	if err := root.WriteFile(ShadowFile, []byte(strings.Join(lines, "\n")), mode); err != nil {
		return fmt.Errorf("set the administrator password: %w", err)
	}
	if gid >= 0 {
		if p, err := root.Path(ShadowFile); err == nil {
			os.Chown(p, 0, gid)
		}
	}
	return nil
}

func statGID(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}
