// Package setting is the one convention of every component's Config in
// REWIND (server, net/gateway, net/httpapi, auth, actors/...):
//
//   - A zero value takes the component's default: an exported constant
//     (Default...) beside the Config, named in the field's doc, and
//     resolved in the component's constructor. A Config left empty is
//     the documented configuration.
//   - A setting that can be turned off (a rate, a bound, a lifetime, a
//     timeout) is turned off with Off, or any negative value; its doc
//     says so. Resolving keeps it negative, so a Config resolved twice
//     stays off. A setting that cannot be turned off takes its default
//     for a negative value too.
//
// A component never writes another's default: server passes its settings
// through as they came, and cmd/rewind builds its flags' defaults and help
// from the same constants. The REWIND_* variables keep their own spelling,
// in which 0 turns a limit off (README, protocol.md); cmd/rewind turns that
// 0 into Off.
package setting

// Off turns off a setting that can be turned off. It is an untyped
// constant, so it fits every numeric field: an int bound, a float64 rate,
// a time.Duration.
const Off = -1
