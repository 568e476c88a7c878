package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/logtest"
)

// The v2 chat fields the resume scenario reads by place: seq and
// edit_seq as numbers or strings, edit_seq first, and the changes end
// marker's seq and more.
func TestChatChange(t *testing.T) {
	m := &fakeMsg{id: 7, author: 100, chat: 300, seq: 12, content: "a", created: time.Now()}
	p := chatV2("send", m, "")
	require.EqualValues(t, 12, chatChange(p), "%s", p)
	m.editSeq = 15
	p = chatV2("edit", m, "x1")
	require.EqualValues(t, 15, chatChange(p), "%s", p)
	require.True(t, bytes.HasPrefix(p, chatEditKind))
	require.EqualValues(t, 12, chatChange([]byte(`{"type":"chat","payload":{"type":"send","id":"7","seq":"12"}}`)))
	require.EqualValues(t, 0, chatChange([]byte(`{"type":"chat","payload":{"type":"send","id":"7","read_seq":3}}`)), "read_seq is not seq")
	require.EqualValues(t, 12, chatChange([]byte(`{"type":"chat","payload":{"type":"edit","edit_seq":null,"seq":12}}`)))
	end := []byte(`{"type":"load","payload":{"type":"changes","load_id":"300","seq":40,"count":500,"more":true},"nonce":"g1"}`)
	seq, ok := intField(end, seqKey)
	require.True(t, ok)
	require.EqualValues(t, 40, seq)
	require.True(t, bytes.Contains(end, morePrefix))
	n, _ := loadCount(end)
	require.Equal(t, 500, n)

	auth := []byte(`{"type":"auth","payload":{"self_user":{"id":"100"},"chats":[{"chat_id":"5","kind":"dm","seq":3},{"chat_id":"300","kind":"dm","seq":"41","read_seq":0,"unread":7,"last_message":null}]}}`)
	c, found, listed := dmSummary(auth, 300)
	require.True(t, found)
	require.True(t, listed)
	require.EqualValues(t, 41, c.Seq)
	require.EqualValues(t, 7, c.Unread)
	_, found, listed = dmSummary(auth, 301)
	require.False(t, found)
	require.True(t, listed)
	_, _, listed = dmSummary([]byte(`{"type":"auth","payload":{"self_user":{"id":"100"}}}`), 300)
	require.False(t, listed, "a v1 answer")
}

// A view takes each change once: a later change of a message is applied,
// the same or an older one is a duplicate; without numbers a send seen is
// one.
func TestResumeApply(t *testing.T) {
	r := newResumeState()
	require.Equal(t, newMessage, r.apply(1, 5, []byte("a"), false, true, seenLive))
	require.Equal(t, dupChange, r.apply(1, 5, []byte("a"), false, true, seenCaughtUp))
	require.Equal(t, newChange, r.apply(1, 9, []byte("b"), false, false, seenCaughtUp))
	require.Equal(t, dupChange, r.apply(1, 7, []byte("c"), false, false, seenLive), "older than seen")
	require.Equal(t, newChange, r.apply(1, 11, nil, true, false, seenLive))
	require.EqualValues(t, 11, r.position)
	e := r.view[1]
	require.True(t, e.deleted)
	require.Equal(t, seenLive, e.how, "how it was first seen")
	require.Equal(t, newMessage, r.apply(2, 0, []byte("x"), false, true, seenLive))
	require.Equal(t, dupChange, r.apply(2, 0, []byte("x"), false, true, seenLive))
	require.Equal(t, newChange, r.apply(2, 0, []byte("y"), false, false, seenLive))
	require.EqualValues(t, 11, r.position)

	r.down(100)
	r.down(150) // open already
	require.True(t, r.stillDown())
	require.True(t, r.isDown(1000))
	require.True(t, r.up(200))
	require.False(t, r.up(300))
	require.False(t, r.isDown(99))
	require.True(t, r.isDown(100))
	require.False(t, r.isDown(200))
}

