package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// StateVersion is the layout of the lab directory this code reads; a
// directory written by another version is refused with the way out.
const StateVersion = 1

// StateFile is the lab's record, in its directory.
const StateFile = "lab.json"

// ErrNoLab means the directory holds no lab.
var ErrNoLab = errors.New("no lab here")

// State is what `lab up` started, so that commands from another shell find
// it and `lab down` stops exactly those processes.
type State struct {
	Version int    `json:"version"`
	Dir     string `json:"dir"`
	// Namespace is the lab's network namespace; empty with --bridge, when
	// the taps join a bridge of this machine's (a real LAN).
	Namespace string `json:"namespace"`
	Bridge    string `json:"bridge"`
	// ControlPlane is HOST:PORT as keys name it; External says it is not
	// the lab's own (--config).
	ControlPlane string `json:"control_plane"`
	External     bool   `json:"external,omitempty"`
	// Holder keeps the lab's user and network namespaces when it runs
	// without root, and carries the admin API to Socket.
	Holder Proc   `json:"holder,omitzero"`
	Socket string `json:"socket,omitempty"`
	Accel  string `json:"accel"`
	Image  string `json:"image"`
	Group  string `json:"group"`
	Key    string `json:"key"` // the key's name; its text is in keyfile (0600)

	Server  Proc `json:"server"`
	Dnsmasq Proc `json:"dnsmasq"`
	Chronyd Proc `json:"chronyd"`
	// AdminConf is the control plane's admin.conf.
	AdminConf string `json:"admin_conf"`

	VMs     []VMState `json:"vms"`
	Created time.Time `json:"created"`
}

// Proc is a process the lab started, checked by its command name before it
// is signalled so a reused PID is never hit.
type Proc struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

// VMState is one VM of the lab.
type VMState struct {
	Name      string        `json:"name"`
	MAC       string        `json:"mac"`
	Tap       string        `json:"tap"`
	Dir       string        `json:"dir"`
	MemoryMiB int           `json:"memory_mib"`
	Proc      Proc          `json:"qemu"`
	Started   time.Time     `json:"started"`
	Enrolled  time.Duration `json:"time_to_enrolled"`
}

func loadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s; start one with 'outpost lab up --dir %s'", ErrNoLab, dir, StateFile, dir)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w; remove the directory after stopping what it started", filepath.Join(dir, StateFile), err)
	}
	if st.Version != StateVersion {
		return nil, fmt.Errorf("%s was written by another version of outpost (lab layout %d, this outpost reads %d); run that version's 'outpost lab down', or remove the directory", filepath.Join(dir, StateFile), st.Version, StateVersion)
	}
	return &st, nil
}

func (st *State) save() error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(st.Dir, StateFile), append(b, '\n'), 0o600)
}

// alive reports whether p still runs the program the lab started.
func (p Proc) alive() bool {
	if p.PID <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID))
	if err != nil {
		return false
	}
	if strings.TrimSpace(string(b)) != p.Comm {
		return false
	}
	// A zombie (exited, not yet reaped) no longer runs.
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
		return false
	}
	return true
}

// stop ends p: SIGTERM, then SIGKILL after grace.
func (p Proc) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	syscall.Kill(p.PID, syscall.SIGTERM)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !p.alive() {
			return
		}
	}
	syscall.Kill(p.PID, syscall.SIGKILL)
	for i := 0; i < 100 && p.alive(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// prefix runs a command in the lab's network: `ip netns exec` as root,
// nsenter into the holder's namespaces without root, nothing with --bridge.
func (st *State) prefix() []string {
	switch {
	case st.Namespace != "":
		return []string{"ip", "netns", "exec", st.Namespace}
	}
	return nil
}
