package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		in   string
		want Request
		err  *Error
	}{
		{`{"type":"heartbeat","payload":{"count":3}}`, Request{Type: "heartbeat", Payload: json.RawMessage(`{"count":3}`)}, nil},
		{` {"type":"auth","payload":{"auth":"t"},"nonce":"n1"}`, Request{Type: "auth", Payload: json.RawMessage(`{"auth":"t"}`), Nonce: "n1"}, nil},
		{`{"type":"heartbeat"}`, Request{Type: "heartbeat"}, nil},
		{`{"type":"heartbeat","payload":null,"nonce":null}`, Request{Type: "heartbeat"}, nil},
		{`not json`, Request{}, ErrNotJSON},
		{`[1,2]`, Request{}, ErrNotJSON},
		{`"text"`, Request{}, ErrNotJSON},
		{``, Request{}, ErrNotJSON},
		{`{"type":"x"`, Request{}, ErrNotJSON},
		{`{}`, Request{}, ErrInvalid},
		{`{"type":""}`, Request{}, ErrInvalid},
		{`{"type":5}`, Request{}, ErrInvalid},
		{`{"type":"x","nonce":5}`, Request{}, ErrInvalid},
		{`{"type":"x","nonce":"` + string(make([]byte, 0)) + `0123456789012345678901234567890123456789012345678901234567890123456789"}`, Request{}, ErrInvalid},
		// The escape of U+0000, anywhere (protocol.md §2.1), is refused;
		// an escaped backslash before "u0000" is not that escape.
		{`{"type":"chat","payload":{"type":"send","chat_id":"3","content":"a\u0000b"}}`, Request{}, ErrInvalid},
		{`{"type":"chat","payload":{"content":"x"},"nonce":"n\u0000"}`, Request{}, ErrInvalid},
		{`{"type":"heartbeat\u0000"}`, Request{}, ErrInvalid},
		{`{"type":"heartbeat","payload":{"\u0000":1}}`, Request{}, ErrInvalid},
		{`{"type":"heartbeat","payload":"\\\u0000"}`, Request{}, ErrInvalid},
		{`{"type":"heartbeat","payload":"\\u0000"}`, Request{Type: "heartbeat", Payload: json.RawMessage(`"\\u0000"`)}, nil},
		{`{"type":"heartbeat","payload":"\\\\u0000 \u0001"}`, Request{Type: "heartbeat", Payload: json.RawMessage(`"\\\\u0000 \u0001"`)}, nil},
		{"{\"type\":\"heartbeat\",\"payload\":\"\x00\"}", Request{}, ErrNotJSON},
	}
	for _, c := range cases {
		got, err := DecodeRequest([]byte(c.in))
		require.Equal(t, c.err, err, c.in)
		if err == nil {
			require.Equal(t, c.want, got, c.in)
		}
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]int64{`"123"`: 123, `123`: 123, `"9223372036854775807"`: 1<<63 - 1, `"1979711488"`: 1979711488, `10`: 10} {
		got, ok := ParseID(json.RawMessage(in))
		require.True(t, ok, in)
		require.Equal(t, want, got)
	}
	// Only the canonical decimal is an id (issue 8, finding 16): no sign, no
	// leading zero, nothing around the digits.
	for _, in := range []string{``, `null`, `"0"`, `0`, `-5`, `"-5"`, `1.5`, `"abc"`, `"9223372036854775808"`, `true`,
		`"+1979711488"`, `"01979711488"`, `+5`, `"00"`, `" 5"`, `"5 "`, `"5\n"`, `1e3`, `"1e3"`, `""`, `"`, `"99999999999999999999"`,
		`18446744073709551616`, `"0x10"`, `"١٢٣"`} {
		_, ok := ParseID(json.RawMessage(in))
		require.False(t, ok, in)
	}
}

