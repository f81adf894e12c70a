package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// LiveProcesses maps container id → pids of the processes whose working
// directory is inside <workDir>/sandboxes/<id>: the reference agent runs
// every container as host processes in its sandbox, so this is what runs,
// whatever the agent or the bridge believe.
func LiveProcesses(workDir string) map[string][]int {
	if real, err := filepath.EvalSymlinks(workDir); err == nil {
		workDir = real
	}
	prefix := filepath.Join(workDir, "sandboxes") + "/"
	out := map[string][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	self := os.Getpid()
	for _, d := range dirs {
		cwd, err := os.Readlink(filepath.Join(d, "cwd"))
		if err != nil || !strings.HasPrefix(cwd, prefix) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == self || zombie(pid) {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(cwd, prefix), "/")
		out[id] = append(out[id], pid)
	}
	for _, p := range out {
		sort.Ints(p)
	}
	return out
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}

// AgentContainers lists the container ids an agent reports
// (GET_CONTAINERS with standalone containers) at its base URL. cli carries
// the credential an agent that demands one wants, and the call's timeout
// (stack.Env.MesosClient).
func AgentContainers(cli *http.Client, agentURL string) ([]string, error) {
	res, err := cli.Post(agentURL+"/api/v1", "application/json",
		strings.NewReader(`{"type":"GET_CONTAINERS","get_containers":{"show_standalone":true}}`))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET_CONTAINERS at %s: %d %s", agentURL, res.StatusCode, b)
	}
	var out struct {
		GetContainers struct {
			Containers []struct {
				ContainerID struct {
					Value string `json:"value"`
				} `json:"container_id"`
			} `json:"containers"`
		} `json:"get_containers"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("GET_CONTAINERS at %s: %w", agentURL, err)
	}
	var ids []string
	for _, c := range out.GetContainers.Containers {
		ids = append(ids, c.ContainerID.Value)
	}
	sort.Strings(ids)
	return ids, nil
}
