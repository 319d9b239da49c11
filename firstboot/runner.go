// Package firstboot is what the appliance runs at first boot: a sequence of
// named stages (config → network → DNS → time → preflight → enroll →
// report), in the style of Ignition, each run against a configuration that
// was validated completely before anything changed, with every file under a
// root directory and every other side effect behind a seam in Env.
//
// Progress is persisted after every stage, so a run killed at any point
// resumes on the next start, and an appliance enrolls exactly once: the CSR
// and nonce are saved before the request is sent and reused by any retry.
//
// Sub-packages hold one concern each: config (sources and validation),
// netconf (DHCP, netlink, networkd), timesync (NTP), enroll (the enrollment
// client), sysroot (root-confined files).
package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
)

// Runner runs the stages and records progress.
type Runner struct {
	Env    *Env
	Stages []Stage // default Stages(Env)
}

// Run runs every stage not yet done, in order, persisting the state after
// each, and writes the status report whatever the outcome. It returns the
// final state and the first stage error.
//
// On the running system's root ("/") it first checks that the machine is
// an outpost appliance (CheckAppliance) and changes nothing when it is not.
// Under another root it does not ask: the caller chose the tree.
func (r *Runner) Run(ctx context.Context) (*State, error) {
	e := r.Env
	if e.Root.IsHost() {
		if err := CheckAppliance(e.Root); err != nil {
			return nil, err
		}
	}
	st, err := LoadState(e.Root)
	if err != nil {
		return nil, err
	}
	stages := r.Stages
	if stages == nil {
		stages = Stages(e)
	}
	for _, s := range stages {
		name := s.Name()
		if !st.due(s) {
			continue
		}
		st.Stage = name
		if err := st.Save(e.Root, e.now()); err != nil {
			return st, err
		}
		e.log().Debug("stage", "name", name)
		e.crash(string(name) + ":start")
		err := s.Run(ctx, st)
		if err != nil {
			st.LastError = err.Error()
			if serr := st.Save(e.Root, e.now()); serr != nil {
				err = errors.Join(err, serr)
			}
			if rerr := e.report(ctx, st); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return st, &StageError{Stage: name, Err: err}
		}
		st.Done[name] = e.now().UTC()
		st.LastError = ""
		if err := st.Save(e.Root, e.now()); err != nil {
			return st, err
		}
		e.crash(string(name) + ":done")
		if err := e.report(ctx, st); err != nil {
			return st, err
		}
	}
	st.Stage = ""
	if err := st.Save(e.Root, e.now()); err != nil {
		return st, err
	}
	return st, e.report(ctx, st)
}

// ErrNotAppliance means the machine has no appliance marker: first boot was
// started on an ordinary host, where it must change nothing.
var ErrNotAppliance = errors.New("this machine is not an outpost appliance")

// CheckAppliance reports whether root holds appliance.MarkerFile, which
// outpost image build writes into every appliance it builds.
func CheckAppliance(root sysroot.Root) error {
	b, err := root.ReadFile(appliance.MarkerFile)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s is missing (outpost image build writes it into every appliance). "+
			"First boot changes the network, the clock and files under /etc, /var and /run, so it changed nothing here; "+
			"to try it on this machine, give --root DIR (a copy of an appliance's tree) and --interface NAME", ErrNotAppliance, appliance.MarkerFile)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAppliance, err)
	}
	if _, _, err := appliance.ParseMarker(b); err != nil {
		return fmt.Errorf("%w: %v", ErrNotAppliance, err)
	}
	return nil
}

// due reports whether s runs now. An enrolled appliance has no key any
// more: only the stages that finish or report enrollment run.
func (st *State) due(s Stage) bool {
	_, done := st.Done[s.Name()]
	switch s.Schedule() {
	case Always:
		return true
	case Once:
		return !done
	default:
		return !st.Enrolled()
	}
}

// StageError names the stage that failed.
type StageError struct {
	Stage StageName
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("first boot stage %s: %v", e.Stage, e.Err) }
func (e *StageError) Unwrap() error { return e.Err }
