package load

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// The guild scenario (protocol.md §3, v2): --guilds G guilds of --members
// M members, each member one session; session i is member i mod M of
// guild i / M. Once every session is up, member 0 of each guild creates it
// (its answer carries the `general` channel) and an invite of unlimited
// uses (cmdGuildCreate); the parent hands every worker the invites and the
// other members join (cmdGuildJoin, 64 joins under way at once per
// worker); then every member sends into its guild's general channel, all
// members of all guilds together at --rate, round robin (cmdDM), for
// --duration. A guild's members may be on different workers: every
// worker counts its stamps from the run's common epoch (workerSpec.Epoch),
// so a send stamped by one worker is timed where another receives it.
//
// Each member's session checks what it receives in its channel: a send
// event (no nonce) is a fan-out delivery, timed from its stamp; a message
// id it already had (its own echoes included) is a duplicate; a seq below
// the highest it saw is out of order. The parent expects every message
// sent into guild g to reach each of its other members: sent_g ×
// (members_g − 1), members_g those in the guild once the joins were over.

// Guild request nonces (no stamp starts with "g").
const (
	guildCreateNonce = "gc"
	guildInviteNonce = "gi"
	guildJoinNonce   = "gj"
)

// guildJoinConcurrency bounds the joins (and creates) under way at once
// per worker; guildCallTimeout one request's answer (the guild actor
// serializes its joins, so the last of 1,000 waits for the others).
const (
	guildJoinConcurrency = 64
	guildCallTimeout     = 2 * time.Minute
)

// guildSpec is the guild scenario's shape, the same for every worker.
type guildSpec struct {
	Guilds  int `json:"guilds"`
	Members int `json:"members"`
}

// guildInfo is one guild as its creator made it.
type guildInfo struct {
	Index   int    `json:"index"`   // g: its members are sessions g·M … g·M+M−1
	ID      string `json:"id"`      // guild id
	Channel string `json:"channel"` // the general channel's id: the chat_id of its sends
	Code    string `json:"code"`    // the invite (max_uses 0)
}

// guildState is a member session's view of its guild's channel. The
// channel and joined are set before the sending begins; seen and lastSeq
// are the session goroutine's.
type guildState struct {
	guild   int                // global guild index
	member  int                // 0: the creator
	channel []byte             // set before joined
	joined  atomic.Bool        // a member: created the guild or joined it
	seen    map[int64]struct{} // message ids received (echoes included)
	lastSeq int64              // the highest channel seq received
}

// guildOf is the guild and member index of global session i.
func (g *guildSpec) guildOf(i int) (guild, member int) { return i / g.Members, i % g.Members }

// guildSessions sets up every session's guild state (startSessions).
func (w *worker) guildSessions() {
	gs := w.spec.Guild
	for _, s := range w.sessions {
		g, m := gs.guildOf(s.index)
		s.guild = &guildState{guild: g, member: m, seen: make(map[int64]struct{})}
	}
}

// guildAnswer is what the harness reads of a guild answer: the guild
// object (create, join) or an invite.
type guildAnswer struct {
	Type    string `json:"type"`
	Payload struct {
		Type     string  `json:"type"`
		ID       flexInt `json:"id"`
		GuildID  flexInt `json:"guild_id"`
		Code     string  `json:"code"`
		Channels []struct {
			ID   flexInt `json:"id"`
			Name string  `json:"name"`
		} `json:"channels"`
	} `json:"payload"`
}

// guildCall sends a guild request of s and decodes its answer; nil when
// it was refused or not answered (counted).
func (s *session) guildCall(body []byte, nonce string) *guildAnswer {
	fb := newFrameBuf(len(body) + 64)
	fb.b = append(fb.b, `{"type":"guild","payload":`...)
	fb.b = append(fb.b, body...)
	fb.b = append(fb.b, `,"nonce":"`...)
	fb.b = append(fb.b, nonce...)
	fb.b = append(fb.b, `"}`...)
	p, err := s.call(fb.finish(ws.OpText), nonce, guildCallTimeout)
	if err != nil {
		return nil
	}
	var a guildAnswer
	if json.Unmarshal(p, &a) != nil || a.Type != "guild" {
		return nil // an error frame: counted by handle
	}
	return &a
}

