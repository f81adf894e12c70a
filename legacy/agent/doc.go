// Package agent is the "old world in one binary": a reference Mesos agent
// that answers the Mesos v1 agent operator API (POST /api/v1) for standalone
// containers and runs each container's command as a real host process group.
// A bridge built on mesos-go's agent/calls, httpcli and httpcli/httpagent
// talks to it as to a Mesos agent.
//
// Supported calls: GET_HEALTH, GET_VERSION, GET_AGENT, GET_METRICS (the
// host's real figures: Mesos's system/* gauges, plus work_dir/* figures of
// the sandbox file system that Mesos does not have; metrics.go),
// GET_CONTAINERS (standalone containers are listed only with
// show_standalone=true, as in Mesos), LAUNCH_CONTAINER, WAIT_CONTAINER,
// KILL_CONTAINER, REMOVE_CONTAINER and READ_FILE; for exec and attach,
// LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_INPUT/OUTPUT and the
// *_NESTED_CONTAINER calls, for sessions nested one level in standalone
// containers (session.go). Other known call types answer 501.
//
// What a container is here, and why it differs from Mesos:
//
//   - A process group started with setpgid, stdin /dev/null, stdout and
//     stderr appended to <work-dir>/sandboxes/<id>/{stdout,stderr}, working
//     directory the sandbox. There are no namespaces or cgroups: resources are
//     accepted and reported as limits, never enforced.
//   - The sandbox stands in for the container's root file system. Volume
//     container paths and an image's workingDir are therefore taken relative
//     to the sandbox ("/etc/config" becomes "<sandbox>/etc/config"); a path
//     that would leave the sandbox is refused with 400.
//   - Images come from a catalog of Docker-style configs (entrypoint, cmd,
//     env, workingDir) applied to host binaries; nothing is pulled. An image
//     missing from the catalog is a "pull failure" (400) when it would have
//     to supply the command.
//   - CommandInfo.user is ignored (with a warning) unless it is the agent's
//     own user: the agent runs unprivileged and cannot switch users.
//     CommandInfo.uris are ignored (there is no fetcher). Secrets must arrive
//     as VALUE secrets; REFERENCE secrets are refused (400).
//   - When the leading process exits the rest of its group is SIGKILLed, as
//     Mesos destroys a container's cgroup once its init process is gone.
//   - The exit status stays available to WAIT_CONTAINER until
//     REMOVE_CONTAINER, and the id stays taken until then (a repeated LAUNCH
//     answers 200 and does not run anything).
//   - Without recovery (Config.Recover empty, the library default) the
//     containers are children of the agent process: Close (and Run on
//     shutdown) SIGKILLs every container, and a new agent starts empty.
//
// Many agents in one process (Config.Count, --count N; config.go Agents,
// run.go): a fleet to test on, with the pid and descriptor budget of one
// machine. Agent i of N is derived from the one set of flags: work dir
// <work-dir>/agent-<i> (its own sandboxes, checkpoints, agent.lock and
// launches.log), its own listener on the --listen port + i (port 0: an
// ephemeral one each), id "<agent-id>-<i>" (or the default derived from
// host name and its port), advertise URL port + i, resources and
// attributes taken from "|"-separated alternatives (i mod their number),
// attributes plus agent_index:<i>. Each registers with the master on its
// own and answers only for itself. With --count 1, the default, nothing
// is derived: ids, ports and paths are as they always were. Shared per
// process rather than per agent, because they are per process or per
// machine: one reaper (reaper.go: waitid(P_ALL) sees every child of the
// process), one /dev/null, one supervisor (below), one ZooKeeper session
// following the leading master and one connection pool to it. Per agent
// remain what serving needs: a listener and its accept loop, a
// registration loop, a supervisor watch stream.
//
// Agent recovery (Config.Recover, --recover; supervisor_linux.go,
// recover_linux.go, checkpoint.go), after Mesos' --recover:
//
//   - The containers' parent is a supervisor: the agent's binary re-executed
//     (MaybeSupervise, which main must call first, once per process), in a
//     session of its own (setsid: SIGKILL of the agent's process group
//     misses it) with its working directory its root (stack.sh's cwd sweep
//     finds it). The root is the agent's work dir, or with --count the
//     parent <work-dir> of every agent's: one supervisor serves all the
//     agents of a process, each as a tenant identified by its work dir
//     relative to the root. It forks with the same no-pidfd ForkExec, reaps
//     with one waitid loop, signals containers for KILL_CONTAINER, and
//     checkpoints each container in its agent's work dir,
//     <agent-work-dir>/meta/containers/<sha1(id)>.json (pid, /proc start
//     time, limits, last kill signal, exit status), by write-to-temp and
//     rename.
//   - The agent (API) process talks to it over <root>/supervisor.sock: one
//     short connection per launch/kill/forget call and one long-lived watch
//     stream per agent (a snapshot of every checkpointed container of that
//     agent, then one event per exit of one of them). Every request names
//     the agent's tenant. Nothing per container is kept open on either
//     side, and no goroutine waits per container.
//   - Start-up: the agent takes <work-dir>/agent.lock (one agent per work
//     dir), connects to the supervisor or starts one (<root>/supervisor.lock:
//     one supervisor per root; the agents of a process start one between
//     them, never one each, also when they lose it together), and adopts
//     the snapshot: live containers are running again (GET_CONTAINERS, WAIT
//     blocks, KILL, READ_FILE), ended ones answer WAIT with their real
//     status until REMOVE. With "cleanup" every live one is SIGKILLed and
//     WAIT answers TASK_KILLED, REASON_AGENT_RESTARTED.
//   - The supervisor adopts an agent's work dir on the first request that
//     names it (a single agent's root at once, when it holds checkpoints)
//     and holds <agent-work-dir>/supervisor.lock from then on, so two
//     supervisors (one of a --count process, one of a lone agent started on
//     the same dir) never own the same checkpoints.
//   - A supervisor that finds checkpoints of live containers it did not
//     start (its predecessor died; they are not its children and cannot be
//     reaped or reported faithfully) kills them, but only after checking that
//     /proc/<pid>/stat's start time still matches the checkpoint, so a
//     recycled pid is never signalled; they end as killed during agent
//     recovery. A pid whose process is gone ends with an unknown status.
//     Nothing is left running unmanaged.
//   - A sandbox no recovered container owns (the agent died in a launch
//     before the process started, or in a REMOVE after its checkpoint went)
//     is removed at start: no call could reach it any more.
//   - Close/SIGTERM leaves the containers running (the supervisor outlives
//     the agent); a supervisor with no live container and no agent connected
//     exits after 10 s. Exec sessions are the agent process's own children,
//     started with PR_SET_PDEATHSIG=SIGKILL: they end with the agent and are
//     not recovered, as in Mesos.
//   - <work-dir>/launches.log gets one JSON line per container start and
//     end, in both modes: {"t","event":"launch","id","pid"} and
//     {"t","event":"exit","id","pid","code","signal"} (code is the exit
//     status, or 128+signal; an unobserved end has code -1 and
//     "unknown":true). Single O_APPEND writes, never truncated.
//
// HTTP authentication (Config.HTTPAuth: --authenticate_http_readwrite,
// --authenticate_http_readonly, --http_credentials; package mesosauth), as
// a Mesos agent's, HTTP Basic against the credentials file. The realm of
// each request:
//
//   - open, always: GET /health and the GET_HEALTH call (the liveness
//     probes stack.sh and the bridge poll).
//   - read-only, protected by either flag: GET_VERSION, GET_AGENT,
//     GET_CONTAINERS and the other GET_* calls, READ_FILE, LIST_FILES,
//     WAIT_CONTAINER, WAIT_NESTED_CONTAINER, ATTACH_CONTAINER_OUTPUT.
//   - read-write, protected by --authenticate_http_readwrite:
//     LAUNCH_CONTAINER, KILL_CONTAINER, REMOVE_CONTAINER,
//     LAUNCH_NESTED_CONTAINER(_SESSION), KILL_/REMOVE_NESTED_CONTAINER,
//     ATTACH_CONTAINER_INPUT (refused before its stream is read), and any
//     call type not listed above.
//
// Mesos puts all of /api/v1 in its read-write realm, so with
// --authenticate_http_readwrite every call needs credentials there too
// (GET_HEALTH is open here because the probes poll it); its read-only
// realm holds the read endpoints (/files/read, /state, /containers), whose
// v1 equivalents are the read-only calls above. A call is decoded before
// it is authenticated, because its realm is its type (its body is bounded
// as every call's). A refused call gets 401 with
// `WWW-Authenticate: Basic realm="mesos"`; the credentials are never
// logged. The agent sends Config.Credential (--credential) with every
// registration, for a master that demands it.
//
// Invariants and lock rules of recovery:
//
//   - The supervisor signals a container only under its mutex, which its
//     reaper holds from kill-the-group through wait4 to recording the exit,
//     so a reaped pid is never signalled; the agent never signals
//     supervised containers itself.
//   - A launch checkpoint is written before the supervisor answers with the
//     pid; an exit checkpoint before the exit event is sent. A watch stream
//     is registered under the supervisor's mutex together with its snapshot,
//     so no exit falls between them. Lock order in the supervisor: its mutex,
//     then a watcher's.
//   - In the agent, a.mu guards the container table; no supervisor call is
//     made with a.mu held (KILL and REMOVE drop it around the call). An exit
//     that overtakes its launch reply is parked on the container (early) and
//     applied when the pid is registered.
//   - REMOVE drops the supervisor's checkpoint before freeing the id, so a
//     new LAUNCH of the id never meets the old entry.
//   - In the supervisor a tenant's table and watchers are guarded by the
//     supervisor's one mutex; a tenant is adopted (its orphans killed)
//     outside it, and requests naming it wait until it is.
//   - In the API process the reaper is shared: Agent.mu, then the
//     reaper's mutex (an agent registers and drops its pids under its own
//     lock); launchers of every agent hold the reaper's forkMu for reading
//     from fork until their pid is registered.
//
// Scale: the agent keeps no file descriptor per container (children are
// started with syscall.ForkExec, which unlike os.StartProcess keeps no pidfd)
// and one goroutine per process reaps all children via waitid(P_ALL,
// WNOWAIT), so 10,000
// running containers plus 10,000 WAIT long-polls fit in a 20,000 open-file
// limit (each long-poll costs its connection's descriptor only). Children
// that other code in the same process starts are left for their owners.
package agent