func TestParseDatetime(t *testing.T) {
	seoul, err := time.LoadLocation("Asia/Seoul")
	require.NoError(t, err)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := map[string]time.Time{
		b64("2026-11-5 13:04:05.1230000"):                                     time.Date(2026, 11, 5, 13, 4, 5, 123000000, seoul), // the mobile client
		b64("2021-12-23 00:19:16.000880"):                                     time.Date(2021, 12, 23, 0, 19, 16, 880000, seoul),
		b64("2021-12-23 00:19:16"):                                            time.Date(2021, 12, 23, 0, 19, 16, 0, seoul),
		b64("2021-1-2 3:4:5."):                                                time.Date(2021, 1, 2, 3, 4, 5, 0, seoul),
		b64("2021-01-02T03:04:05.123456789"):                                  time.Date(2021, 1, 2, 3, 4, 5, 123456789, seoul),
		base64.RawURLEncoding.EncodeToString([]byte("2021-12-23 00:19:16.5")): time.Date(2021, 12, 23, 0, 19, 16, 500000000, seoul),
	}
	for in, want := range cases {
		got, err := ParseDatetime(in, seoul)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: got %v want %v", in, got, want)
	}
	for _, bad := range []string{"", "!!!", b64("yesterday"), b64("2021-02-30 00:00:00"), b64("2021-12-23 24:00:00"),
		b64("2021-12-23 00:19:16.1234567890"), b64("2021-12-23"), b64("2021-12-23 00:19:-1"), b64("2021-12-23 00:19:16.+5")} {
		_, err := ParseDatetime(bad, seoul)
		require.Error(t, err, bad)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "hi", `quote " back \ slash`, "tab\tnl\ncr\r\x00\x1f", "한국어 ✓", "\u2028\u2029", "bad \xff utf8", "<html>&"} {
		var back string
		require.NoError(t, json.Unmarshal(AppendString(nil, s), &back), s)
		require.Equal(t, []rune(toValid(s)), []rune(back), s)
	}
}

// toValid is s with invalid UTF-8 replaced, as JSON carries it.
func toValid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]rune, 0, len(s))
	for _, r := range s {
		out = append(out, r)
	}
	return string(out)
}

func TestAppendChat(t *testing.T) {
	seoul, _ := time.LoadLocation("Asia/Seoul")
	created := time.Date(2021, 12, 22, 15, 19, 16, 880000, time.UTC)
	edited := created.Add(time.Second)
	got := AppendChat(nil, "edit", &Chat{ID: 7, AuthorID: 8, ChatID: 15, Content: "hi \"there\"", CreatedAt: created, EditedAt: &edited}, seoul, "n1")
	require.JSONEq(t, `{"type":"chat","payload":{"type":"edit","id":"7","user_id":"8","chat_id":"15",
		"content":"hi \"there\"","created_at":"2021-12-23 00:19:16.000880","edited_at":"2021-12-23 00:19:17.000880"},"nonce":"n1"}`, string(got))
	// The echo of an event is the event with the nonce, byte for byte as
	// AppendChat would encode it, and the event is left as it was.
	event := AppendChat(make([]byte, 0, ChatSize("hi \"there\"")), "edit", &Chat{ID: 7, AuthorID: 8, ChatID: 15, Content: "hi \"there\"", CreatedAt: created, EditedAt: &edited}, seoul, "")
	before := string(event)
	require.Equal(t, string(got), string(WithNonce(event, "n1")))
	require.Equal(t, before, string(event))
	require.JSONEq(t, `{"type":"error","payload":{"code":4000,"reason":"Unknown type."}}`, string(ErrorFrame(ErrUnknownType, "")))
	require.JSONEq(t, `{"type":"ok","payload":null,"nonce":"x"}`, string(OKFrame("x")))
}

// The v2 events of protocol.md §4.3 and §4.4, and a friend with its
// status as a v2 auth answer lists it.
func TestV2EventFrames(t *testing.T) {
	require.JSONEq(t, `{"type":"typing","payload":{"chat_id":"15","user_id":"8"}}`, string(TypingFrame(15, 8)))
	require.JSONEq(t, `{"type":"presence","payload":{"user_id":"8","status":"online"}}`, string(PresenceFrame(8, StatusOnline)))
	require.JSONEq(t, `{"type":"presence","payload":{"user_id":"8","status":"offline"}}`, string(PresenceFrame(8, StatusOffline)))
	b, err := json.Marshal(Friend{User: User{ID: "8", Name: "eight"}, Status: StatusOnline})
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"8","name":"eight","profile":null,"status":"online"}`, string(b))
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"type":"heartbeat","payload":{"count":0}}`, `{"type":"chat","payload":{"type":"send","chat_id":"1","content":"hi"},"nonce":"a"}`, `[]`, `{`, `{"type":1}`,
		`{"type":"chat","payload":{"content":"a\u0000"}}`, `{"type":"x","payload":"\\u0000"}`, `{"type":"x","payload":"\\\u0000"}`,
		`{"type":"x","nonce":"\u0000"}`, `{"\u0000":1,"type":"x"}`, "{\"type\":\"x\",\"payload\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			if err != ErrNotJSON && err != ErrInvalid {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if r.Type == "" || len(r.Nonce) > MaxNonce {
			t.Fatalf("accepted %q as %+v", data, r)
		}
		// Nothing accepted holds U+0000, decoded anywhere.
		var v any
		if json.Unmarshal(data, &v) != nil || holdsNUL(v) {
			t.Fatalf("accepted %q, which holds U+0000", data)
		}
		// The answer frame built from it is valid JSON.
		if !json.Valid(AppendFrame(nil, r.Type, []byte("null"), r.Nonce)) {
			t.Fatalf("invalid frame for %q", data)
		}
	})
}

