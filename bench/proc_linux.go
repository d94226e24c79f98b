package main

import (
	"fmt"
	"os"
	"syscall"
)

// childAttr makes the kernel kill a server if the harness dies first, so
// no server outlives an interrupted run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// resetPeak sets the process's VmHWM back to its VmRSS (clear_refs 5,
// Linux 4.0 and later), so that the VmHWM read later is the peak since
// now, not the peak of the process's start-up.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
