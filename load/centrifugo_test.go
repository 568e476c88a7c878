package load

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// The commands the harness writes are the protocol's: the same JSON as the
// examples of Centrifugo's client protocol documentation
// (centrifugal.dev, docs/transports/client_protocol.md).
func TestCentrifugoCommands(t *testing.T) {
	jsonEq := func(want string, got []byte) {
		t.Helper()
		require.True(t, json.Valid(got), "%s", got)
		require.JSONEq(t, want, string(got))
	}
	jsonEq(`{"id": 1, "subscribe": {"channel": "example"}}`, appendCentSubscribe(nil, 1, []byte("example")))
	jsonEq(`{"id": 1, "connect": {}}`, appendCentConnect(nil, 1))
	jsonEq(`{}`, centPong)
	require.Equal(t, "u17", string(centChannel(nil, 17)))

	b := appendCentPublishHead(nil, 7, []byte("u3"), []byte("1"))
	b = appendKindStamp(b, kindDM, false, 5, 123456)
	b = appendPadding(b, len("5.123456"), 12)
	b = append(b, centPublishTail...)
	var cmd struct {
		ID      uint32 `json:"id"`
		Publish struct {
			Channel string `json:"channel"`
			Data    struct {
				Type    string `json:"type"`
				ChatID  string `json:"chat_id"`
				Content string `json:"content"`
			} `json:"data"` // bytes travel as embedded JSON
		} `json:"publish"`
	}
	require.NoError(t, json.Unmarshal(b, &cmd), "%s", b)
	require.EqualValues(t, 7, cmd.ID)
	require.Equal(t, "u3", cmd.Publish.Channel)
	require.Equal(t, "send", cmd.Publish.Data.Type)
	require.Equal(t, "1", cmd.Publish.Data.ChatID)
	require.Equal(t, "5.123456xxxx", cmd.Publish.Data.Content)
}

// Server frames: the documentation's examples (with their spaces), the
// empty ping, and pushes as the server encodes them (centrifugal/protocol's
// JSON encoder: id, error, push, … in schema order; a publication's data
// embedded as JSON).
func TestCentrifugoReplies(t *testing.T) {
	m := parseCent([]byte(`{"id": 1, "subscribe": {}}`))
	require.Equal(t, centReply, m.kind)
	require.EqualValues(t, 1, m.id)
	require.Zero(t, m.errCode)

	m = parseCent([]byte(`{"id": 1, "error": {"code": 100, "message": "internal server error"}}`))
	require.Equal(t, centReply, m.kind)
	require.EqualValues(t, 1, m.id)
	require.Equal(t, 100, m.errCode)
	require.Equal(t, "internal server error", m.errMsg)

	m = parseCent([]byte(`{"id":1,"connect":{"client":"8c5fbd7f-1d5c-4f2b-a1a5-4b1b4c4b7d2f","version":"6.9.1","ping":25,"pong":true}}`))
	require.Equal(t, centReply, m.kind)
	require.EqualValues(t, 1, m.id)
	require.Zero(t, m.errCode)

	require.Equal(t, centPing, parseCent([]byte(`{}`)).kind)
	require.Equal(t, centPing, parseCent([]byte(` { } `)).kind)

	m = parseCent([]byte(`{"push":{"channel":"u3","pub":{"data":{"type":"send","chat_id":"1","content":"f0.987654321xx"},"info":{"user":"","client":"c1"},"offset":4}}}`))
	require.Equal(t, centPush, m.kind)
	require.True(t, m.pub)
	require.Equal(t, "f0.987654321xx", string(m.content))
	kind, _, seq, nanos, ok := parseKindStamp(m.content)
	require.True(t, ok)
	require.Equal(t, kindFirst, kind)
	require.Zero(t, seq)
	require.EqualValues(t, 987654321, nanos)

	// A push that is no publication (centrifuge's own hub test frame).
	m = parseCent([]byte(`{"push":{"channel":"test_channel","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}`))
	require.Equal(t, centPush, m.kind)
	require.False(t, m.pub)
	require.Nil(t, m.content)

	for _, bad := range []string{``, `nope`, `[]`, `{"id":"x"}`, `{"id":99999999999,"publish":{}}`, `{"result":{}}`} {
		require.Equal(t, centOther, parseCent([]byte(bad)).kind, bad)
	}
}

// A reply and a push may share a frame, one JSON object a line.
func TestCentrifugoBatchedFrame(t *testing.T) {
	frame := []byte("{\"id\":3,\"publish\":{}}\n{\"push\":{\"channel\":\"u2\",\"pub\":{\"data\":{\"type\":\"send\",\"chat_id\":\"1\",\"content\":\"9.42\"}}}}\n{}\n")
	var got []centMsg
	eachLine(frame, func(line []byte) { got = append(got, parseCent(line)) })
	require.Len(t, got, 3)
	require.Equal(t, centReply, got[0].kind)
	require.EqualValues(t, 3, got[0].id)
	require.Equal(t, centPush, got[1].kind)
	require.Equal(t, "9.42", string(got[1].content))
	require.Equal(t, centPing, got[2].kind)
}