// holdsNUL reports whether a value decoded by encoding/json holds U+0000
// in a string or a key.
func holdsNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, 0)
	case []any:
		for _, e := range v {
			if holdsNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.ContainsRune(k, 0) || holdsNUL(e) {
				return true
			}
		}
	}
	return false
}

func FuzzParseDatetime(f *testing.F) {
	for _, s := range []string{"MjAyNi0xMS01IDEzOjA0OjA1LjEyMzAwMDA=", "MjAyMS0xMi0yMyAwMDoxOToxNi4wMDA4ODA=", "", "AAAA"} {
		f.Add(s)
	}
	seoul, _ := time.LoadLocation("Asia/Seoul")
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseDatetime(s, seoul)
		if err != nil {
			return
		}
		// What parses round-trips through the wire format.
		back, err := ParseWireTime(tm.Format(WireTimeLayout), seoul)
		if err != nil || !back.Equal(tm.Truncate(time.Microsecond)) {
			t.Fatalf("%q parsed to %v, which does not round-trip (%v, %v)", s, tm, back, err)
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "hi", "\x00\"\\\u2028", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var back string
		if err := json.Unmarshal(AppendString(nil, s), &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if back != toValid(s) {
			t.Fatalf("%q came back as %q", s, back)
		}
	})
}

func BenchmarkAppendChat(b *testing.B) {
	seoul, _ := time.LoadLocation("Asia/Seoul")
	c := &Chat{ID: 1 << 60, AuthorID: 1 << 59, ChatID: 1<<60 ^ 1<<59, Content: "hello, how are you doing today?", CreatedAt: time.Now()}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendChat(buf[:0], "send", c, seoul, "nonce-1")
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	data := []byte(`{"type":"chat","payload":{"type":"send","chat_id":"1234567890123456789","content":"hello, how are you doing today?"},"nonce":"n42"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(data); err != nil {
			b.Fatal(err)
		}
	}
}

// payloadFields reads data as the payload of a request, through the
// request path: a payload that is not one valid JSON value reads as empty.
func payloadFields(data []byte, keys []string, values [][]byte) {
	frame := append(append([]byte(`{"type":"t","payload":`), data...), '}')
	r, err := DecodeRequest(frame)
	if err != nil || string(r.Payload) != string(bytes.TrimSpace(data)) {
		for i := range values {
			values[i] = nil
		}
		return
	}
	r.PayloadFields(keys, values)
}

func TestPayloadFields(t *testing.T) {
	keys := []string{"type", "chat_id", "content"}
	cases := map[string][3]string{
		`{"type":"send","chat_id":"12","content":"hi \"you\""}`:          {`"send"`, `"12"`, `"hi \"you\""`},
		` { "content" : [1,{"a":"}"}] , "type" : null , "chat_id":12 } `: {`null`, `12`, `[1,{"a":"}"}]`},
		`{"type":"a","type":"b"}`:                                        {`"b"`, ``, ``},
		`{"\u0074ype":"escaped key"}`:                                    {`"escaped key"`, ``, ``},
		`[1,2]`:                                                          {},
		`{"type":`:                                                       {},
		`{}`:                                                             {},
	}
	for in, want := range cases {
		var got [3][]byte
		payloadFields([]byte(in), keys, got[:])
		for i := range want {
			require.Equal(t, want[i], string(got[i]), "%s: %s", in, keys[i])
		}
	}
	for in, want := range map[string]string{`"plain"`: "plain", `"tab\tquote\"é"`: "tab\tquote\"é", `"\ud83d\ude00"`: "😀"} {
		got, ok := String([]byte(in))
		require.True(t, ok, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{``, `5`, `null`, `{"a":1}`} {
		_, ok := String([]byte(in))
		require.False(t, ok, in)
	}
}

// FuzzPayloadFieldsMatchesEncodingJSON checks the flat scanner against
// encoding/json on any payload.
func FuzzPayloadFieldsMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"type":"send","chat_id":"1","content":"x"}`, `{"a":{"b":[1,"]"]},"type":1}`, `{"\u0074ype":2}`, `[]`, `{"type":"a" , "type" : "b"}`} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"\u0000"}`))
	keys := []string{"type", "chat_id", "content", "a"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if hasNULEscape(data) {
			return // refused by DecodeRequest before any field is read
		}
		var got [4][]byte
		payloadFields(data, keys, got[:])
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			m = nil
		}
		for i, k := range keys {
			if string(got[i]) != string(m[k]) {
				t.Fatalf("%q: key %s: scanner %q, encoding/json %q", data, k, got[i], m[k])
			}
		}
	})
}
