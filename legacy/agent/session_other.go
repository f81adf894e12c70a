//go:build !linux

package agent

import "os"

func openPTY() (*os.File, *os.File, error)         { return nil, nil, errUnsupported }
func setWindowSize(*os.File, uint32, uint32) error { return errUnsupported }
func spawnSession(string, []string, []string, string, []uintptr, bool) (int, error) {
	return 0, errUnsupported
}
func processEnv(int) ([]string, bool) { return nil, false }
func processCwd(int) (string, bool)   { return "", false }