// tallyDir sorts the acknowledged changes of one direction by how the
// other side saw them.
func TestTallyDir(t *testing.T) {
	from, to := newResumeState(), newResumeState()
	to.downs = []window{{from: 100, to: 200}}
	from.sends = []ackedSend{{1, 50}, {2, 120}, {3, 130}, {4, 140}, {5, 150}, {6, 250}}
	from.edits = []ackedEdit{{id: 1, change: 8, at: 150}, {id: 4, change: 9, at: 160, deleted: true}, {id: 1, change: 12, at: 300}}
	from.deleted[4] = true
	to.view[1] = viewEntry{change: 8, how: seenLive}
	to.view[2] = viewEntry{change: 2, how: seenCaughtUp}
	to.view[3] = viewEntry{change: 3, how: seenLive}
	to.view[6] = viewEntry{change: 6, how: seenLive}
	got := tallyDir(from, to)
	require.Equal(t, dirTally{
		sends: 6, seen: 4, deletedUnseen: 1, missing: 1, // 5
		downAcked: 4, downCaughtUp: 1, downLive: 1, downDeleted: 1,
		edits: 2, deletes: 1, downEdits: 1, downDeletes: 1, editsMissing: 1, // 1 at 12
	}, got)
}

func TestDropped(t *testing.T) {
	for _, c := range [][3]int{{10, 3, 3}, {10, 10, 10}, {7, 1, 1}, {500, 250, 250}, {5, 0, 0}} {
		n := 0
		for p := range c[0] {
			if dropped(p, c[1], c[0]) {
				n++
			}
		}
		require.Equal(t, c[2], n, "%v", c)
	}
	require.True(t, dropped(1, 2, 4) && dropped(3, 2, 4) && !dropped(0, 2, 4), "spread")
}

// workerOutput is a worker's output, read while it runs.
type workerOutput struct{ logtest.Buffer }

func (s *workerOutput) contains(x string) bool { return strings.Contains(s.String(), x) }

func (s *workerOutput) reports(t *testing.T) []workerReport {
	var out []workerReport
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var r workerReport
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		out = append(out, r)
	}
	return out
}

// runResumeWorker runs one worker of a resume run in this process against
// f for about d of sending, and returns its result's figures as the
// parent would.
func runResumeWorker(t *testing.T, f *fakeV2, pairs int, rate float64, d time.Duration, rs *resumeSpec) (*ResumeResult, map[string]int64, map[string]Latency) {
	t.Helper()
	accounts := make([]Account, 2*pairs)
	for i := range accounts {
		accounts[i] = Account{Name: "u" + strconv.Itoa(i), Token: "t" + strconv.Itoa(i)}
	}
	spec := workerSpec{
		Scenario: "resume", Target: "rewind", URLs: []string{f.url()}, Homes: make([]int, len(accounts)),
		Accounts: accounts, Pairs: pairs, Rate: rate, Heartbeat: 2 * time.Second,
		DialTimeout: 5 * time.Second, ConnectTimeout: 10 * time.Second, Drain: 5 * time.Second,
		Backoff: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Progress: time.Second,
		Resume: rs,
	}
	out := &workerOutput{}
	w := newWorker(spec, out)
	cmds := make(chan command, 4)
	done := make(chan struct{})
	go func() { w.run(cmds); close(done) }()
	for end := time.Now().Add(10 * time.Second); !out.contains(`"type":"ready"`); time.Sleep(10 * time.Millisecond) {
		require.True(t, time.Now().Before(end), "the sessions did not connect")
	}
	cmds <- command{Cmd: cmdDM, At: time.Now().UnixNano()}
	time.Sleep(d)
	cmds <- command{Cmd: cmdStop}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the worker did not stop")
	}
	reps := out.reports(t)
	res := reps[len(reps)-1]
	require.Equal(t, repResult, res.Type)
	hists := map[string]*hdr.Histogram{}
	require.NoError(t, mergeHists(hists, res.Hists))
	lat := map[string]Latency{}
	for name, h := range hists {
		if h.TotalCount() > 0 {
			lat[name] = summarize(h)
		}
	}
	cfg := &Config{Drop: len(rs.Drops)}
	t.Logf("counts: %v", res.Counts)
	return resumeResult(cfg, res.Counts, lat), res.Counts, lat
}

