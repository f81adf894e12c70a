package agentclient

import (
	"context"
	"fmt"

	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
)

// ReadFileChunk is the most a Mesos agent answers to one READ_FILE: 16
// pages (64 KiB with 4 KiB pages), whatever length was asked. Callers that
// stream a file page through it with offset and ask for this much at a time;
// an agent may still answer less (another page size, a file that shrank),
// so a short answer is not the end of the file: only an empty one is.
const ReadFileChunk = 64 << 10

// FileSize is READ_FILE with length 0, which Mesos answers with the file's
// size and no data: the cheap way to learn where a log ends before reading
// it backwards (`kubectl logs --tail`) or to know whether it has grown
// (`--follow`).
func (c *Client) FileSize(ctx context.Context, path string) (uint64, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	res, err := c.call(ctx, calls.ReadFileWithLength(path, 0, 0))
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	rf := res.GetReadFile()
	if rf == nil {
		return 0, fmt.Errorf("size of %s: READ_FILE: %w: no read_file in answer", path, ErrUnavailable)
	}
	return rf.Size_, nil
}
