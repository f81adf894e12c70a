package agentclient

import (
	"context"
	"fmt"

	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
)

// Keys of the GET_METRICS figures the bridge reads.
//
// MetricMemTotalBytes and MetricMemFreeBytes are libprocess's system gauges,
// which every Mesos agent reports: the kernel's total and free RAM
// (sysinfo(2) totalram and freeram, so page cache counts as used).
//
// The MetricFS* keys are not Mesos's: a Mesos agent reports no figures of
// the file system its sandboxes live on (slave/disk_* are the disk
// resource in MB, not the volume's free space). The reference agent adds
// them from statfs(2) of its sandbox directory; an agent without them
// leaves whatever needs them unknown.
const (
	MetricMemTotalBytes    = "system/mem_total_bytes"
	MetricMemFreeBytes     = "system/mem_free_bytes"
	MetricFSAvailableBytes = "work_dir/fs_available_bytes"
	MetricFSTotalBytes     = "work_dir/fs_total_bytes"
	MetricFSInodesFree     = "work_dir/fs_inodes_free"
	MetricFSInodesTotal    = "work_dir/fs_inodes_total"
)

// Metrics is GET_METRICS: every figure the agent reports, by key; a metric
// without a value is left out. Mesos gives up on the gauges it could not
// read within the call's timeout, which is set to half the call timeout so
// that a slow gauge costs the figure and not the whole answer.
func (c *Client) Metrics(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	gauges := c.timeout / 2
	res, err := c.call(ctx, calls.GetMetrics(&gauges))
	if err != nil {
		return nil, err
	}
	gm := res.GetGetMetrics()
	if gm == nil {
		return nil, fmt.Errorf("GET_METRICS: %w: no get_metrics in answer", ErrUnavailable)
	}
	out := make(map[string]float64, len(gm.Metrics))
	for _, m := range gm.Metrics {
		if m.Value != nil {
			out[m.Name] = *m.Value
		}
	}
	return out, nil
}
