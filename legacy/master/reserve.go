package master

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/sirupsen/logrus"

	"github.com/vk-titus/vk-titus/legacy/mesosauth"
	"github.com/vk-titus/vk-titus/legacy/operatorapi"
)

// Dynamic reservations (RESERVE_RESOURCES, UNRESERVE_RESOURCES), with
// Mesos' semantics for scalar resources:
//
//   - Resources carry the refined reservation format: reservations with
//     exactly one entry {type: DYNAMIC, role, principal}. The pre-refinement
//     fields (resource role other than "*", reservation) and reservation
//     stacks (refinements) are refused with 400, as are labels.
//   - RESERVE takes unreserved room an agent has available: its total minus
//     everything reserved minus what its legacy tasks hold (Mesos cannot
//     reserve resources a task holds). Not enough: 409 Conflict.
//     UNRESERVE gives back what is reserved for that role and principal;
//     more than that: 409. Success is 202 Accepted, as in Mesos.
//   - With HTTP authentication on, the reservations' principal must be the
//     caller's (Mesos refuses a mismatch with 400).
//   - Reserved resources are listed in GET_AGENTS' total_resources with
//     their reservation, and the legacy launch path never places on them.
//
// The master keeps no registry, so like a Mesos agent the reference agent
// holds its reservations (the registration answer carries them, as Mesos'
// CheckpointResourcesMessage does) and reports them when it registers: a
// new leader, which does not know the agent, takes them from that report.
// A master that knows the agent keeps its own view. A reservation made
// less than a heartbeat before a failover may be lost; its reserver sees it
// gone in GET_AGENTS and reserves again.

// reservationKey is one reservation owner: a role and the principal that
// reserved (Mesos keeps reservations of different principals apart).
type reservationKey struct {
	Role, Principal string
}

// reservations are an agent's reserved scalars by owner.
type reservations map[reservationKey]Resources

// sum is everything reserved, all owners together.
func (rs reservations) sum() Resources {
	out := Resources{}
	for _, r := range rs {
		out.Add(r)
	}
	return out
}

// keys are rs's owners in a stable order.
func (rs reservations) keys() []reservationKey {
	keys := make([]reservationKey, 0, len(rs))
	for k := range rs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Role != keys[j].Role {
			return keys[i].Role < keys[j].Role
		}
		return keys[i].Principal < keys[j].Principal
	})
	return keys
}

// mesos renders rs as reserved scalar resources, owners in a stable order.
func (rs reservations) mesos() []mesos.Resource {
	var out []mesos.Resource
	for _, k := range rs.keys() {
		for _, r := range rs[k].Mesos() {
			typ := mesos.Resource_ReservationInfo_DYNAMIC
			role := k.Role
			ri := mesos.Resource_ReservationInfo{Type: &typ, Role: &role}
			if k.Principal != "" {
				p := k.Principal
				ri.Principal = &p
			}
			r.Reservations = []mesos.Resource_ReservationInfo{ri}
			out = append(out, r)
		}
	}
	return out
}

// parseReservations reads resources in the refined reservation format into
// owners and amounts. principal, when not empty, is the authenticated
// caller, whom every reservation must name. Errors are 400s.
func parseReservations(rs []mesos.Resource, principal string) (reservations, error) {
	if len(rs) == 0 {
		return nil, operatorapi.Errorf(http.StatusBadRequest, "no resources given")
	}
	out := reservations{}
	for _, r := range rs {
		switch {
		case r.Scalar == nil:
			return nil, operatorapi.Errorf(http.StatusBadRequest, "resource %q: only scalar resources can be reserved here", r.Name)
		case r.Scalar.Value <= 0:
			return nil, operatorapi.Errorf(http.StatusBadRequest, "resource %q: the amount must be positive", r.Name)
		case (r.Role != nil && *r.Role != "*") || r.Reservation != nil:
			return nil, operatorapi.Errorf(http.StatusBadRequest, "resource %q: use the refined reservation format (reservations), not role/reservation", r.Name)
		case len(r.Reservations) != 1:
			return nil, operatorapi.Errorf(http.StatusBadRequest, "resource %q: expecting exactly one reservation, got %d", r.Name, len(r.Reservations))
		}
		ri := r.Reservations[0]
		if ri.GetType() != mesos.Resource_ReservationInfo_DYNAMIC {
			return nil, operatorapi.Errorf(http.StatusBadRequest, "resource %q: only DYNAMIC reservations can be made or removed, got %s", r.Name, ri.GetType())
		}
		if err := validRole(ri.GetRole()); err != nil {
			return nil, operatorapi.Errorf(http.StatusBadRequest, "resource %q: %v", r.Name, err)
		}
		if ri.Labels != nil && len(ri.Labels.Labels) > 0 {
			return nil, operatorapi.Errorf(http.StatusBadRequest, "resource %q: reservation labels are not supported", r.Name)
		}
		if principal != "" && ri.GetPrincipal() != principal {
			return nil, operatorapi.Errorf(http.StatusBadRequest,
				"resource %q: the reservation's principal %q is not the authenticated principal %q", r.Name, ri.GetPrincipal(), principal)
		}
		k := reservationKey{Role: ri.GetRole(), Principal: ri.GetPrincipal()}
		if out[k] == nil {
			out[k] = Resources{}
		}
		out[k][r.Name] += r.Scalar.Value
	}
	return out, nil
}

// validRole follows Mesos' role name rules (roles.cpp): not empty, not "*",
// ".", "..", no leading "-", no whitespace, slash or backslash.
func validRole(role string) error {
	switch {
	case role == "":
		return fmt.Errorf("the reservation has no role")
	case role == "*" || role == "." || role == "..":
		return fmt.Errorf("role %q cannot hold reservations", role)
	case strings.HasPrefix(role, "-"):
		return fmt.Errorf("role %q must not start with '-'", role)
	case strings.ContainsAny(role, " \t\n\r\f\v/\\"):
		return fmt.Errorf("role %q must not contain whitespace or slashes", role)
	}
	return nil
}

