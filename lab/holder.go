package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// HolderArg, as outpost's first argument, makes it the lab's holder: the
// process that, without root, keeps the lab's user and network namespaces
// (it runs under `unshare --user --map-root-user --net`, root inside, this
// user outside) and starts in them what the lab asks for. It also carries
// the control plane's admin API to a Unix socket in the lab's directory.
// cmd/outpost calls RunHolder when it sees it.
const HolderArg = "__outpost-lab-holder"

// Sockets in the lab's directory, without root.
const (
	holderSocket = "holder.sock"
	adminSocket  = "cp.sock"
)

type holderRequest struct {
	Argv []string `json:"argv"`
	Log  string   `json:"log"`
	// Wait runs the command to its end and returns its output (setup
	// commands); otherwise it is started detached and its PID returned.
	Wait bool `json:"wait"`
}

type holderReply struct {
	PID    int    `json:"pid"`
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

// RunHolder serves the lab in dir until it is signalled.
func RunHolder(dir string) error {
	hs := filepath.Join(dir, holderSocket)
	os.Remove(hs)
	ln, err := net.Listen("unix", hs)
	if err != nil {
		return err
	}
	os.Chmod(hs, 0o600)
	as := filepath.Join(dir, adminSocket)
	os.Remove(as)
	admin, err := net.Listen("unix", as)
	if err != nil {
		return err
	}
	os.Chmod(as, 0o600)
	go func() {
		for {
			c, err := admin.Accept()
			if err != nil {
				return
			}
			go proxy(c, BridgeIP+":"+CPPort)
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveHolder(c)
	}
}

func proxy(c net.Conn, to string) {
	defer c.Close()
	s, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(s, c); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	<-done
}

func serveHolder(c net.Conn) {
	defer c.Close()
	var req holderRequest
	reply := holderReply{}
	if err := json.NewDecoder(c).Decode(&req); err != nil || len(req.Argv) == 0 {
		reply.Error = "bad request"
		json.NewEncoder(c).Encode(reply)
		return
	}
	cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
	if req.Wait {
		out, err := cmd.CombinedOutput()
		reply.Output = string(out)
		if err != nil {
			reply.Error = err.Error()
		}
		json.NewEncoder(c).Encode(reply)
		return
	}
	lf, err := os.OpenFile(req.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		reply.Error = err.Error()
		json.NewEncoder(c).Encode(reply)
		return
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		reply.Error = err.Error()
	} else {
		reply.PID = cmd.Process.Pid
		go cmd.Wait()
	}
	json.NewEncoder(c).Encode(reply)
}

// ask sends a request to the holder of the lab in dir.
func ask(dir string, req holderRequest) (holderReply, error) {
	var reply holderReply
	c, err := net.DialTimeout("unix", filepath.Join(dir, holderSocket), 5*time.Second)
	if err != nil {
		return reply, fmt.Errorf("the lab's namespace holder does not answer: %w", err)
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return reply, err
	}
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return reply, err
	}
	if reply.Error != "" {
		return reply, fmt.Errorf("%s: %s: %s", strings.Join(req.Argv, " "), reply.Error, strings.TrimSpace(reply.Output))
	}
	return reply, nil
}

// startHolder starts the holder under unshare and waits for its socket.
func startHolder(dir, outpost string) (Proc, error) {
	p, err := startIn([]string{"unshare", "--user", "--map-root-user", "--net", "--"}, filepath.Join(dir, "holder.log"), outpost, HolderArg, dir)
	if err != nil {
		return p, err
	}
	for i := 0; i < 250; i++ {
		if c, err := net.Dial("unix", filepath.Join(dir, holderSocket)); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop(time.Second)
	return Proc{}, errors.New("the lab's namespace holder did not start; see " + filepath.Join(dir, "holder.log"))
}

// startVia starts prog in the holder's namespaces; the Proc is checked by
// prog's name like the others.
func startVia(dir, logFile, prog string, args ...string) (Proc, error) {
	path, err := exec.LookPath(prog)
	if err != nil {
		return Proc{}, err
	}
	reply, err := ask(dir, holderRequest{Argv: append([]string{path}, args...), Log: logFile})
	if err != nil {
		return Proc{}, err
	}
	return waitExec(reply.PID, logFile, prog)
}
