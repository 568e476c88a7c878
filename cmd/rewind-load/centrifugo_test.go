package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/load"
)

// fakeCentrifugo answers Centrifugo's bidirectional JSON protocol as far as
// the harness uses it: connect, subscribe, publish (fanned out to the
// channel's subscriber as a publication push) and server pings, whose
// pongs it checks as Centrifugo does (a pong nobody asked for is a
// protocol error). Every tenth publish reply shares its frame with a ping.
type fakeCentrifugo struct {
	srv   *httptest.Server
	mu    sync.Mutex
	subs  map[string]*fakeClient
	pongs atomic.Int64
	bad   atomic.Int64 // protocol violations by the client
	pubs  atomic.Int64
}

type fakeClient struct {
	mu     sync.Mutex
	conn   net.Conn
	pinged int // pings not answered yet: under load two can be out at once
}

func (c *fakeClient) write(p string, ping bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ping {
		c.pinged++
	}
	_ = wsutil.WriteServerText(c.conn, []byte(p))
}

func startFakeCentrifugo(t *testing.T) *fakeCentrifugo {
	f := &fakeCentrifugo{subs: map[string]*fakeClient{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/connection/websocket" {
			http.NotFound(w, r)
			return
		}
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err == nil {
			go f.serve(conn)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCentrifugo) serve(conn net.Conn) {
	c := &fakeClient{conn: conn}
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				c.write(`{}`, true)
			}
		}
	}()
	var channel string
	defer func() {
		f.mu.Lock()
		delete(f.subs, channel)
		f.mu.Unlock()
	}()
	for {
		p, err := wsutil.ReadClientText(conn)
		if err != nil {
			return
		}
		for _, line := range bytes.Split(p, []byte("\n")) {
			var cmd struct {
				ID        uint32    `json:"id"`
				Connect   *struct{} `json:"connect"`
				Subscribe *struct {
					Channel string `json:"channel"`
				} `json:"subscribe"`
				Publish *struct {
					Channel string          `json:"channel"`
					Data    json.RawMessage `json:"data"`
				} `json:"publish"`
			}
			if err := json.Unmarshal(line, &cmd); err != nil {
				f.bad.Add(1)
				return
			}
			switch {
			case cmd.ID == 0:
				c.mu.Lock()
				asked := c.pinged > 0
				if asked {
					c.pinged--
				}
				c.mu.Unlock()
				if !asked || string(line) != "{}" {
					f.bad.Add(1)
					return
				}
				f.pongs.Add(1)
			case cmd.Connect != nil:
				c.write(fmt.Sprintf(`{"id":%d,"connect":{"client":"c-%p","version":"0.0.0","ping":1,"pong":true}}`, cmd.ID, c), false)
			case cmd.Subscribe != nil:
				channel = cmd.Subscribe.Channel
				f.mu.Lock()
				f.subs[channel] = c
				f.mu.Unlock()
				c.write(fmt.Sprintf(`{"id":%d,"subscribe":{}}`, cmd.ID), false)
			case cmd.Publish != nil:
				n := f.pubs.Add(1)
				f.mu.Lock()
				peer := f.subs[cmd.Publish.Channel]
				f.mu.Unlock()
				if peer != nil {
					peer.write(fmt.Sprintf(`{"push":{"channel":%q,"pub":{"data":%s,"offset":%d}}}`, cmd.Publish.Channel, cmd.Publish.Data, n), false)
				}
				reply := fmt.Sprintf(`{"id":%d,"publish":{}}`, cmd.ID)
				if n%10 == 0 {
					c.write(reply+"\n{}", true)
				} else {
					c.write(reply, false)
				}
			default:
				f.bad.Add(1)
				return
			}
		}
	}
}

// requireCentrifugoDM checks a dm run against Centrifugo: everything
// published was acknowledged and delivered, pings were answered.
func requireCentrifugoDM(t *testing.T, res load.Result, pairs int) {
	t.Helper()
	requireClean(t, res, 2*pairs)
	require.Equal(t, "centrifugo", res.Params.Target)
	require.Equal(t, "none", res.Accounts.Method)
	m := res.Messages
	require.NotNil(t, m)
	require.Positive(t, m.Sent)
	require.Equal(t, m.Sent, m.Acked, "every publish answered")
	require.Equal(t, m.Acked, m.Delivered, "every publication pushed to the peer")
	require.Zero(t, m.Duplicates)
	require.Zero(t, m.Skipped)
	require.Zero(t, m.SendErrors)
	requireWarmupSplit(t, res, 1)
	require.NotNil(t, res.Rooms)
	require.Nil(t, res.Rooms.Activated, "no rooms counter on Centrifugo")
	require.NotNil(t, res.Server.CPUPer1000)
	require.Nil(t, res.Server.Postgres)
}

func TestCentrifugoTarget(t *testing.T) {
	f := startFakeCentrifugo(t)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	res := runHarness(t, "--target", "centrifugo", "--url", "ws://"+host+"/connection/websocket",
		"--scenario", "dm", "--pairs", "5", "--rate", "200", "--duration", "3s", "--workers", "2",
		"--server-pid", strconv.Itoa(os.Getpid()))
	requireCentrifugoDM(t, res, 5)
	require.Zero(t, f.bad.Load(), "protocol violations")
	require.Positive(t, f.pongs.Load())
	require.Equal(t, f.pongs.Load(), res.Counts["pings_answered"])
}

// TestCentrifugoBinary runs the dm scenario against a real Centrifugo when
// one is installed (go install github.com/centrifugal/centrifugo/v6@v6.9.1),
// with the configuration the comparison uses.
func TestCentrifugoBinary(t *testing.T) {
	bin, err := exec.LookPath("centrifugo")
	if err != nil {
		bin = filepath.Join(build.Default.GOPATH, "bin", "centrifugo")
		if _, err := os.Stat(bin); err != nil {
			t.Skip("no centrifugo binary on PATH or in GOPATH/bin")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	config := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(config, fmt.Appendf(nil, `{
  "client": {"insecure": true},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_client": true}},
  "http_server": {"address": "127.0.0.1", "port": %d},
  "log": {"level": "warn"}
}`, port), 0o644))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-c", config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Logf("centrifugo:\n%s", logs.String())
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		require.True(t, time.Now().Before(end), "centrifugo did not listen on %s", addr)
	}
	res := runHarness(t, "--target", "centrifugo", "--url", "ws://"+addr+"/connection/websocket",
		"--scenario", "dm", "--pairs", "5", "--rate", "200", "--duration", "3s",
		"--server-pid", strconv.Itoa(cmd.Process.Pid))
	requireCentrifugoDM(t, res, 5)
}
