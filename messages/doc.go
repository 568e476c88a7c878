// Package messages holds the types that cross a boundary: the wire frames
// of protocol.md §2 (decoding requests, encoding answers and events) and
// the messages actors send each other. Actor messages carry only
// serializable data (ids, PIDs, values, encoded frames) so that user and
// room actors can become cluster grains without touching the protocol code.
package messages
