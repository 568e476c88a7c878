package clientaddr_test

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/clientaddr"
)

func TestParseProxies(t *testing.T) {
	p, err := clientaddr.ParseProxies("10.0.0.0/8, 192.168.1.7 ::1,fd00::/8\t::ffff:172.16.0.0/108")
	require.NoError(t, err)
	require.Equal(t, clientaddr.Proxies{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("172.16.0.0/12"),
	}, p)
	p, err = clientaddr.ParseProxies("")
	require.NoError(t, err)
	require.Empty(t, p)
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0.0/8,x"} {
		_, err := clientaddr.ParseProxies(bad)
		require.Error(t, err, bad)
	}
}

func TestClient(t *testing.T) {
	proxies, err := clientaddr.ParseProxies("10.0.0.0/8,fd00::/8")
	require.NoError(t, err)
	cases := []struct {
		name    string
		proxies clientaddr.Proxies
		remote  string
		xff     []string
		want    string
	}{
		{"no proxies: the header is ignored", nil, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer: the header is ignored", proxies, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer, no header", proxies, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"trusted peer names the client", proxies, "10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"rightmost untrusted wins over a spoofed left part", proxies, "10.1.2.3:5000", []string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1"},
		{"trusted hops are skipped", proxies, "10.1.2.3:5000", []string{"198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines in order", proxies, "10.1.2.3:5000", []string{"1.1.1.1", "198.51.100.1, 10.0.0.2"}, "198.51.100.1"},
		{"all trusted: the leftmost", proxies, "10.1.2.3:5000", []string{"10.0.0.7, 10.0.0.8"}, "10.0.0.7"},
		{"garbage ends the walk at the last address", proxies, "10.1.2.3:5000", []string{"198.51.100.1, junk, 10.0.0.8"}, "10.0.0.8"},
		{"ports and brackets", proxies, "[fd00::1]:443", []string{"[2001:db8::5]:1234"}, "2001:db8::5"},
		{"IPv4-mapped peer", proxies, "[::ffff:10.0.0.1]:80", []string{"198.51.100.1:7"}, "198.51.100.1"},
		{"empty entries", proxies, "10.1.2.3:5000", []string{" , 198.51.100.1 ,"}, "198.51.100.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.proxies.Client(c.remote, c.xff)
			require.Equal(t, c.want, got.String())
			r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			require.Equal(t, got, c.proxies.Of(r))
			require.Equal(t, c.want, c.proxies.Key(r))
		})
	}
	require.False(t, proxies.Client("pipe", []string{"1.2.3.4"}).IsValid())
	require.Equal(t, "pipe", proxies.Key(&http.Request{RemoteAddr: "pipe", Header: http.Header{}}))
}
