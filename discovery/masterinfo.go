package discovery

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// LeaderPrefix is the name prefix of the znodes Mesos masters contend with:
// ephemeral sequential "json.info_<10-digit sequence>", whose data is the
// master's MasterInfo as JSON. (Mesos before 1.0 also wrote protobuf
// "info_" nodes; nothing here reads or writes those.)
const LeaderPrefix = "json.info_"

// MasterInfo is mesos.MasterInfo as Mesos masters write it into ZooKeeper
// (JSON, proto field names). IP is the IPv4 address as a uint32 in network
// byte order, as Mesos stores it: the four address bytes read as a
// little-endian number on the wire-order bytes, so 127.0.0.1 is 16777343.
type MasterInfo struct {
	ID       string   `json:"id"`
	IP       uint32   `json:"ip"`
	Port     uint32   `json:"port"`
	PID      string   `json:"pid,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	Version  string   `json:"version,omitempty"`
	Address  *Address `json:"address,omitempty"`
}

// Address is mesos.Address: where the master's HTTP endpoints are.
type Address struct {
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	Port     int32  `json:"port"`
}

// IsZero reports whether m is the zero MasterInfo ("no leader").
func (m MasterInfo) IsZero() bool { return m.ID == "" && m.Port == 0 && m.IP == 0 }

// Equal compares two infos field by field (Address is a pointer).
func (m MasterInfo) Equal(o MasterInfo) bool {
	a, b := m, o
	a.Address, b.Address = nil, nil
	if a != b {
		return false
	}
	switch {
	case m.Address == nil && o.Address == nil:
		return true
	case m.Address == nil || o.Address == nil:
		return false
	}
	return *m.Address == *o.Address
}

// HostPort is where the master serves HTTP, preferring what Mesos' own
// tools prefer: address.ip, then address.hostname, then the legacy ip and
// hostname fields. The port is address.port, else port.
func (m MasterInfo) HostPort() string {
	host := ""
	port := int(m.Port)
	if a := m.Address; a != nil {
		switch {
		case a.IP != "":
			host = a.IP
		case a.Hostname != "":
			host = a.Hostname
		}
		if a.Port != 0 {
			port = int(a.Port)
		}
	}
	if host == "" {
		if m.IP != 0 {
			host = IPFromMesos(m.IP).String()
		} else {
			host = m.Hostname
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// URL is the master's base URL, e.g. "http://127.0.0.1:5050" (the operator
// API is URL()+"/api/v1").
func (m MasterInfo) URL() string { return "http://" + m.HostPort() }

// String is for logs.
func (m MasterInfo) String() string {
	if m.IsZero() {
		return "<none>"
	}
	return fmt.Sprintf("%s@%s", m.ID, m.HostPort())
}

// IPToMesos encodes an IPv4 address the way MasterInfo.ip holds it: the
// four bytes in network order, read as a host-order (little-endian) uint32,
// which is what Mesos' `ip.in()->s_addr` gives on the x86 machines it runs on.
func IPToMesos(ip net.IP) (uint32, error) {
	v4 := ip.To4()
	if v4 == nil {
		return 0, fmt.Errorf("discovery: %v is not an IPv4 address", ip)
	}
	return binary.LittleEndian.Uint32(v4), nil
}

// IPFromMesos reverses IPToMesos.
func IPFromMesos(v uint32) net.IP {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, v)
	return net.IPv4(b[0], b[1], b[2], b[3])
}

// ParseMasterInfo decodes a json.info_ znode's data.
func ParseMasterInfo(data []byte) (MasterInfo, error) {
	var m MasterInfo
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("discovery: master info: %w", err)
	}
	if m.ID == "" {
		return m, errors.New("discovery: master info has no id")
	}
	if m.HostPort() == ":0" || strings.HasSuffix(m.HostPort(), ":0") {
		return m, fmt.Errorf("discovery: master info %q has no usable address", m.ID)
	}
	return m, nil
}

// Sequence returns the sequence number of a contender znode name
// ("json.info_0000000042" → 42), or false for names that are not
// contenders.
func Sequence(name string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, LeaderPrefix)
	if !ok || rest == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// Lowest returns the contender with the lowest sequence among children (the
// leader, as Mesos decides), or false when there is none.
func Lowest(children []string) (string, bool) {
	best, bestSeq, found := "", int64(0), false
	for _, c := range children {
		if seq, ok := Sequence(c); ok && (!found || seq < bestSeq) {
			best, bestSeq, found = c, seq, true
		}
	}
	return best, found
}