// A resume run against the simulated server: two of four receiving
// sides drop, their peers send, edit and delete meanwhile; back, they
// catch up page by page (7 frames a page), every acknowledged change is
// seen, and their views equal the history loaded afresh.
func TestResumeWorker(t *testing.T) {
	f := newFakeV2(t)
	f.pageSize = 7
	rs, c, lat := runResumeWorker(t, f, 4, 400, 1500*time.Millisecond, &resumeSpec{
		Drops: []int{1, 3}, DropAt: 400 * time.Millisecond, Down: 400 * time.Millisecond,
		EditEvery: 3, DeleteEvery: 5, CheckViews: 10,
	})
	require.EqualValues(t, 2, rs.Dropped)
	require.EqualValues(t, 2, rs.Reconnected)
	require.Zero(t, rs.StillDown)
	require.Zero(t, rs.NotConnected)
	require.EqualValues(t, 2, rs.ChatsListed)
	require.Positive(t, rs.ChatsBehind)
	require.Positive(t, rs.ChatsUnread)
	require.EqualValues(t, 2, rs.ChatsLastMessage)
	require.EqualValues(t, 2, rs.CatchUps)
	require.Zero(t, rs.CatchUpFailed)
	require.Greater(t, rs.Pages, rs.CatchUps, "more than one page each")
	require.EqualValues(t, 2, rs.ReconnectToCaughtUp.Count)
	require.EqualValues(t, 2, rs.ReconnectToAuth.Count)
	require.EqualValues(t, 2, rs.AuthToCaughtUp.Count)

	require.Positive(t, rs.AckedWhileDown)
	require.Positive(t, rs.Recovered)
	require.Equal(t, rs.AckedWhileDown, rs.Recovered+rs.LiveAfterReconnect+rs.DeletedBeforeSeen, "every message acknowledged while down was seen, or deleted first")
	require.Positive(t, rs.EditsAckedWhileDown)
	require.Positive(t, rs.EditsRecovered+rs.DeletesRecovered)
	require.Positive(t, rs.EditsAcked)
	require.Positive(t, rs.DeletesAcked)
	require.Positive(t, rs.EditsLive)
	require.Zero(t, rs.EditErrors)
	require.Zero(t, rs.FramesWithoutSeq)
	require.NotNil(t, rs.Missing)
	require.Zero(t, *rs.Missing)
	require.Zero(t, *rs.EditsMissing)
	require.Zero(t, *rs.MissingNotDropped)
	require.Zero(t, *rs.EditsMissingNotDropped)
	require.True(t, rs.AllSeen)

	require.EqualValues(t, 2, rs.ViewChecks)
	require.EqualValues(t, 2, rs.ViewsMatched)
	require.True(t, rs.ViewsMatch)
	require.Positive(t, rs.ViewMessages)

	require.Equal(t, c["sent"], c["acked"], "every send acknowledged: the dropping sides waited for their echoes")
	require.Zero(t, c["errors"])
	require.Zero(t, c["unexpected_closes"])
	require.Equal(t, c["acked"], c["delivered"]+c["caught_up"]+c["deleted_unseen"]+c["seen_by_edit"],
		"every acknowledged message delivered, caught up, seen in a later edit, or deleted before it was seen")
	for _, h := range []string{hDeliveryBeforeDrop, hDeliveryWhileDown, hDeliveryAfterDrop} {
		require.Positive(t, lat[h].Count, h)
	}
	require.Equal(t, lat[hDelivery].Count, lat[hDeliveryBeforeDrop].Count+lat[hDeliveryWhileDown].Count+lat[hDeliveryAfterDrop].Count)

	var summary bytes.Buffer
	printSummary(&summary, &Result{Scenario: "resume", Params: Params{Pairs: 4, Rate: 400, Drop: 2, DropAtSeconds: 0.4, DownSeconds: 0.4}, Resume: rs, Latency: lat})
	t.Log(summary.String())
	for _, line := range []string{"2 receiving sides dropped at 400ms for 400ms", "2 of 2 receiving sides dropped cleanly (0 not connected), 2 back, 0 still down at the end",
		"0: every message, edit and delete acknowledged to a peer was seen", "2 views checked against the history loaded afresh: 2 equal, 0 NOT equal",
		"send→delivery while down", "reconnect→caught up"} {
		require.Contains(t, summary.String(), line)
	}
	b, err := json.Marshal(rs)
	require.NoError(t, err)
	for _, field := range []string{`"missing":0`, `"edits_missing":0`, `"every_acknowledged_seen":true`, `"views_match":true`, `"acked_while_down":`,
		`"recovered":`, `"reconnect_to_caught_up_us":{"count":2`, `"duplicates":`, `"view_checks":2`} {
		require.Contains(t, string(b), field)
	}
}

