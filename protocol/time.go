package protocol

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

var errDatetime = errors.New("invalid datetime")

// ParseDatetime reads the load request's datetime: base64 (standard or
// URL alphabet, padded or not) of a wire time, parsed leniently as the
// mobile client writes it ("2026-11-5 13:04:05.1230000": unpadded month,
// day and hour fields, 0 to 9 fraction digits, a space or 'T'), in loc.
func ParseDatetime(b64 string, loc *time.Location) (time.Time, error) {
	b64 = strings.TrimRight(strings.TrimSpace(b64), "=")
	raw, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(b64); err != nil {
			return time.Time{}, errDatetime
		}
	}
	return ParseWireTime(string(raw), loc)
}

// ParseWireTime parses "Y-M-D h:m:s[.f]" leniently (see ParseDatetime).
func ParseWireTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	date, clock, ok := strings.Cut(s, " ")
	if !ok {
		date, clock, ok = strings.Cut(s, "T")
	}
	if !ok {
		return time.Time{}, errDatetime
	}
	var frac string
	clock, frac, _ = strings.Cut(clock, ".")
	d, okd := numbers(date, "-", 3)
	c, okc := numbers(clock, ":", 3)
	if !okd || !okc || len(frac) > 9 {
		return time.Time{}, errDatetime
	}
	nanos := 0
	if frac != "" {
		n, err := strconv.Atoi(frac)
		if err != nil || frac[0] == '+' || frac[0] == '-' {
			return time.Time{}, errDatetime
		}
		nanos = n * pow10[9-len(frac)]
	}
	t := time.Date(d[0], time.Month(d[1]), d[2], c[0], c[1], c[2], nanos, loc)
	// time.Date normalizes overflow (Feb 30 becomes Mar 2); refuse it.
	if t.Year() != d[0] || int(t.Month()) != d[1] || t.Day() != d[2] ||
		t.Hour() != c[0] || t.Minute() != c[1] || t.Second() != c[2] {
		return time.Time{}, errDatetime
	}
	return t, nil
}

var pow10 = [...]int{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}

// numbers splits s by sep into n non-negative decimal numbers of 1 to 4 digits.
func numbers(s, sep string, n int) ([]int, bool) {
	parts := strings.Split(s, sep)
	if len(parts) != n {
		return nil, false
	}
	out := make([]int, n)
	for i, p := range parts {
		if len(p) == 0 || len(p) > 4 || p[0] < '0' || p[0] > '9' {
			return nil, false
		}
		v, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}
