// Package clientaddr tells the address of an HTTP request's client
// (protocol.md §1): the peer's address, unless the peer is a trusted
// reverse proxy (REWIND_TRUSTED_PROXIES), in which case X-Forwarded-For
// names it. Per-address limits key on it: the HTTP API's register and
// login limits, the gateway's unauthenticated connections per address.
package clientaddr

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies are the trusted reverse proxies; none (nil) ignores the header.
type Proxies []netip.Prefix

// ParseProxies reads a list of CIDRs (a bare address is one host),
// separated by commas or spaces; "" is none.
func ParseProxies(list string) (Proxies, error) {
	var p Proxies
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		prefix, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", f)
			}
			a = a.Unmap().WithZone("")
			prefix = netip.PrefixFrom(a, a.BitLen())
		}
		if prefix.Addr().Is4In6() {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8: addresses are unmapped
			// before they are compared.
			bits := prefix.Bits() - 96
			if bits < 0 {
				return nil, fmt.Errorf("%q: an IPv4-mapped prefix shorter than /96", f)
			}
			prefix = netip.PrefixFrom(prefix.Addr().Unmap(), bits)
		}
		p = append(p, prefix.Masked())
	}
	return p, nil
}

// Trusted reports whether a is one of the proxies.
func (p Proxies) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, prefix := range p {
		if prefix.Contains(a) {
			return true
		}
	}
	return false
}

// Of returns the address of r's client: see Client.
func (p Proxies) Of(r *http.Request) netip.Addr {
	return p.Client(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
}

// Client returns the client's address given the peer's (host:port, as
// http.Request.RemoteAddr has it) and the X-Forwarded-For header values in
// order. When the peer is not a trusted proxy the header is ignored and the
// peer is the client. Otherwise the client is the rightmost address of the
// header that is not a trusted proxy (each proxy appends the address it
// got the request from, so what lies left of the first untrusted one
// cannot be believed). When every address is trusted, the leftmost one is
// the client; an entry that is not an address ends the walk and the last
// address read is the client. The zero Addr means that remote is not an
// IP address (a test's pipe, a Unix socket).
func (p Proxies) Client(remote string, forwardedFor []string) netip.Addr {
	peer := parse(remote)
	if len(p) == 0 || !peer.IsValid() || !p.Trusted(peer) {
		return peer
	}
	client := peer
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		entries := strings.Split(forwardedFor[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			e := strings.TrimSpace(entries[j])
			if e == "" {
				continue
			}
			a := parse(e)
			if !a.IsValid() {
				return client
			}
			client = a
			if !p.Trusted(a) {
				return a
			}
		}
	}
	return client
}

// Key is Of(r) as text, for keying per-address limits; r.RemoteAddr when
// that is not an IP address.
func (p Proxies) Key(r *http.Request) string {
	if a := p.Of(r); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}

// parse reads an address with or without a port ("1.2.3.4", "1.2.3.4:80",
// "::1", "[::1]:80", "[::1]"), unmapped and without a zone.
func parse(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}
