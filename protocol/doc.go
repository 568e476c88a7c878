// Package protocol is the WebSocket protocol of protocol.md §2 as bytes:
// decoding a client's request frame (DecodeRequest, PayloadFields,
// ParseID, ParseDatetime), encoding answers and events (AppendFrame,
// AppendChat, ErrorFrame, OKFrame, Frame, and v2's TypingFrame and
// PresenceFrame), the wire objects (User, FriendEvent, v2's Friend with
// its status, the wire time) and, in errors.go, the one table of error
// frames and close codes.
//
// It knows no actors: the session, user and room actors answer with its
// errors and frames, and the load harness reads the server's frames
// against the same table. The actor messages are package messages.
//
// The decoders take untrusted input and have fuzz targets here
// (FuzzDecodeRequest, FuzzParseDatetime, FuzzAppendString,
// FuzzPayloadFieldsMatchesEncodingJSON).
package protocol
