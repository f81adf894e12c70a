package kube

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/vk-titus/vk-titus/legacyapi"
)

// descriptors keeps each descriptor annotation parsed, keyed by its text:
// it never changes after creation, and a job list would otherwise parse
// every job's JSON on every request.
type descriptors struct {
	mu sync.Mutex
	m  map[string]parsed
}

type parsed struct {
	d   legacyapi.JobDescriptor
	err error
}

func newDescriptors() *descriptors { return &descriptors{m: map[string]parsed{}} }

// get parses text once. The descriptor it returns shares its maps and
// pointers with every other caller: copy what you change.
func (c *descriptors) get(text string) (legacyapi.JobDescriptor, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[text]
	if !ok {
		if err := json.Unmarshal([]byte(text), &p.d); err != nil {
			p.err = fmt.Errorf("annotation %s: %w", AnnotationDescriptor, err)
		}
		c.m[text] = p
	}
	return p.d, p.err
}

func (c *descriptors) forget(text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, text)
}
