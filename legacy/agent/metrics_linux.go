//go:build linux

package agent

import (
	"fmt"
	"os"
	"syscall"
)

// hostMemory is the host's total and free RAM in bytes, as /proc/meminfo
// (and sysinfo(2), Mesos's source) has them.
func hostMemory() (total, free uint64, err error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseMeminfo(f)
}

// loadAverages are the host's 1, 5 and 15 minute load averages.
func loadAverages() (l1, l5, l15 float64, err error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, 0, 0, err
	}
	return parseLoadavg(string(b))
}

// fsFigures is statfs(2) of the file system holding path.
func fsFigures(path string) (fsStat, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return fsStat{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return fsStat{availableBytes: st.Bavail * bs, totalBytes: st.Blocks * bs, inodesFree: st.Ffree, inodesTotal: st.Files}, nil
}