// The simulated server loses messages and edits: messages sent while a
// dropped session was away that it neither gets live nor in the
// catch-up are missing and absent from its view; edits left out of the
// catch-up are missing and make its view stale.
func TestResumeWorkerFaults(t *testing.T) {
	f := newFakeV2(t)
	lossy, editless := uid(1), uid(3) // pair 0's and pair 1's receiving sides
	f.lose = func(m *fakeMsg, to int64, online bool) bool {
		return to == lossy && !online && m.editSeq == 0 && m.seq%3 == 0
	}
	f.noEdits = func(user int64) bool { return user == editless }
	rs, _, _ := runResumeWorker(t, f, 2, 200, 1500*time.Millisecond, &resumeSpec{
		Drops: []int{0, 1}, DropAt: 300 * time.Millisecond, Down: 500 * time.Millisecond,
		EditEvery: 2, DeleteEvery: 0, CheckViews: 10,
	})
	require.EqualValues(t, 2, rs.CatchUps)
	require.NotNil(t, rs.Missing)
	require.Positive(t, *rs.Missing, "lost messages")
	require.Positive(t, *rs.EditsMissing, "edits left out of the catch-up")
	require.False(t, rs.AllSeen)
	require.Zero(t, *rs.MissingNotDropped)
	require.EqualValues(t, 2, rs.ViewChecks)
	require.EqualValues(t, 2, rs.ViewsMismatched)
	require.Positive(t, rs.ViewAbsent)
	require.Positive(t, rs.ViewStale)
	require.False(t, rs.ViewsMatch)
	var summary bytes.Buffer
	printSummary(&summary, &Result{Scenario: "resume", Resume: rs})
	require.Contains(t, summary.String(), "acknowledged to a peer NOT seen by the dropped session")
}

var _ io.Writer = (*workerOutput)(nil)

func TestResumeFlags(t *testing.T) {
	c, err := parseFlags([]string{"--scenario", "resume", "--pairs", "9", "--database-url", "sqlite:x"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 4, c.Drop, "half of the pairs")
	require.Equal(t, 18, c.Sessions)
	require.Equal(t, 2, c.WSVersion)
	require.Equal(t, "ws://127.0.0.1:8080/ws?v=2", c.wsURL())
	require.Equal(t, 10, c.EditEvery)
	require.Equal(t, 25, c.DeleteEvery)
	require.False(t, c.ledger())
	require.True(t, c.chatting())

	// Three workers of 4, 4 and 1 pairs: every drop and check placed once.
	c.CheckViews = 3
	var drops, checks int
	for _, w := range [][2]int{{0, 4}, {4, 4}, {8, 1}} {
		rs := c.resumeShare(w[0], w[1], drops)
		for _, j := range rs.Drops {
			require.Less(t, j, w[1])
		}
		drops += len(rs.Drops)
		checks += rs.CheckViews
		require.LessOrEqual(t, rs.CheckViews, len(rs.Drops))
	}
	require.Equal(t, 4, drops)
	require.Equal(t, 3, checks)

	c, err = parseFlags([]string{"--scenario", "dm", "--database-url", "sqlite:x", "--drop", "3"}, io.Discard)
	require.NoError(t, err)
	require.Zero(t, c.Drop, "not resume: no drops")
}

// Every counter has a name of its own.
func TestCounterNames(t *testing.T) {
	seen := map[string]bool{}
	for i, n := range counterNames {
		require.NotEmpty(t, n, "counter %d", i)
		require.False(t, seen[n], n)
		seen[n] = true
	}
}
