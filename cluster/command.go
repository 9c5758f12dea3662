package cluster

import (
	"encoding/json"
	"fmt"
)

// CommandType is the leading byte of every command.
//
// Each type is declared and registered by the file of the domain that
// applies it (greylist.go, chunk.go; CmdExpire, which reaches every domain,
// in expire.go). Values are part of the log format: never renumber or reuse
// one (registering a type twice panics at start-up). New commands that old
// nodes may skip are sent with IgnorableFlag.
type CommandType uint8

// IgnorableFlag set in a type byte tells a node that does not know the
// command to skip it instead of panicking.
const IgnorableFlag CommandType = 0x80

// String is the name the type was registered with.
func (c CommandType) String() string {
	if cmd := defaultRegistry.commands[c&^IgnorableFlag]; cmd != nil {
		return cmd.name
	}
	return fmt.Sprintf("unknown_%d", uint8(c&^IgnorableFlag))
}

func encodeJSON(t CommandType, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own fixed types are encoded here; they always marshal
		// (a time outside years 0-9999 is the one exception, a caller bug).
		panic(fmt.Sprintf("cluster: encoding %v: %v", t, err))
	}
	return append([]byte{byte(t)}, b...)
}

// decodeJSON decodes a payload of a known type; failure means the log holds
// something this node cannot interpret, so it panics (see doc.go).
func decodeJSON(t CommandType, payload []byte, v any) {
	if err := json.Unmarshal(payload, v); err != nil {
		panic(fmt.Sprintf("cluster: undecodable %v command: %v", t, err))
	}
}
