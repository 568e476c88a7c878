package httpapi

import "testing"

func TestPrefersHTML(t *testing.T) {
	cases := []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"text/html", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true}, // Firefox, Chrome
		{"application/json, text/html;q=0.5", false},
		{"text/html;q=0.4, application/json;q=0.6", false},
		{"text/*, application/json;q=0.1", true},
		{"text/html;q=0, */*", false},
	}
	for _, c := range cases {
		if got := prefersHTML(c.accept); got != c.want {
			t.Errorf("prefersHTML(%q) = %v, want %v", c.accept, got, c.want)
		}
	}
}

func TestRequestID(t *testing.T) {
	if got := requestID("abc-123"); got != "abc-123" {
		t.Errorf("kept id = %q", got)
	}
	for _, in := range []string{"", "has space", "new\nline", string(make([]byte, 65))} {
		if got := requestID(in); got == in || len(got) != 16 {
			t.Errorf("requestID(%q) = %q, want a fresh 16-hex id", in, got)
		}
	}
}
