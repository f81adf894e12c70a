package ownership

import (
	"cmp"
	"slices"
)

// weight is the rendezvous (highest random weight) score of replica for
// node: FNV-1a over both names, then a 64-bit finalizer (splitmix64) so
// that names differing in a last character spread over the whole range.
func weight(replica, node string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(replica); i++ {
		h = (h ^ uint64(replica[i])) * prime
	}
	h = (h ^ 0) * prime // separator: ("ab","c") and ("a","bc") differ
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// byWeight orders replicas for node, best first (ties: by name).
func byWeight(node string) func(a, b string) int {
	return func(a, b string) int {
		if c := cmp.Compare(weight(b, node), weight(a, node)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	}
}

// assign returns the desired owner of every node: a pure function of the
// node set, the live replicas and the current holders, so that replicas
// observing the same leases agree on it.
//
//   - Balanced: with N nodes over R replicas each gets N/R or N/R+1 nodes
//     (shares differ by at most one); the N%R larger shares go to the first
//     replicas by name. Shares do not depend on who holds what: were they
//     given to the replicas holding most, the first replica to acquire
//     during a cold start would hold most and take one more, and so on.
//   - Sticky: a replica keeps the nodes it holds up to its share, those of
//     highest weight first; only its surplus is reassigned. So a joining
//     replica takes only its share, from the others' surpluses, and a
//     leaving one's nodes go to the others, nothing else moves.
//   - Rendezvous: a node to place (free, held by a replica that is not live,
//     or a surplus) goes to the replica of highest weight that has room.
//
// nodes must be sorted and replicas non-empty and sorted; holder maps a node
// to its current holder ("" or absent: free). Holders that are not in
// replicas hold nothing as far as the assignment goes. The result is
// written into out (cleared first), to reuse its storage.
func assign(nodes, replicas []string, holder map[string]string, out map[string]string) {
	clear(out)
	if len(replicas) == 0 {
		return
	}
	held := make(map[string][]string, len(replicas))
	for _, r := range replicas {
		held[r] = nil
	}
	var place []string
	for _, n := range nodes {
		h := holder[n]
		if _, live := held[h]; live && h != "" {
			held[h] = append(held[h], n)
		} else {
			place = append(place, n)
		}
	}

	q, r := len(nodes)/len(replicas), len(nodes)%len(replicas)
	room := make(map[string]int, len(replicas))
	for i, rep := range replicas {
		share := q
		if i < r {
			share++
		}
		mine := held[rep]
		if len(mine) > share {
			// Keep the highest-weight ones; the rest is placed anew.
			slices.SortFunc(mine, func(a, b string) int {
				if c := cmp.Compare(weight(rep, b), weight(rep, a)); c != 0 {
					return c
				}
				return cmp.Compare(a, b)
			})
			place = append(place, mine[share:]...)
			mine = mine[:share]
		}
		for _, n := range mine {
			out[n] = rep
		}
		room[rep] = share - len(mine)
	}

	// In node order, whatever was kept: a view in which a replica holds
	// part of what this loop would give it places the rest the same way,
	// so replicas seeing each other's acquisitions at different times
	// still agree.
	slices.Sort(place)
	for _, n := range place {
		best := ""
		for _, rep := range replicas {
			if room[rep] > 0 && (best == "" || byWeight(n)(rep, best) < 0) {
				best = rep
			}
		}
		out[n] = best
		room[best]--
	}
}
