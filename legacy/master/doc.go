// Package master is the reference legacy master: the control plane of the
// "old world" that the bridge migrates away from, small enough to run on a
// laptop and faithful where the bridge and the legacy job API look at it.
//
// Leader election is Mesos': each master creates an ephemeral sequential
// znode "json.info_<10-digit seq>" under the --zk path holding its
// MasterInfo as JSON (id, ip as a uint32 in network byte order, port, pid,
// hostname, version, address {hostname, ip, port}). The lowest sequence
// leads; a follower watches only its predecessor; a master whose session
// ends (expiry, closed connection) steps down and contends again with a
// new znode; a leader cut off from ZooKeeper for half its session timeout
// steps down before its session can expire and another master take over.
// Without --zk the master is standalone and always leads.
//
// Agents register over a private JSON protocol (package protocol; Mesos
// agents use libprocess messages, not replicated here): a registration
// carries the AgentInfo, the agent's URL and every container it runs
// (bridge "vkt-" containers and legacy tasks alike); its repetitions are
// the heartbeat. An agent not heard from for --agent-timeout is removed:
// it disappears from GET_AGENTS (as in Mesos, removed agents are not
// listed; recovered_agents stays empty because this master keeps no
// registry across failovers) and its live legacy tasks become TASK_LOST.
// Its id is remembered (up to maxRemovedAgents): when it comes back, its
// re-registration is refused with 410 Gone, and the agent, as a Mesos agent
// the master shuts down, kills and removes every container, then registers
// anew with nothing of its former self (RegisterRequest.Fresh). Mesos gives
// such an agent a new id; the reference agent keeps its configured one. The
// ids are not kept across failovers (no registry): a new leader accepts them.
// A newly elected leader starts empty: agents re-register as soon as they
// see the leader change in ZooKeeper, and the legacy containers they report
// are adopted as TASK_RUNNING tasks.
//
// The operator API (POST /api/v1, protobuf or JSON, the agent's wire
// rules, see legacy/operatorapi) answers GET_HEALTH and GET_VERSION on any
// master and GET_MASTER, GET_AGENTS, GET_TASKS, RESERVE_RESOURCES and
// UNRESERVE_RESOURCES on the leader; a follower answers those with 307 and
// Location set to the leader's /api/v1, as Mesos does. mesos-go's httpcli
// never follows redirects: it reports apierrors.CodeNotLeader, and its
// callers re-resolve the leader (discovery.AgentWatcher does, from
// ZooKeeper or from the Location). allocated_resources in GET_AGENTS
// counts the legacy tasks only: as in Mesos, the bridge's standalone
// containers bypass the allocator, and the bridge keeps the legacy path
// off its room with dynamic reservations for its role (reserve.go: Mesos
// semantics, reserved resources listed in total_resources with their
// reservation, never used for placement; the agents hold and report them,
// so they survive a failover as Mesos' agent checkpoints do).
//
// The legacy launch path (LaunchTask, POST /internal/tasks) places a shell
// command first-fit over agents in id order by free resources (total −
// reserved − allocated) and attribute constraints, launches it with LAUNCH_CONTAINER
// through legacy/agentclient under the container id "legacy-<name>-<hex>",
// and follows it with WAIT_CONTAINER: TASK_STAGING → TASK_RUNNING →
// TASK_FINISHED | TASK_FAILED | TASK_KILLED (KillTask: TASK_KILLING first,
// SIGTERM, SIGKILL after the kill grace), or TASK_LOST / TASK_ERROR.
//
// On those tasks the master serves the Titus v3 job API natively under
// /api/v3/ (legacyapi.NewHandler over JobAPI): the old world's own job
// API, which the gateway reaches as its legacy backend. A follower answers
// 307 to the leader, a master that knows no leader 503. Job ids are
// "legacy-job-<uuid>"; task ids are the master's task ids. One job loop
// per master (jobs_loop.go), run on every change and every second, brings
// each job towards its descriptor: a batch job keeps one task per index
// until it succeeds or has used its retries (immediate, delayed or
// exponential), kills tasks past runtimeLimitSec; a service job keeps
// capacity.desired tasks, replacing ended ones and killing the newest on a
// scale-down. Tasks with no room stay Accepted and are placed by the loop,
// older jobs first, on one accounting of free resources per pass. Every
// task status is its Mesos state read through statemachine.TitusOfMesos;
// the job layer only rewrites the reason of tasks it killed itself
// (killed, runtimeLimitExceeded, scaledDown).
//
// Jobs survive failovers: their records live in ZooKeeper beside the
// election path (--jobs-zk-path, default <zk path>-jobs; layout in
// jobs_store.go), written through the leader's own session behind a check
// of its election znode. A task's placement is stored before it is
// launched, so a new leader finds in its records every task an agent may
// run: it loads them before serving the job API or placing anything, adopts
// the running tasks from the agents' reports by id, asks an agent with
// WAIT_CONTAINER how a recorded task that it no longer runs ended, and
// counts a task lost when its agent does not come back within the agent
// timeout. Without --zk jobs live in memory only.
//
// Nothing lost, nothing twice. Invariants of the job layer, each kept by
// the one job loop and the API calls, never by a goroutine per task:
//
//   - A kill is stored before it acts or is acknowledged. KillTask,
//     KillJob and UpdateCapacity (scale-down) record each task's kill
//     (reason, time, grace) in its task record before answering (503 if
//     they could not), and the loop signals only tasks whose kill is
//     stored (killStored). A new leader loads the kills with the records:
//     it sends SIGTERM again to a task it adopted, SIGKILL once the
//     recorded grace has passed since, until the agent reports the
//     container ended; the task then ends Finished with the stored reason
//     (killed, scaledDown, runtimeLimitExceeded). A killed task is never
//     live for its job, so it is replaced at most once (a service kill
//     without shrink) and never chosen again by a scale-down.
//   - A container is removed only after its end is stored. The exit status
//     the agent keeps until REMOVE_CONTAINER is how a new leader learns
//     how a task ended while no master followed it; once the Finished
//     record is stored the master REMOVEs the container (gc.go), retrying
//     a bounded number of times when it fails or the agent is away.
//   - Finished work is bounded. The leader prunes finished jobs beyond
//     --job-retention-count or older than --job-retention-age, and a job's
//     finished tasks beyond --task-retention-per-job, from memory and
//     ZooKeeper, a bounded number of records per pass; a pruned id answers
//     404. Batch tasks record their attempt, so pruned tries still count
//     against the retry policy.
//
// Lock order: storeMu before mu. mu guards all in-memory state; storeMu
// serializes store writes, each taking its records under mu (flushJobs),
// and is held across a whole prune pass, so no write of a pruned record
// can land after its delete. No agent or ZooKeeper call is made under mu.
package master
