//go:build !linux

package agent

import (
	"errors"
	"syscall"
)

// The agent relies on waitid(2) and /proc; elsewhere New refuses to start.
const supported = false

var errUnsupported = errors.New("agent: Linux only")

func spawn(string, []string, []string, string, []uintptr) (int, error) { return 0, errUnsupported }
func peekExited() (int, error)                                         { return 0, errUnsupported }
func hasExited(int) bool                                               { return false }
func reapPid(int) (syscall.WaitStatus, bool)                           { return 0, false }
func killGroup(int, syscall.Signal) error                              { return errUnsupported }
func raiseNofileLimit() (uint64, uint64, error)                        { return 0, 0, errUnsupported }
func countOpenFDs() int                                                { return -1 }
func hostMemory() (uint64, uint64, error)                              { return 0, 0, errUnsupported }
func loadAverages() (float64, float64, float64, error)                 { return 0, 0, 0, errUnsupported }
func fsFigures(string) (fsStat, error)                                 { return fsStat{}, errUnsupported }

type procStat struct {
	pgrp                 int
	utimeSecs, stimeSecs float64
	threads              uint32
	rssBytes             uint64
}

func readProcStat(int) (procStat, bool) { return procStat{}, false }
