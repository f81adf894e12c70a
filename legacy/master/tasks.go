package master

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/agentclient"
	"github.com/vk-titus/vk-titus/legacy/master/protocol"
	"github.com/vk-titus/vk-titus/translate"
)

// TaskID names a legacy task. It is also the task's container id on its
// agent, so it starts with protocol.LegacyPrefix ("legacy-"): that is how
// the bridge (whose containers start with "vkt-") tells legacy tasks from
// its own.
type TaskID string

// TaskSpec is what a legacy task runs and holds.
type TaskSpec struct {
	Name string
	// Command, when set, runs as /bin/sh -c COMMAND (the /internal/tasks
	// path). Otherwise the task runs Entrypoint and Args by Docker's rule.
	Command string
	// Image is a Docker image reference; the agent resolves its
	// entrypoint, cmd and env (the reference agent from its catalog, and
	// refuses an image it lacks when the image must supply the command).
	Image string
	// Entrypoint replaces the image's entrypoint and drops its cmd; Args
	// replace the image's cmd. Both empty: the image's entrypoint + cmd.
	Entrypoint []string
	Args       []string
	Env        map[string]string
	// Resources must hold cpus > 0 and mem > 0 (MB), as Mesos requires;
	// disk and gpus are optional.
	Resources Resources
	// Constraints: agent attribute NAME must equal VALUE (text attributes,
	// or scalars in their %v form).
	Constraints map[string]string
	// Preferences are soft constraints: among agents with room, one that
	// matches more of them wins.
	Preferences map[string]string
}

// mesosLaunch is spec as LAUNCH_CONTAINER carries it. A command without
// a shell follows the Docker rules the Mesos docker/runtime isolator
// applies (as translate does for pods): value = entrypoint[0], arguments =
// entrypoint + args; or, without an entrypoint, no value and the args in
// place of the image's cmd.
func (spec TaskSpec) mesosLaunch() (*mesos.CommandInfo, *mesos.ContainerInfo) {
	shell := spec.Command != ""
	cmd := &mesos.CommandInfo{Shell: &shell}
	switch {
	case shell:
		cmd.Value = &spec.Command
	case len(spec.Entrypoint) > 0:
		cmd.Value = &spec.Entrypoint[0]
		cmd.Arguments = append(append([]string{}, spec.Entrypoint...), spec.Args...)
	default:
		cmd.Arguments = append([]string{}, spec.Args...)
	}
	if len(spec.Env) > 0 {
		names := make([]string, 0, len(spec.Env))
		for k := range spec.Env {
			names = append(names, k)
		}
		sort.Strings(names)
		cmd.Environment = &mesos.Environment{}
		for _, k := range names {
			v := spec.Env[k]
			cmd.Environment.Variables = append(cmd.Environment.Variables, mesos.Environment_Variable{
				Name: k, Type: mesos.Environment_Variable_VALUE.Enum(), Value: &v,
			})
		}
	}
	if spec.Image == "" {
		return cmd, nil
	}
	return cmd, &mesos.ContainerInfo{
		Type: mesos.ContainerInfo_MESOS.Enum(),
		Mesos: &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{
			Type: mesos.Image_DOCKER.Enum(), Docker: &mesos.Image_Docker{Name: spec.Image},
		}},
	}
}

// Task is a legacy task as the master tracks it.
type Task struct {
	ID        TaskID
	Name      string
	Command   string
	AgentID   string
	Endpoint  string // the agent's base URL
	Resources Resources
	// State is the latest Mesos task state: TASK_STAGING while the launch
	// is in flight, TASK_RUNNING once the agent has started it, then one of
	// TASK_FINISHED, TASK_FAILED, TASK_KILLING→TASK_KILLED, TASK_LOST (the
	// agent was removed or forgot the container) or TASK_ERROR (the agent
	// refused the launch). Terminal states are final.
	State    mesos.TaskState
	Message  string
	ExitCode *int32 // once ended, when the agent reported one
	// Adopted: the master found the task running in an agent's report
	// instead of launching it (the previous leader's task, after failover).
	Adopted bool
	Created time.Time
	Updated time.Time
	History []protocol.StateChange
}

type task struct {
	Task
	cancel  context.CancelFunc // stops the follower; nil until it runs
	killing bool
	jt      *jobTask // the job task it runs, if a job's
}

func (t *task) set(s mesos.TaskState, msg string, at time.Time) bool {
	if t.History != nil && isTerminal(t.State) {
		return false // a terminal state is final
	}
	t.State, t.Message, t.Updated = s, msg, at
	t.History = append(t.History, protocol.StateChange{State: s.String(), Message: msg, At: at})
	return true
}

