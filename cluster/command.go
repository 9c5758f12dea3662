package cluster

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/greylist"
)

// CommandType is the leading byte of every command.
type CommandType uint8

// Command types. Values are part of the log format: never renumber or reuse
// one. New commands that old nodes may skip are sent with IgnorableFlag.
const (
	CmdGreylistPutTriplet CommandType = 1
	CmdGreylistPutNetwork CommandType = 2
	CmdExpire             CommandType = 3
	CmdChunk              CommandType = 4
)

// IgnorableFlag set in a type byte tells a node that does not know the
// command to skip it instead of panicking.
const IgnorableFlag CommandType = 0x80

func (c CommandType) String() string {
	switch c &^ IgnorableFlag {
	case CmdGreylistPutTriplet:
		return "greylist_put_triplet"
	case CmdGreylistPutNetwork:
		return "greylist_put_network"
	case CmdExpire:
		return "expire"
	case CmdChunk:
		return "chunk"
	}
	return fmt.Sprintf("unknown_%d", uint8(c&^IgnorableFlag))
}

// putTripletCmd is the payload of CmdGreylistPutTriplet.
type putTripletCmd struct {
	Key     string           `json:"k"`
	Triplet greylist.Triplet `json:"t"`
}

// putNetworkCmd is the payload of CmdGreylistPutNetwork.
type putNetworkCmd struct {
	Network string           `json:"n"`
	State   greylist.Network `json:"s"`
}

// expireCmd is the payload of CmdExpire.
type expireCmd struct {
	Now time.Time `json:"now"`
}

// ExpireResult is the response of a CmdExpire: how much it removed.
type ExpireResult struct {
	Triplets, Networks int
	// Chunks counts abandoned partial chunked commands and the markers of
	// completed ones whose expiry passed.
	Chunks int
}

// EncodePutTriplet returns the command storing t under key.
func EncodePutTriplet(key string, t greylist.Triplet) []byte {
	return encodeJSON(CmdGreylistPutTriplet, putTripletCmd{Key: key, Triplet: t})
}

// EncodePutNetwork returns the command storing n for network.
func EncodePutNetwork(network string, n greylist.Network) []byte {
	return encodeJSON(CmdGreylistPutNetwork, putNetworkCmd{Network: network, State: n})
}

// EncodeExpire returns the command removing what expired at now. The leader
// issues it with its own clock; followers apply the same now.
func EncodeExpire(now time.Time) []byte {
	return encodeJSON(CmdExpire, expireCmd{Now: now})
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