// guildCreate has this worker's first members create their guilds and an
// invite each, and reports them.
func (w *worker) guildCreate() {
	var mu sync.Mutex
	var infos []guildInfo
	w.eachGuildSession(func(s *session) bool { return s.guild.member == 0 }, func(s *session) {
		gs := s.guild
		name := strconv.AppendQuote(nil, "load guild "+strconv.Itoa(gs.guild))
		a := s.guildCall(append(append([]byte(`{"type":"create","name":`), name...), '}'), guildCreateNonce)
		if a == nil || a.Payload.ID == 0 || len(a.Payload.Channels) == 0 {
			w.c.add(cGuildCreateErrors, 1)
			return
		}
		id := strconv.FormatInt(int64(a.Payload.ID), 10)
		channel := strconv.FormatInt(int64(a.Payload.Channels[0].ID), 10)
		for _, c := range a.Payload.Channels {
			if c.Name == "general" {
				channel = strconv.FormatInt(int64(c.ID), 10)
			}
		}
		inv := s.guildCall([]byte(`{"type":"invite","guild_id":"`+id+`","max_uses":0}`), guildInviteNonce)
		if inv == nil || inv.Payload.Code == "" {
			w.c.add(cGuildCreateErrors, 1)
			return
		}
		gs.channel = []byte(channel)
		gs.joined.Store(true)
		w.c.add(cGuildsCreated, 1)
		w.c.add(cGuildJoined, 1)
		mu.Lock()
		infos = append(infos, guildInfo{Index: gs.guild, ID: id, Channel: channel, Code: inv.Payload.Code})
		mu.Unlock()
	})
	w.emit(workerReport{Type: repGuilds, At: time.Now().UnixNano(), Counts: w.c.snapshot(), GuildInfos: infos})
}

// guildJoin has this worker's other members join their guilds with the
// invites, and reports the members of each guild it holds.
func (w *worker) guildJoin(infos []guildInfo) {
	byIndex := make(map[int]guildInfo, len(infos))
	for _, g := range infos {
		byIndex[g.Index] = g
	}
	w.eachGuildSession(func(s *session) bool {
		_, ok := byIndex[s.guild.guild]
		return s.guild.member != 0 && ok
	}, func(s *session) {
		g := byIndex[s.guild.guild]
		a := s.guildCall([]byte(`{"type":"join","code":`+strconv.Quote(g.Code)+`}`), guildJoinNonce)
		if a == nil || strconv.FormatInt(int64(a.Payload.ID), 10) != g.ID {
			w.c.add(cGuildJoinErrors, 1)
			return
		}
		s.guild.channel = []byte(g.Channel)
		s.guild.joined.Store(true)
		w.c.add(cGuildJoined, 1)
	})
	joined := map[int]int64{}
	for _, s := range w.sessions {
		if s.guild.joined.Load() {
			joined[s.guild.guild]++
		}
	}
	w.emit(workerReport{Type: repJoined, At: time.Now().UnixNano(), Counts: w.c.snapshot(), GuildJoined: joined})
}

// eachGuildSession runs f for every authenticated session that pick
// takes, guildJoinConcurrency at once, and waits for them.
func (w *worker) eachGuildSession(pick func(*session) bool, f func(*session)) {
	sem := make(chan struct{}, guildJoinConcurrency)
	var wg sync.WaitGroup
	for _, s := range w.sessions {
		if w.stopped() {
			break
		}
		if !pick(s) {
			continue
		}
		if !s.authed.Load() {
			if s.guild.member == 0 {
				w.c.add(cGuildCreateErrors, 1)
			} else {
				w.c.add(cGuildJoinErrors, 1)
			}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(s)
		}()
	}
	wg.Wait()
}

