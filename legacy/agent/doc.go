// Package agent is the "old world in one binary": a reference Mesos agent
// that answers the Mesos v1 agent operator API (POST /api/v1) for standalone
// containers and runs each container's command as a real host process group.
// A bridge built on mesos-go's agent/calls, httpcli and httpcli/httpagent
// talks to it as to a Mesos agent.
//
// Supported calls: GET_HEALTH, GET_VERSION, GET_AGENT, GET_CONTAINERS
// (standalone containers are listed only with show_standalone=true, as in
// Mesos), LAUNCH_CONTAINER, WAIT_CONTAINER, KILL_CONTAINER, REMOVE_CONTAINER
// and READ_FILE; for exec and attach, LAUNCH_NESTED_CONTAINER_SESSION,
// ATTACH_CONTAINER_INPUT/OUTPUT and the *_NESTED_CONTAINER calls, for
// sessions nested one level in standalone containers (session.go). Other
// known call types answer 501.
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
//   - Containers are not preserved across an agent restart: Close (and Run
//     on shutdown) SIGKILLs every container, and a new agent starts empty.
//     If the agent dies without Close, its process groups are orphaned.
//
// Scale: the agent keeps no file descriptor per container (children are
// started with syscall.ForkExec, which unlike os.StartProcess keeps no pidfd)
// and one goroutine reaps all children via waitid(P_ALL, WNOWAIT), so 10,000
// running containers plus 10,000 WAIT long-polls fit in a 20,000 open-file
// limit (each long-poll costs its connection's descriptor only). Children
// that other code in the same process starts are left for their owners.
package agent
