package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/qemu"
)

var lookPath = exec.LookPath

// Phases of a VM, as `lab up` shows them.
const (
	PhaseStopped     = "stopped"
	PhaseBooting     = "booting"
	PhaseConfiguring = "configuring"
	PhaseEnrolling   = "enrolling"
	PhaseEnrolled    = "enrolled"
	PhaseFailed      = "failed"
)

// VMStatus is one row of the lab's table.
type VMStatus struct {
	VM         string `json:"vm"`
	Name       string `json:"name,omitempty"` // the connector's name, once enrolled
	Group      string `json:"group,omitempty"`
	Address    string `json:"address,omitempty"`
	MAC        string `json:"mac"`
	Running    bool   `json:"running"`
	PID        int    `json:"pid,omitempty"`
	Phase      string `json:"phase"`
	Step       string `json:"step,omitempty"`
	Health     string `json:"health,omitempty"` // the control plane's word
	Reason     string `json:"reason,omitempty"`
	ToEnrolled string `json:"time_to_enrolled,omitempty"`
	Serial     string `json:"serial_log"`
}

// Status is the lab as a whole.
type Status struct {
	Dir       string `json:"dir"`
	Namespace string `json:"namespace,omitempty"`
	// Network says where the VMs are, in words.
	Network      string     `json:"network"`
	Accel        string     `json:"accelerator"`
	ControlPlane string     `json:"control_plane"`
	AdminConf    string     `json:"admin_conf"`
	VMs          []VMStatus `json:"vms"`
}

var (
	msgRE      = regexp.MustCompile(`outpost-firstboot\[\d+\]: .*msg="?([^"=]+?)"?(?: [a-z_]+=|$)`)
	failedRE   = regexp.MustCompile(`outpost-firstboot\[\d+\]: outpost-firstboot: (.+)`)
	enrolledRE = regexp.MustCompile(`outpost-firstboot\[\d+\]: enrolled as `)
)

// phase reads a VM's serial console for first boot's progress.
func phase(serial string) (string, string) {
	if !strings.Contains(serial, "outpost-firstboot[") {
		return PhaseBooting, ""
	}
	if enrolledRE.MatchString(serial) || strings.Contains(serial, "outpost-connector[") && strings.Contains(serial, "Control connection state: connect") {
		return PhaseEnrolled, ""
	}
	lines := strings.Split(serial, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if m := failedRE.FindStringSubmatch(l); m != nil {
			if strings.Contains(m[1], "no provisioning key") {
				return PhaseConfiguring, "waiting for a provisioning key"
			}
			return PhaseFailed, strings.TrimSpace(m[1])
		}
		if m := msgRE.FindStringSubmatch(l); m != nil {
			step := strings.TrimSpace(m[1])
			if strings.HasPrefix(step, "enroll") {
				return PhaseEnrolling, step
			}
			return PhaseConfiguring, step
		}
	}
	return PhaseConfiguring, ""
}

func (st *State) status(ctx context.Context, cl *cpclient.Client) *Status {
	s := &Status{Dir: st.Dir, Namespace: st.Namespace, Accel: st.Accel, ControlPlane: st.ControlPlane, AdminConf: st.AdminConf, Network: st.network()}
	var cs []cpapi.Connector
	if cl != nil {
		cs, _ = cl.Connectors(ctx, "")
	}
	for _, v := range st.VMs {
		serialLog := filepath.Join(v.Dir, qemu.SerialLog)
		b, _ := os.ReadFile(serialLog)
		row := VMStatus{VM: v.Name, MAC: v.MAC, Running: v.Proc.alive(), Serial: serialLog}
		if row.Running {
			row.PID = v.Proc.PID
		}
		row.Phase, row.Step = phase(string(b))
		for _, c := range cs {
			if strings.Contains(c.Fingerprint, "mac="+v.MAC) {
				row.Name, row.Group, row.Health, row.Reason = c.Name, c.Group, c.Health, c.StateReason
				if len(c.Addresses) > 0 {
					row.Address = c.Addresses[0]
				}
				row.Phase = PhaseEnrolled
			}
		}
		if v.Enrolled > 0 {
			row.ToEnrolled = v.Enrolled.Round(100 * time.Millisecond).String()
		}
		if !row.Running {
			row.Phase, row.Step = PhaseStopped, ""
		}
		s.VMs = append(s.VMs, row)
	}
	return s
}

// waitHealthy shows each VM's progress until all are healthy.
func (st *State) waitHealthy(ctx context.Context, cl *cpclient.Client, timeout time.Duration, progress io.Writer) (*Status, error) {
	deadline := time.Now().Add(timeout)
	shown := map[string]string{}
	for {
		s := st.status(ctx, cl)
		all := true
		for i, v := range s.VMs {
			label := v.Phase
			switch {
			case v.Health == "never seen":
				label = "enrolled, waiting for its first heartbeat"
			case v.Phase == PhaseEnrolled && v.Health != "":
				label = v.Health
			}
			if v.Health == "healthy" && st.VMs[i].Enrolled == 0 {
				st.VMs[i].Enrolled = time.Since(st.VMs[i].Started)
			}
			line := label
			if v.Step != "" {
				line += " (" + v.Step + ")"
			}
			if v.Name != "" {
				line = v.Name + ": " + line
			}
			if progress != nil && shown[v.VM] != line {
				fmt.Fprintf(progress, "  %-4s %s\n", v.VM, line)
				shown[v.VM] = line
			}
			if v.Health != "healthy" {
				all = false
			}
			if v.Phase == PhaseFailed {
				return s, fmt.Errorf("%s: first boot failed: %s (serial console: %s)", v.VM, v.Step, v.Serial)
			}
			if !v.Running {
				return s, fmt.Errorf("%s: QEMU exited; see %s", v.VM, filepath.Join(st.VMs[i].Dir, "qemu.log"))
			}
		}
		if all {
			return st.status(ctx, cl), nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("not every VM was healthy after %s; see 'outpost lab status --dir %s' and the serial logs", timeout, st.Dir)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// GetStatus reads the lab in dir and asks its control plane.
func GetStatus(ctx context.Context, dir string) (*Status, error) {
	dir, _ = filepath.Abs(dir)
	st, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	var cl *cpclient.Client
	if st.External || st.Server.alive() {
		cl, _ = st.client()
	}
	return st.status(ctx, cl), nil
}

// WriteTable prints the lab's table: name, group, address, MAC, state and
// time to enrolled.
func (s *Status) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tNAME\tGROUP\tADDRESS\tMAC\tSTATE\tENROLLED IN")
	for _, v := range s.VMs {
		state := v.Phase
		if v.Health != "" {
			state = v.Health
		}
		if !v.Running {
			state = PhaseStopped
			if v.Health != "" {
				state += ", " + v.Health
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.VM, dash(v.Name), dash(v.Group), dash(v.Address), v.MAC, state, dash(v.ToEnrolled))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// network describes where the lab's VMs and control plane are.
func (st *State) network() string {
	switch {
	case st.Bridge != bridge:
		return "bridge " + st.Bridge + " (a LAN of this machine)"
	case st.Holder.PID != 0:
		return "the lab's own user and network namespace (no root); admin API on " + filepath.Join(st.Dir, adminSocket)
	}
	return "network namespace " + st.Namespace
}
