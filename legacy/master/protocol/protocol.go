// Package protocol is the reference master's private agent protocol:
// JSON over HTTP, because Mesos agents talk to masters with libprocess
// messages (RegisterSlaveMessage, ReregisterSlaveMessage, pings), which
// this project does not replicate. It is shared by legacy/master (server)
// and legacy/agent (client) and by nothing else: the bridge only ever uses
// the master's public operator API.
//
// One call does it all:
//
//	POST /internal/agents/register   Content-Type: application/json
//	  RegisterRequest → 200 RegisterResponse
//
// The first request from an agent id registers it; every later one
// re-registers it with its full state (the containers it runs), which is
// also its heartbeat. An agent sends one at start, whenever the leading
// master changes, right after every LAUNCH/KILL/REMOVE it served, and at
// least every RegisterResponse.HeartbeatInterval. A master that has not
// heard from an agent for its --agent-timeout removes it.
//
// A master that does not lead answers 307 with Location set to the
// leader's same path (Go's http.Client follows it, body and all), or 503
// when it knows no leader. 400 means the request is malformed.
//
// The master also serves its legacy launch path, the first brick of the
// legacy job API:
//
//	POST   /internal/tasks          TaskRequest → 201 TaskCreated
//	GET    /internal/tasks          → 200 []TaskView
//	GET    /internal/tasks/{id}     → 200 TaskView | 404
//	DELETE /internal/tasks/{id}     → 202 (kill requested) | 404
//
// POST answers 409 when no registered agent has room for the task (or
// matches its constraints) and 503 when no agent is registered at all.
// Errors are JSON {"error": "..."}.
package protocol

import (
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// Paths of the private endpoints.
const (
	RegisterPath = "/internal/agents/register"
	TasksPath    = "/internal/tasks"
)

// Container kinds, told apart by container id prefix: the bridge's own
// containers start with BridgePrefix ("vkt-"), everything else on an agent
// is the legacy platform's (tasks the master placed start with
// LegacyPrefix, "legacy-").
const (
	KindBridge = "bridge"
	KindLegacy = "legacy"

	BridgePrefix = "vkt-"
	LegacyPrefix = "legacy-"
)

// KindOf classifies a container id.
func KindOf(containerID string) string {
	if len(containerID) >= len(BridgePrefix) && containerID[:len(BridgePrefix)] == BridgePrefix {
		return KindBridge
	}
	return KindLegacy
}

// RegisterRequest is an agent's registration, re-registration and heartbeat.
type RegisterRequest struct {
	// AgentInfo is what GET_AGENT answers (id, hostname, port, resources,
	// attributes), in mesos-go's JSON form.
	AgentInfo mesos.AgentInfo `json:"agent_info"`
	// Endpoint is the agent's base URL (its operator API is
	// Endpoint+"/api/v1"), e.g. "http://127.0.0.1:5051".
	Endpoint string `json:"endpoint"`
	// Version is the agent's GET_VERSION version.
	Version string `json:"version,omitempty"`
	// Containers are the containers the agent runs now (launched and not yet
	// ended), all of them. The master accounts the legacy ones against the
	// agent's resources; the bridge's are not counted, as in Mesos (the
	// bridge reserves its room instead).
	Containers []Container `json:"containers"`
	// Reservations are the dynamic reservations the agent holds, as the
	// last registration answer gave them (Mesos agents checkpoint theirs):
	// a master that does not know the agent (a new leader) takes them.
	Reservations []mesos.Resource `json:"reservations,omitempty"`
	// Fresh says the agent comes without its former self: it shut down every
	// container on a master's refusal (410 Gone: the master removed it) and
	// registers as a new agent. Mesos tells the two apart by message
	// (RegisterSlaveMessage vs ReregisterSlaveMessage), and a removed agent
	// comes back under a new id; the reference agent keeps its configured id
	// (the stack names nodes after it), so a master accepts a removed id
	// again only when Fresh.
	Fresh bool `json:"fresh,omitempty"`
}

// Container is one running container as an agent reports it.
type Container struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // KindBridge or KindLegacy
	// Resources are the scalar resources the container was launched with,
	// by Mesos resource name ("cpus", "mem" in MB, "disk" in MB, "gpus").
	Resources map[string]float64 `json:"resources"`
}

// RegisterResponse acknowledges a registration.
type RegisterResponse struct {
	MasterID string `json:"master_id"`
	AgentID  string `json:"agent_id"`
	// Registered is true when this request registered the agent (it was
	// unknown to this master); false for a re-registration/heartbeat.
	Registered bool `json:"registered"`
	// HeartbeatIntervalMS is how often the master wants to hear from the
	// agent: a fifth of its agent timeout, so four heartbeats may be lost
	// before the agent is removed.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
	// Reservations are the agent's dynamic reservations as the master
	// holds them (Mesos' CheckpointResourcesMessage): the agent keeps them
	// and reports them in its next registrations.
	Reservations []mesos.Resource `json:"reservations,omitempty"`
}

// HeartbeatInterval returns HeartbeatIntervalMS as a duration.
func (r RegisterResponse) HeartbeatInterval() time.Duration {
	return time.Duration(r.HeartbeatIntervalMS) * time.Millisecond
}

// TaskRequest asks the master to place and launch one legacy task.
type TaskRequest struct {
	Name    string `json:"name"`
	Command string `json:"command"` // run with /bin/sh -c
	// Resources: "cpus", "mem" (MB), optionally "disk" (MB) and "gpus".
	Resources map[string]float64 `json:"resources"`
	// Constraints are attribute equality constraints (text attributes, or
	// scalars compared in their decimal form): the task only goes to an
	// agent whose attribute NAME has value VALUE.
	Constraints map[string]string `json:"constraints,omitempty"`
}

// TaskCreated answers a successful POST /internal/tasks.
type TaskCreated struct {
	ID      string `json:"id"`
	AgentID string `json:"agent_id"`
}

// TaskView is a task as GET /internal/tasks shows it.
type TaskView struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	AgentID     string             `json:"agent_id"`
	Command     string             `json:"command,omitempty"`
	Resources   map[string]float64 `json:"resources"`
	State       string             `json:"state"` // TASK_STAGING, TASK_RUNNING, ...
	Message     string             `json:"message,omitempty"`
	ExitCode    *int32             `json:"exit_code,omitempty"`
	Adopted     bool               `json:"adopted,omitempty"`
	Updated     time.Time          `json:"updated"`
	StateChange []StateChange      `json:"history"`
}

// StateChange is one entry of a task's history.
type StateChange struct {
	State   string    `json:"state"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// ErrorBody is the body of every error answer of the private endpoints.
type ErrorBody struct {
	Error string `json:"error"`
}