// reserve applies RESERVE_RESOURCES (see the top of this file).
func (m *Master) reserve(agentID string, want reservations) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.reservableAgentLocked(agentID)
	if err != nil {
		return err
	}
	total := Resources{}
	for _, r := range want {
		total.Add(r)
	}
	free := m.unreservedLocked(agentID)
	if !free.Fits(total) {
		return operatorapi.Errorf(http.StatusConflict,
			"agent %s does not have %s available to reserve: %s unreserved and not held by tasks", agentID, total, free)
	}
	for k, r := range want {
		if a.reserved[k] == nil {
			a.reserved[k] = Resources{}
		}
		a.reserved[k].Add(r)
	}
	m.log.WithFields(logrus.Fields{"agent": agentID, "resources": total.String(), "reserved": a.reserved.sum().String()}).Info("resources reserved")
	return nil
}

// unreserve applies UNRESERVE_RESOURCES (see the top of this file).
func (m *Master) unreserve(agentID string, give reservations) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.reservableAgentLocked(agentID)
	if err != nil {
		return err
	}
	for k, r := range give {
		if !a.reserved[k].Fits(r) {
			return operatorapi.Errorf(http.StatusConflict,
				"agent %s does not have %s reserved for role %q and principal %q (reserved: %s)", agentID, r, k.Role, k.Principal, a.reserved[k])
		}
	}
	freed := Resources{}
	for k, r := range give {
		left := a.reserved[k].Minus(r)
		if isZero(left) {
			delete(a.reserved, k)
		} else {
			a.reserved[k] = left
		}
		freed.Add(r)
	}
	m.kickJobs() // room for the job loop
	m.log.WithFields(logrus.Fields{"agent": agentID, "resources": freed.String(), "reserved": a.reserved.sum().String()}).Info("resources unreserved")
	return nil
}

// isZero: nothing of r is left (within float error).
func isZero(r Resources) bool {
	for _, v := range r {
		if v > epsilon {
			return false
		}
	}
	return true
}

// reservableAgentLocked is the leading master's agent by id; Mesos answers
// 400 for an agent it does not know.
func (m *Master) reservableAgentLocked(agentID string) (*agentState, error) {
	if !m.leading {
		return nil, ErrNotLeader
	}
	a := m.agents[agentID]
	if a == nil {
		return nil, operatorapi.Errorf(http.StatusBadRequest, "No agent found with specified ID %q", agentID)
	}
	return a, nil
}

// unreservedLocked is what agentID has free for a reservation or a legacy
// task: its total minus every reservation minus what its tasks hold.
func (m *Master) unreservedLocked(agentID string) Resources {
	a := m.agents[agentID]
	return a.total.Minus(a.reserved.sum()).Minus(m.allocationsLocked()[agentID])
}

// adoptReservations takes the reservations an agent reports when it
// registers with a master that does not know it (a new leader). Reports
// that are malformed or exceed the agent's total are dropped with a
// warning: the agent's total is the bound, whatever it says it holds.
func adoptReservations(reported []mesos.Resource, total Resources, log logrus.FieldLogger) reservations {
	if len(reported) == 0 {
		return reservations{}
	}
	rs, err := parseReservations(reported, "")
	if err == nil && !total.Fits(rs.sum()) {
		err = fmt.Errorf("reserved %s exceeds the agent's total %s", rs.sum(), total)
	}
	if err != nil {
		log.WithError(err).Warn("the agent's reported reservations are dropped")
		return reservations{}
	}
	log.WithField("reserved", rs.sum().String()).Info("reservations taken from the agent's report")
	return rs
}

// totalResources is GET_AGENTS' total_resources: the agent's resources with
// the reserved scalars split off and listed with their reservations.
func totalResources(info []mesos.Resource, reserved reservations) []mesos.Resource {
	left := reserved.sum()
	out := make([]mesos.Resource, 0, len(info))
	for _, r := range info {
		if r.Scalar == nil || left[r.Name] <= 0 {
			out = append(out, r)
			continue
		}
		take := min(left[r.Name], r.Scalar.Value)
		left[r.Name] -= take
		if v := r.Scalar.Value - take; v > epsilon {
			u := r
			u.Scalar = &mesos.Value_Scalar{Value: v}
			out = append(out, u)
		}
	}
	return append(out, reserved.mesos()...)
}

// serveReservation runs a RESERVE_RESOURCES or UNRESERVE_RESOURCES call
// for the request's authenticated principal (none when the master does not
// authenticate read-write calls).
func (m *Master) serveReservation(r *http.Request, call *master.Call) error {
	principal := ""
	if m.auth.Protects(mesosauth.ReadWrite) {
		principal, _, _ = r.BasicAuth() // Allow has checked it
	}
	switch call.Type {
	case master.Call_RESERVE_RESOURCES:
		c := call.GetReserveResources()
		if c == nil {
			return operatorapi.Errorf(http.StatusBadRequest, "Expecting 'reserve_resources' to be present")
		}
		want, err := parseReservations(c.Resources, principal)
		if err != nil {
			return err
		}
		return m.reserve(c.AgentID.Value, want)
	default:
		c := call.GetUnreserveResources()
		if c == nil {
			return operatorapi.Errorf(http.StatusBadRequest, "Expecting 'unreserve_resources' to be present")
		}
		give, err := parseReservations(c.Resources, principal)
		if err != nil {
			return err
		}
		return m.unreserve(c.AgentID.Value, give)
	}
}
