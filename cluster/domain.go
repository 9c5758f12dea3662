package cluster

import (
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A domain is one kind of replicated state (the greylist today; the sender
// and recipient lists and the quarantine next). Each lives in its own file
// that registers it from init, as Consul's FSM registers its commands:
//
//	func init() {
//		registerDomain(domain{
//			name:     "greylist",
//			buckets:  [][]byte{bucketTriplets, bucketNetworks},
//			commands: []command{{CmdGreylistPutTriplet, "greylist_put_triplet", applyPutTriplet}, ...},
//			expire:   expireGreylist,
//		})
//	}
//
// The FSM knows nothing of a domain beyond its registration: Apply
// dispatches a command to the domain that registered its type, CmdExpire
// calls every domain's expire, NewFSM and Restore create every domain's
// buckets, and snapshots carry them.
type domain struct {
	// name identifies the domain in errors.
	name string
	// buckets are the bbolt buckets holding the domain's state, which only
	// its commands and expire write. They are its section of every
	// snapshot (a snapshot is the bbolt file), so their names are part of
	// the snapshot format: never rename one. A bucket missing from a
	// snapshot written before the domain existed is created empty on
	// restore.
	buckets [][]byte
	// commands are the command types the domain applies.
	commands []command
	// expire, if set, removes what is dead at now (the time the leader put
	// in CmdExpire; never the local clock) from the domain's buckets, in
	// the transaction of the CmdExpire, and returns how many entries it
	// removed under each name it reports (the keys of ExpireResult,
	// distinct across domains). It must decide by a rule of the package
	// that owns the state, so that the cluster and that package never
	// disagree on what is dead.
	expire func(tx *bolt.Tx, now time.Time) map[string]int
}

// command is one registered command type.
type command struct {
	typ CommandType
	// name is the type's String, for messages.
	name string
	// apply applies the payload (the entry without its type byte) inside
	// tx and returns the response for the proposer: nil, a result, or an
	// error value (wrapping ErrInvalidCommand) for a semantic error, in
	// which case the transaction is rolled back. A payload that does not
	// decode, or a storage failure, panics (see doc.go).
	apply handler
}

// handler applies one command's payload; see command.apply.
type handler func(f *FSM, tx *bolt.Tx, payload []byte) any

// registry is a set of domains and the dispatch table of their commands.
// The FSM of a node uses defaultRegistry; tests build others.
type registry struct {
	domains []*domain
	// commands is indexed by type byte without IgnorableFlag.
	commands [128]*command
	// bucketOwner maps a bucket name to the domain that registered it.
	bucketOwner map[string]string
}

// defaultRegistry holds the domains registered by this package's init
// functions.
var defaultRegistry = newRegistry()

// newRegistry returns a registry holding only CmdExpire, which belongs to
// no domain: it reaches them all.
func newRegistry() *registry {
	r := &registry{bucketOwner: map[string]string{}}
	r.commands[CmdExpire] = &command{typ: CmdExpire, name: "expire", apply: applyExpire}
	return r
}

// registerDomain adds d to defaultRegistry; a conflict is a programming
// error found at start-up, so it panics.
func registerDomain(d domain) {
	if err := defaultRegistry.register(d); err != nil {
		panic(err)
	}
}

// register adds d, refusing a domain whose name, command types or bucket
// names are already taken: type bytes and bucket names are part of the log
// and snapshot formats, and one may never mean two things.
func (r *registry) register(d domain) error {
	if d.name == "" {
		return fmt.Errorf("cluster: registering a domain without a name")
	}
	for _, o := range r.domains {
		if o.name == d.name {
			return fmt.Errorf("cluster: domain %q registered twice", d.name)
		}
	}
	seen := map[CommandType]bool{}
	for _, c := range d.commands {
		switch {
		case c.typ == 0 || c.typ&IgnorableFlag != 0:
			return fmt.Errorf("cluster: domain %q: command type %#x out of range 1-127", d.name, uint8(c.typ))
		case c.apply == nil || c.name == "":
			return fmt.Errorf("cluster: domain %q: command type %d without a name or handler", d.name, c.typ)
		case r.commands[c.typ] != nil || seen[c.typ]:
			return fmt.Errorf("cluster: domain %q: command type %d already registered", d.name, c.typ)
		}
		seen[c.typ] = true
	}
	names := map[string]bool{}
	for _, b := range d.buckets {
		switch {
		case len(b) == 0:
			return fmt.Errorf("cluster: domain %q: empty bucket name", d.name)
		case r.bucketOwner[string(b)] != "" || names[string(b)]:
			return fmt.Errorf("cluster: domain %q: bucket %q already registered", d.name, b)
		}
		names[string(b)] = true
	}

	for _, c := range d.commands {
		r.commands[c.typ] = &c
	}
	for _, b := range d.buckets {
		r.bucketOwner[string(b)] = d.name
	}
	r.domains = append(r.domains, &d)
	// Init functions run in file name order; sorting makes the order
	// explicit (expire calls domains in it).
	sort.Slice(r.domains, func(i, j int) bool { return r.domains[i].name < r.domains[j].name })
	return nil
}

// clone returns a copy that can be registered into without changing r.
func (r *registry) clone() *registry {
	c := &registry{
		domains:     append([]*domain(nil), r.domains...),
		commands:    r.commands,
		bucketOwner: make(map[string]string, len(r.bucketOwner)),
	}
	for k, v := range r.bucketOwner {
		c.bucketOwner[k] = v
	}
	return c
}

// createBuckets makes sure every registered domain's buckets exist in tx.
func (r *registry) createBuckets(tx *bolt.Tx) error {
	for _, d := range r.domains {
		for _, b := range d.buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("domain %s: bucket %s: %w", d.name, b, err)
			}
		}
	}
	return nil
}