// guildSendLoop sends into the channels at spec.Rate, the worker's
// members in turn, open loop as sendLoop: a send behind its schedule is
// made at once (its lag recorded); one whose author is not connected or
// not a member is skipped. It counts the sends by guild.
func (w *worker) guildSendLoop() {
	var members []*session
	for _, s := range w.sessions {
		if s.guild.joined.Load() {
			members = append(members, s)
		}
	}
	if len(members) == 0 || w.spec.Rate <= 0 {
		return
	}
	sent := map[int]int64{}
	defer func() {
		w.guildSentMu.Lock()
		w.guildSent = sent
		w.guildSentMu.Unlock()
	}()
	w.paced(members, func(s *session, fb *frameBuf) bool {
		if !s.authed.Load() || !s.guildSend(fb) {
			return false
		}
		sent[s.guild.guild]++
		return true
	})
}

// guildSend writes one message of s into its guild's channel, stamped
// with its next sequence number and the send time (content and nonce, as
// a dm send).
func (s *session) guildSend(fb *frameBuf) bool {
	w := s.w
	seq := s.sendSeq + 1
	nanos := w.now()
	fb.reset()
	fb.b = append(fb.b, `{"type":"chat","payload":{"type":"send","chat_id":"`...)
	fb.b = append(fb.b, s.guild.channel...)
	fb.b = append(fb.b, `","content":"`...)
	start := len(fb.b)
	fb.b = appendKindStamp(fb.b, kindDM, false, seq, nanos)
	stamp := len(fb.b) - start
	fb.b = appendPadding(fb.b, stamp, w.spec.Size)
	fb.b = append(fb.b, `"},"nonce":"`...)
	fb.b = append(fb.b, fb.b[start:start+stamp]...)
	fb.b = append(fb.b, `"}`...)
	if s.write(fb.finish(ws.OpText), 0) != nil {
		return false
	}
	s.sendSeq = seq
	w.c.add(cSent, 1)
	w.nodes[s.node.Load()].add(nSent, 1)
	if nanos < w.warmEnd.Load() {
		w.c.add(cWarmupSent, 1)
	}
	return true
}

// guildChat takes a chat frame of a guild member's session: the echo of
// its send (nonce), or a fan-out delivery of another member's.
func (s *session) guildChat(p []byte) {
	w, gs := s.w, s.guild
	id, _, idOK := chatIDs(p)
	if nonce, ok := frameNonce(p); ok {
		if kind, cross, _, nanos, ok := parseKindStamp(nonce); ok {
			s.acked(kind, cross, nanos, 0)
			if idOK {
				gs.seen[id] = struct{}{}
			}
		}
		return
	}
	if !bytes.HasPrefix(p, chatSendKind) {
		return
	}
	content, ok := stringAfter(p, len(chatSendKind), contentPrefix)
	if !ok {
		return
	}
	_, _, _, nanos, ok := parseKindStamp(content)
	if !ok {
		return
	}
	if idOK {
		if _, dup := gs.seen[id]; dup {
			w.c.add(cDuplicates, 1)
			return
		}
		gs.seen[id] = struct{}{}
	}
	if seq, ok := intField(p, seqKey); ok {
		if seq < gs.lastSeq {
			w.c.add(cOutOfOrder, 1)
		}
		gs.lastSeq = max(gs.lastSeq, seq)
	} else {
		w.c.add(cNoSeq, 1)
	}
	d := time.Duration(w.now() - nanos)
	w.c.add(cDelivered, 1)
	s.nodeC().add(nDelivered, 1)
	w.hists[hDelivery].record(d)
	w.byPhase(nanos, hDeliveryWarm, hDeliveryAfter).record(d)
}

// guildQuiet is how long the drain of a guild run waits without a
// delivery, once every send is answered, before it takes the deliveries
// as over (a worker does not know how many its sessions are to receive).
const guildQuiet = time.Second

// guildDrain waits, up to spec.Drain, for every send to be answered and
// then for the deliveries to stop coming for guildQuiet.
func (w *worker) guildDrain() {
	deadline := time.Now().Add(w.spec.Drain)
	last, lastAt := w.c.get(cDelivered), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if d := w.c.get(cDelivered); d != last {
			last, lastAt = d, time.Now()
			continue
		}
		if w.c.get(cAcked)+w.c.get(cSendErrors) >= w.c.get(cSent) && time.Since(lastAt) >= guildQuiet {
			return
		}
	}
}