// setLocked records a state change of t (see task.set) with the exit code
// the agent reported, if any, and shows it to t's job.
func (m *Master) setLocked(t *task, s mesos.TaskState, msg string, exit *int32, at time.Time) {
	if !t.set(s, msg, at) {
		return
	}
	if exit != nil {
		c := *exit
		t.ExitCode = &c
	}
	if t.jt != nil {
		m.observeLocked(t.jt, t, at)
	} else if isTerminal(s) {
		// A launch-path task has no record: its end is known once seen.
		// (A job task's container waits for its stored end: gc.go.)
		m.queueRemovalOfLocked(t.ID, t.AgentID, nil)
	}
}

func (t *task) snapshot() Task {
	out := t.Task
	out.Resources = t.Resources.Clone()
	out.History = append([]protocol.StateChange(nil), t.History...)
	if t.ExitCode != nil {
		c := *t.ExitCode
		out.ExitCode = &c
	}
	return out
}

func isTerminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_LOST,
		mesos.TASK_ERROR, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}

// LaunchTask places spec on the first agent (by id) whose free resources
// (total − reserved − allocated by legacy tasks) fit it and
// whose attributes match its constraints, and launches it there with
// LAUNCH_CONTAINER. It returns once the agent has answered: the task is
// then TASK_RUNNING, and followed with WAIT_CONTAINER until it ends. On a
// failed launch the task id is returned with the error and the task is
// TASK_ERROR (refused) or TASK_FAILED (agent unreachable).
func (m *Master) LaunchTask(ctx context.Context, spec TaskSpec) (TaskID, error) {
	if err := validateSpec(spec); err != nil {
		return "", err
	}
	id := newTaskID(spec.Name)

	m.mu.Lock()
	if !m.leading {
		m.mu.Unlock()
		return "", ErrNotLeader
	}
	if len(m.agents) == 0 {
		m.mu.Unlock()
		return "", ErrNoAgents
	}
	agentID, why := m.placementLocked().pick(spec)
	if agentID == "" {
		m.mu.Unlock()
		return "", fmt.Errorf("%w: %s needs %s; %s", ErrNoCapacity, spec.Name, spec.Resources, why)
	}
	t := m.reserveLocked(id, spec, agentID, nil, time.Now())
	cl := m.client(t.Endpoint)
	termCtx := m.termCtx
	m.mu.Unlock()

	return id, m.launch(ctx, termCtx, id, spec, agentID, cl)
}

func validateSpec(spec TaskSpec) error {
	switch {
	case strings.TrimSpace(spec.Name) == "":
		return fmt.Errorf("%w: name is required", ErrInvalidTask)
	case strings.TrimSpace(spec.Command) == "" && spec.Image == "" && len(spec.Entrypoint) == 0 && len(spec.Args) == 0:
		return fmt.Errorf("%w: command is required (or an image, entrypoint or arguments)", ErrInvalidTask)
	case spec.Resources["cpus"] <= 0 || spec.Resources["mem"] <= 0:
		return fmt.Errorf("%w: resources must hold cpus > 0 and mem > 0 (got %s)", ErrInvalidTask, spec.Resources)
	}
	for k, v := range spec.Resources {
		if v < 0 {
			return fmt.Errorf("%w: resource %s is negative", ErrInvalidTask, k)
		}
	}
	return nil
}

// placement is one round of first-fit over the registered agents in id
// order, with what each has free (total − reserved − allocated: the legacy
// path only places on unreserved resources). Placing a task takes
// its resources, so one round places many tasks on one accounting instead
// of recounting every task per placement.
type placement struct {
	ids    []string
	agents map[string]*agentState
	free   map[string]Resources
}

func (m *Master) placementLocked() *placement {
	p := &placement{ids: m.agentIDsLocked(), agents: m.agents, free: m.allocationsLocked()}
	for id, used := range p.free {
		a := m.agents[id]
		p.free[id] = a.total.Minus(a.reserved.sum()).Minus(used)
	}
	return p
}

