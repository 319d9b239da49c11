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
)

// Runner runs the stages and records progress.
type Runner struct {
	Env    *Env
	Stages []Stage // default Stages(Env)
}

// Run runs every stage not yet done, in order, persisting the state after
// each, and writes the status report whatever the outcome. It returns the
// final state and the first stage error.
func (r *Runner) Run(ctx context.Context) (*State, error) {
	e := r.Env
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
