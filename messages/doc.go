// Package messages holds the messages actors send each other: requests
// routed to user and room actors, their replies, the events they deliver,
// and the writer's and room loader's work. Actor messages carry only
// serializable data (ids, PIDs, values, encoded frames) so that user and
// room actors can become cluster grains without touching the protocol
// code. The wire frames they carry are encoded by package protocol.
package messages