// pick chooses spec's agent: of those that match its constraints and have
// room, the first (by id) among those matching the most preferences. It
// takes the resources. Without a fit, why says what each agent lacks.
func (p *placement) pick(spec TaskSpec) (agentID, why string) {
	best, bestScore := "", -1
	var misses []string
	for _, id := range p.ids {
		attrs := p.agents[id].info.Attributes
		if bad := unmatched(attrs, spec.Constraints); bad != "" {
			misses = append(misses, fmt.Sprintf("%s: %s", id, bad))
			continue
		}
		if !p.free[id].Fits(spec.Resources) {
			misses = append(misses, fmt.Sprintf("%s: free %s", id, p.free[id]))
			continue
		}
		score := 0
		for name, want := range spec.Preferences {
			if mismatch(attrs, name, want) == "" {
				score++
			}
		}
		if score > bestScore {
			best, bestScore = id, score
		}
	}
	if best == "" {
		return "", strings.Join(misses, "; ")
	}
	p.free[best] = p.free[best].Minus(spec.Resources)
	return best, ""
}

func unmatched(attrs []mesos.Attribute, constraints map[string]string) string {
	for name, want := range constraints {
		if bad := mismatch(attrs, name, want); bad != "" {
			return bad
		}
	}
	return ""
}

// mismatch says why attribute name does not have value want ("" if it does).
func mismatch(attrs []mesos.Attribute, name, want string) string {
	for _, a := range attrs {
		if a.Name == name {
			if got := attributeValue(a); got != want {
				return fmt.Sprintf("attribute %s is %q, not %q", name, got, want)
			}
			return ""
		}
	}
	return fmt.Sprintf("no attribute %s", name)
}

// reserveLocked records task id as placed on agentID (TASK_STAGING) ahead
// of its launch, so that later placements see its resources taken.
func (m *Master) reserveLocked(id TaskID, spec TaskSpec, agentID string, jt *jobTask, at time.Time) *task {
	t := &task{Task: Task{
		ID: id, Name: spec.Name, Command: spec.Command, AgentID: agentID, Endpoint: m.agents[agentID].endpoint,
		Resources: spec.Resources.Clone(), Created: at,
	}, jt: jt}
	m.tasks[id] = t
	m.setLocked(t, mesos.TASK_STAGING, "placed on agent "+agentID, nil, at)
	return t
}

// launch sends LAUNCH_CONTAINER for a reserved task and follows it once
// the agent runs it. A refused launch ends the task TASK_ERROR with the
// agent's message (an unknown image, say), an unreachable agent
// TASK_FAILED.
func (m *Master) launch(ctx, termCtx context.Context, id TaskID, spec TaskSpec, agentID string, cl *agentclient.Client) error {
	log := m.log.WithFields(logrus.Fields{"task": id, "agent": agentID})
	cmd, ci := spec.mesosLaunch()
	launch := &translate.Launch{
		ContainerName: spec.Name,
		ContainerID:   string(id),
		Command:       cmd,
		Container:     ci,
		Resources:     spec.Resources.Mesos(),
		KillGrace:     m.cfg.KillGrace,
	}
	if _, err := cl.Launch(ctx, string(id), launch); err != nil {
		state := mesos.TASK_FAILED
		if errors.Is(err, agentclient.ErrRejected) {
			state = mesos.TASK_ERROR
		}
		m.update(id, state, "launch failed: "+err.Error(), nil)
		log.WithError(err).Warn("legacy task launch failed")
		return fmt.Errorf("launching task %s on agent %s: %w", id, agentID, err)
	}
	m.update(id, mesos.TASK_RUNNING, "launched on agent "+agentID, nil)
	log.WithField("resources", spec.Resources.String()).Info("legacy task launched")
	m.spawn(func() { m.follow(termCtx, id, cl) })
	return nil
}

// newTaskID is "legacy-<name>-<8 hex>": readable in agent listings, unique,
// and a valid Mesos container id (no '/', '.', whitespace). Its last
// segment has 8 hex digits and a job id's (a UUID's) 12, so no task id can
// equal a job id.
func newTaskID(name string) TaskID {
	var b strings.Builder
	b.WriteString(protocol.LegacyPrefix)
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	return TaskID(b.String() + "-" + newUUID()[:8])
}

// update records a state change unless the task is gone or already ended.
func (m *Master) update(id TaskID, s mesos.TaskState, msg string, exit *int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.tasks[id]; t != nil {
		m.setLocked(t, s, msg, exit, time.Now())
	}
}

