package grpcapi_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/vk-titus/vk-titus/api/titus"
	"github.com/vk-titus/vk-titus/gateway/observe"
	"github.com/vk-titus/vk-titus/legacyapi"
)

// fill puts n service jobs of no tasks in the two worlds, alternately.
func fill(b *testing.B, e *env, n int) {
	b.Helper()
	ctx := context.Background()
	for i := range n {
		d := legacyapi.JobDescriptor{ApplicationName: fmt.Sprintf("app%d", i%50), Owner: &legacyapi.Owner{TeamEmail: "b@example.com"},
			Attributes: map[string]string{"source": "spinnaker"},
			Container: &legacyapi.Container{Resources: &legacyapi.ContainerResources{CPU: 1, MemoryMB: 512},
				Image: &legacyapi.Image{Name: "nginx", Tag: "1"}},
			Service: &legacyapi.ServiceJobSpec{Capacity: &legacyapi.Capacity{Max: 1}}}
		world := e.legacy
		if i%2 == 1 {
			world = e.kube
		}
		if _, err := world.CreateJob(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFindJobsPage1000Of10k is clouddriver's loop: pages of 1,000
// jobs, filtered and projected, through 10,000 jobs in two worlds.
func BenchmarkFindJobsPage1000Of10k(b *testing.B) {
	e := start(b, observe.Config{})
	fill(b, e, 10000)
	ctx := context.Background()
	q := &titus.JobQuery{Page: &titus.Page{PageSize: 1000}, FilteringCriteria: map[string]string{"attributes": "source:spinnaker", "jobType": "SERVICE"},
		Fields: []string{"id", "jobDescriptor.attributes.name"}}
	b.ResetTimer()
	for range b.N {
		res, err := e.client.FindJobs(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		q.Page.Cursor = res.GetPagination().GetCursor()
		if !res.GetPagination().GetHasMore() {
			q.Page.Cursor = ""
		}
	}
}

// BenchmarkObserveFanOut1000 measures one change reaching 1,000 open
// ObserveJobs streams: each op is a change and its arrival on every one.
func BenchmarkObserveFanOut1000(b *testing.B) {
	const streams = 1000
	e := start(b, observe.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id, err := e.client.CreateJob(ctx, spinnakerJob("fan", 1))
	if err != nil {
		b.Fatal(err)
	}
	arrived := make(chan struct{}, streams)
	var ready sync.WaitGroup
	ready.Add(streams)
	for range streams {
		stream, err := e.client.ObserveJobs(ctx, &titus.ObserveJobsQuery{FilteringCriteria: map[string]string{"appName": "fan"}, JobFields: []string{"jobDescriptor.attributes"}})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				n, err := stream.Recv()
				if err != nil {
					return
				}
				if n.GetSnapshotEnd() != nil {
					ready.Done()
				}
				if n.GetJobUpdate().GetJob().GetJobDescriptor().GetAttributes()["round"] != "" {
					arrived <- struct{}{}
				}
			}
		}()
	}
	ready.Wait()
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.client.UpdateJobAttributes(ctx, &titus.JobAttributesUpdate{JobId: id.GetId(), Attributes: map[string]string{"round": fmt.Sprint(i)}}); err != nil {
			b.Fatal(err)
		}
		for range streams {
			<-arrived
		}
	}
}