// follow waits for the task's container to end (WAIT_CONTAINER) and
// records how. It retries while the agent is unreachable; a container the
// agent does not know (it restarted) is LOST. It stops when this master
// stops leading (the next leader adopts the task from the agent's report).
func (m *Master) follow(termCtx context.Context, id TaskID, cl *agentclient.Client) {
	ctx, cancel := context.WithCancel(termCtx)
	defer cancel()
	m.mu.Lock()
	t := m.tasks[id]
	if t == nil || isTerminal(t.State) {
		m.mu.Unlock()
		return
	}
	t.cancel = cancel
	m.mu.Unlock()

	log := m.log.WithField("task", id)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		exit, err := cl.Wait(ctx, string(id))
		switch {
		case err == nil:
			state := mesos.TASK_FAILED
			switch exit.State {
			case mesos.TASK_FINISHED.String():
				state = mesos.TASK_FINISHED
			case mesos.TASK_KILLED.String():
				state = mesos.TASK_KILLED
			case "":
				if exit.Code == 0 && exit.Signal == 0 {
					state = mesos.TASK_FINISHED
				}
			}
			m.mu.Lock()
			if t := m.tasks[id]; t != nil && t.killing && state == mesos.TASK_FAILED && exit.Signal != 0 {
				state = mesos.TASK_KILLED // killed by us, by signal
			}
			m.mu.Unlock()
			msg := exit.Message
			if msg == "" {
				msg = fmt.Sprintf("exit code %d", exit.Code)
			}
			code := exit.Code
			m.update(id, state, msg, &code)
			log.WithFields(logrus.Fields{"state": state.String(), "exit_code": code}).Info("legacy task ended")
			return
		case errors.Is(err, agentclient.ErrNotFound):
			m.update(id, mesos.TASK_LOST, "the agent no longer knows the container (agent restarted?)", nil)
			log.Warn("legacy task lost: container unknown to its agent")
			return
		case ctx.Err() != nil:
			return
		}
		log.WithError(err).Debug("WAIT_CONTAINER failed; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// signal sends sig to task id's container (KILL_CONTAINER), the task going
// TASK_KILLING first. An ended task is left alone; a container its agent
// does not know is TASK_LOST.
func (m *Master) signal(ctx context.Context, id TaskID, sig syscall.Signal) error {
	m.mu.Lock()
	if !m.leading {
		m.mu.Unlock()
		return ErrNotLeader
	}
	t := m.tasks[id]
	if t == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownTask, id)
	}
	if isTerminal(t.State) {
		m.mu.Unlock()
		return nil
	}
	if !t.killing { // a repeated kill signals again, with no new state
		t.killing = true
		m.setLocked(t, mesos.TASK_KILLING, "kill requested", nil, time.Now())
	}
	cl := m.client(t.Endpoint)
	m.mu.Unlock()

	if err := cl.Kill(ctx, string(id), sig); err != nil {
		if errors.Is(err, agentclient.ErrNotFound) {
			m.update(id, mesos.TASK_LOST, "the agent no longer knows the container", nil)
			return nil
		}
		return fmt.Errorf("sending %v to task %s: %w", sig, id, err)
	}
	return nil
}

// Tasks lists the tasks this master knows (placed or adopted while it
// leads), oldest first.
func (m *Master) Tasks() []Task {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Task, 0, len(m.tasks))
	for _, t := range m.tasks {
		out = append(out, t.snapshot())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Task returns one task.
func (m *Master) Task(id TaskID) (Task, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[id]
	if t == nil {
		return Task{}, false
	}
	return t.snapshot(), true
}

// KillTask sends SIGTERM to the task's container, and SIGKILL after
// KillGrace if it still runs; the task goes TASK_KILLING, then TASK_KILLED
// when its follower sees it end. Killing an ended task is a no-op. It
// returns once SIGTERM is delivered.
//
// A job's tasks are not killed through here but by the job loop
// (killSignalsLocked), which stores the kill first and escalates to
// SIGKILL itself, across failovers.
func (m *Master) KillTask(ctx context.Context, id TaskID) error {
	m.mu.Lock()
	if !m.leading {
		m.mu.Unlock()
		return ErrNotLeader
	}
	t := m.tasks[id]
	if t == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownTask, id)
	}
	cl := m.client(t.Endpoint)
	termCtx := m.termCtx
	m.mu.Unlock()

	if err := m.signal(ctx, id, syscall.SIGTERM); err != nil {
		return err
	}
	m.spawn(func() {
		select {
		case <-termCtx.Done():
			return
		case <-time.After(m.cfg.KillGrace):
		}
		if t, ok := m.Task(id); ok && !isTerminal(t.State) {
			kctx, cancel := context.WithTimeout(termCtx, 10*time.Second)
			defer cancel()
			if err := cl.Kill(kctx, string(id), syscall.SIGKILL); err != nil && !errors.Is(err, agentclient.ErrNotFound) {
				m.log.WithError(err).WithField("task", id).Warn("SIGKILL after the grace period failed")
			}
		}
	})
	return nil
}
