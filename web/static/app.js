// REWIND web client: protocol v2 (shared/protocol.md) over /ws?v=2.
// Everything a person wrote is put in the page with textContent and DOM
// calls only, never parsed as HTML.

const TOKEN_KEY = 'rewind.token'; // sessionStorage: one login per tab
const JOIN_KEY = 'rewind.join';
const PAGE = 50; // history page size
const TYPING_SHOW_MS = 8000;
const TYPING_SEND_MS = 3000;
const HEARTBEAT_MS = 30000; // the server's default interval is 40 s

const $ = (id) => document.getElementById(id);

// el builds an element: props are properties (or on* listeners), children
// are nodes or strings (strings become text nodes).
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  e.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return e;
}

// ---- errors shown to the person ----

class ServerError extends Error {
  constructor(code, reason) {
    super(reason || `error ${code}`);
    this.code = code;
  }
}

function showError(text) {
  const box = $('errors');
  const line = el('div', { class: 'error' },
    el('span', {}, text),
    el('button', { type: 'button', class: 'link', onclick: () => line.remove(), 'aria-label': 'Dismiss' }, '×'));
  box.append(line);
  setTimeout(() => line.remove(), 10000);
}

function report(err) {
  showError(err instanceof Error ? err.message : String(err));
}

// ---- state ----

const S = {
  me: null,
  friends: new Map(), // id -> user (with status)
  incoming: new Map(), // id -> user who asked me
  outgoing: new Map(), // id -> user I asked
  guilds: new Map(), // id -> guild object
  members: new Map(), // guild id -> Map(user id -> user)
  users: new Map(), // id -> user, for names
  chats: new Map(), // chat id -> chat state
  view: null, // {kind: 'dm', chatId, peerId} | {kind: 'channel', chatId, guildId}
  guildId: null, // the guild shown in the guild pane
};

function chat(id) {
  let c = S.chats.get(id);
  if (!c) {
    c = {
      id, latest: 0, readSeq: 0, unread: 0,
      pos: null, // the highest seq/edit_seq seen; null until the history is loaded
      msgs: new Map(), exhausted: false, loading: false,
      otherRead: 0, typing: new Map(),
    };
    S.chats.set(id, c);
  }
  return c;
}

const dmId = (a, b) => (BigInt(a) ^ BigInt(b)).toString();

function remember(u) {
  if (u && u.id) S.users.set(u.id, { ...(S.users.get(u.id) || {}), ...u });
}

function nameOf(id) {
  const u = S.users.get(id);
  if (u) return u.name;
  lookUpUser(id);
  return '…';
}

const lookingUp = new Set();
async function lookUpUser(id) {
  if (lookingUp.has(id) || !conn.ready) return;
  lookingUp.add(id);
  try {
    const f = await conn.request('user', { id });
    remember(f.payload);
    for (const e of document.querySelectorAll('[data-author]')) {
      if (e.dataset.author === id) e.textContent = f.payload.name;
    }
  } catch (err) {
    report(err);
  } finally {
    lookingUp.delete(id);
  }
}

// ---- connection ----

class Conn {
  constructor() {
    this.ws = null;
    this.ready = false; // authenticated
    this.seq = 0;
    this.prefix = Math.random().toString(36).slice(2, 8);
    this.pending = new Map();
    this.attempt = 0;
    this.timer = null;
    this.heartbeat = null;
    this.wanted = false;
    this.offline = false; // test hook: held offline
  }

  start() {
    this.wanted = true;
    this.connect();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  connect() {
    clearTimeout(this.timer);
    if (!this.wanted || this.offline || this.ws) return;
    setStatus('Connecting…');
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?v=2`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onmessage = (ev) => this.dispatch(ev.data);
    ws.onopen = () => this.hello(ws);
    ws.onclose = (ev) => this.closed(ws, ev);
  }

  async hello(ws) {
    try {
      await this.request('heartbeat', { count: 0 }, { anyState: true });
      const f = await this.request('auth', { auth: sessionStorage.getItem(TOKEN_KEY) }, { anyState: true });
      this.ready = true;
      this.attempt = 0;
      this.heartbeat = setInterval(() => this.send({ type: 'heartbeat', payload: { count: 0 } }), HEARTBEAT_MS);
      setStatus('Online');
      await onAuth(f.payload);
    } catch (err) {
      if (ws !== this.ws) return;
      if (err instanceof ServerError && err.code === 4000) {
        // A bad or revoked token: the person logs in again.
        loggedOut(`Please log in again: ${err.message}`);
        return;
      }
      report(err);
    }
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.ready = false;
    clearInterval(this.heartbeat);
    for (const p of this.pending.values()) p.reject(new Error('The connection was lost before the server answered.'));
    this.pending.clear();
    if (!this.wanted) return;
    if (ev.code === 4000) {
      loggedOut('You were logged out (on this or another device).');
      return;
    }
    if (this.offline) {
      setStatus('Offline');
      return;
    }
    const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt++;
    const why = ev.reason ? ` (${ev.reason})` : '';
    setStatus(`Offline${why}: reconnecting in ${Math.ceil(delay / 1000)} s`, true);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  // request sends a frame with a nonce and resolves with its answer; with
  // multi, with {items, end}: the frames up to the load end marker.
  request(type, payload, { multi = false, anyState = false } = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || (!this.ready && !anyState)) {
      return Promise.reject(new Error('Not connected: nothing was sent. Try again when REWIND is online.'));
    }
    const nonce = `${this.prefix}-${++this.seq}`;
    return new Promise((resolve, reject) => {
      this.pending.set(nonce, { resolve, reject, multi, items: [] });
      this.ws.send(JSON.stringify({ type, payload, nonce }));
    });
  }

  dispatch(data) {
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      showError('The server sent something that is not JSON.');
      return;
    }
    const p = f.nonce !== undefined ? this.pending.get(f.nonce) : undefined;
    if (p) {
      if (f.type === 'error') {
        this.pending.delete(f.nonce);
        p.reject(new ServerError(f.payload.code, f.payload.reason));
      } else if (p.multi && f.type !== 'load') {
        p.items.push(f);
      } else {
        this.pending.delete(f.nonce);
        p.resolve(p.multi ? { items: p.items, end: f.payload } : f);
      }
      return;
    }
    try {
      onEvent(f);
    } catch (err) {
      report(err);
    }
  }
}

const conn = new Conn();

function setStatus(text, retry = false) {
  $('conn-status').textContent = text;
  $('conn-status').className = text === 'Online' ? 'online' : 'offline';
  $('retry-now').hidden = !retry;
}

// ---- HTTP API ----

async function postAPI(path, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method: 'POST', headers, body: body ? JSON.stringify(body) : undefined });
  } catch {
    throw new Error('The server could not be reached.');
  }
  let env = null;
  try {
    env = await res.json();
  } catch {
    // not JSON
  }
  if (!res.ok) throw new Error((env && env.payload && env.payload.message) || `HTTP ${res.status}`);
  return env;
}

// ---- views ----

function showAuth(notice) {
  $('app-view').hidden = true;
  $('auth-view').hidden = false;
  const n = $('auth-notice');
  n.hidden = !notice;
  n.textContent = notice || '';
  if (sessionStorage.getItem(JOIN_KEY) && !notice) {
    n.hidden = false;
    n.textContent = 'Log in to join the guild you were invited to.';
  }
}

function showApp() {
  $('auth-view').hidden = true;
  $('app-view').hidden = false;
}

function loggedOut(notice) {
  sessionStorage.removeItem(TOKEN_KEY);
  conn.stop();
  resetState();
  showAuth(notice);
}

function resetState() {
  S.me = null;
  for (const m of [S.friends, S.incoming, S.outgoing, S.guilds, S.members, S.users, S.chats]) m.clear();
  S.view = null;
  S.guildId = null;
  for (const id of ['friends', 'incoming', 'outgoing', 'guilds', 'messages', 'channels', 'members']) $(id).replaceChildren();
  $('guild-pane').hidden = true;
  $('composer').hidden = true;
  $('chat-title').textContent = 'Pick a friend or a channel';
  document.body.classList.remove('in-chat');
}

function formMsg(form, text, ok = false) {
  const m = form.querySelector('.form-msg');
  m.textContent = text;
  m.className = ok ? 'form-msg ok' : 'form-msg bad';
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  formMsg(form, 'Logging in…', true);
  try {
    const env = await postAPI('/api/v1/auth/login', { email: $('login-email').value, password: $('login-password').value });
    sessionStorage.setItem(TOKEN_KEY, env.payload.token);
    formMsg(form, '', true);
    $('login-password').value = '';
    startSession();
  } catch (err) {
    formMsg(form, err.message);
  }
});

$('register-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const email = $('register-email').value;
  formMsg(form, 'Registering…', true);
  try {
    await postAPI('/api/v1/auth/register', { name: $('register-name').value, email, password: $('register-password').value });
    formMsg(form, `Almost there: open the verification link mailed to ${email}, then log in.`, true);
    $('register-password').value = '';
    $('login-email').value = email;
  } catch (err) {
    formMsg(form, err.message);
  }
});

$('logout-button').addEventListener('click', async () => {
  const token = sessionStorage.getItem(TOKEN_KEY);
  try {
    await postAPI('/api/v1/auth/logout', null, token);
  } catch (err) {
    // The token may be dead already; this tab forgets it either way.
    loggedOut(`Logged out here; the server said: ${err.message}`);
    return;
  }
  loggedOut('You are logged out.');
});

$('retry-now').addEventListener('click', () => {
  conn.attempt = 0;
  conn.connect();
});
window.addEventListener('online', () => conn.connect());

function startSession() {
  resetState();
  showApp();
  conn.start();
}

// ---- the auth answer: lists, chats, catch-up ----

async function onAuth(p) {
  applyLists(p);
  joinedElsewhere.clear(); // this answer lists every guild
  for (const g of p.guilds || []) S.guilds.set(g.id, g);
  for (const c of p.chats || []) {
    const ch = chat(c.chat_id);
    ch.latest = Math.max(ch.latest, c.seq);
    ch.readSeq = Math.max(ch.readSeq, c.read_seq);
    ch.unread = c.unread;
  }
  for (const g of S.guilds.values()) {
    for (const c of g.channels) chat(c.id).latest = Math.max(chat(c.id).latest, c.seq);
  }
  renderAll();
  // Catch up every chat whose history this page holds (§4.1).
  for (const ch of S.chats.values()) {
    if (ch.pos !== null && ch.latest > ch.pos) await catchUp(ch);
  }
  if (S.view) markRead(chat(S.view.chatId));
  if (S.guildId) loadMembers(S.guildId);
  const code = sessionStorage.getItem(JOIN_KEY);
  if (code) {
    sessionStorage.removeItem(JOIN_KEY);
    joinGuild(code);
  }
}

function applyLists(p) {
  S.me = p.self_user;
  remember(S.me);
  S.friends.clear();
  S.incoming.clear();
  S.outgoing.clear();
  for (const u of p.mutual_users || []) { S.friends.set(u.id, u); remember(u); }
  for (const u of p.mutual_requests || []) { S.incoming.set(u.id, u); remember(u); }
  for (const u of p.sent_requests || []) { S.outgoing.set(u.id, u); remember(u); }
}

// refreshLists asks for the auth answer again (the same token answers the
// same payload): the friends lists with presence.
async function refreshLists() {
  try {
    const f = await conn.request('auth', { auth: sessionStorage.getItem(TOKEN_KEY) });
    applyLists(f.payload);
    renderFriends();
  } catch (err) {
    report(err);
  }
}

async function catchUp(ch) {
  for (;;) {
    let res;
    try {
      res = await conn.request('load', { type: 'changes', load_id: ch.id, since: ch.pos }, { multi: true });
    } catch (err) {
      report(err);
      return;
    }
    for (const f of res.items) applyMessage(ch, f.payload, false); // counted in the auth answer's unread
    ch.pos = Math.max(ch.pos, res.end.seq);
    if (!res.end.more) return;
  }
}

// ---- events ----

function onEvent(f) {
  const p = f.payload;
  switch (f.type) {
    case 'heartbeat': case 'ok': return;
    case 'error': showError(p.reason || `error ${p.code}`); return;
    case 'chat': applyMessage(chat(p.chat_id), p, true); return;
    case 'typing': onTyping(p); return;
    case 'read': onRead(p); return;
    case 'presence': {
      const u = S.friends.get(p.user_id);
      if (u) { u.status = p.status; renderFriends(); renderChatHeader(); }
      return;
    }
    case 'user': {
      remember(p);
      if (S.me && p.id === S.me.id) S.me = p;
      for (const m of [S.friends, S.incoming, S.outgoing]) if (m.has(p.id)) m.set(p.id, { ...m.get(p.id), ...p });
      renderAll();
      return;
    }
    case 'mutual_users': onFriendEvent(p); return;
    case 'guild': onGuildEvent(p); return;
    default: // a frame type this client does not know: nothing to do
  }
}

function onFriendEvent(p) {
  const u = p.user;
  remember(u);
  const self = p.origin === 'self'; // my other device; u is the other person
  switch (p.type) {
    case 'request':
      (self ? S.outgoing : S.incoming).set(u.id, u);
      break;
    case 'response':
      S.incoming.delete(u.id);
      S.outgoing.delete(u.id);
      S.friends.set(u.id, { ...u, status: u.status || 'offline' });
      refreshLists(); // for the new friend's presence
      break;
    case 'remove':
      S.incoming.delete(u.id);
      S.outgoing.delete(u.id);
      break;
    case 'delete':
      S.friends.delete(u.id);
      break;
    default:
  }
  renderFriends();
  renderChatHeader();
}

function onGuildEvent(p) {
  const g = S.guilds.get(p.guild_id);
  switch (p.type) {
    case 'member_join': {
      remember(p.user);
      const members = S.members.get(p.guild_id);
      // My own join is counted in the join's answer, which may come before
      // or after this event.
      const mine = S.me && p.user.id === S.me.id;
      if (mine && !g) { joinedElsewhere.add(p.guild_id); syncGuilds(); }
      if (g && !mine && !(members && members.has(p.user.id))) g.member_count++;
      if (members) members.set(p.user.id, p.user);
      break;
    }
    case 'member_leave':
      if (S.me && p.user.id === S.me.id) { dropGuild(p.guild_id); break; }
      if (g) memberGone(g, p.user.id);
      break;
    case 'removed':
    case 'delete':
      dropGuild(p.guild_id);
      if (p.type === 'removed') showError(g ? `You were removed from the guild ${g.name}.` : 'You were removed from a guild.');
      break;
    case 'update':
      S.guilds.set(p.guild.id, p.guild);
      break;
    case 'channel_create':
      if (g && !g.channels.some((c) => c.id === p.channel.id)) g.channels.push(p.channel);
      break;
    case 'channel_delete':
      if (g) channelGone(g, p.channel.id);
      break;
    default:
  }
  renderGuilds();
  renderGuildPane();
}

// Guilds I joined on another device: their member_join names me and a
// guild this page does not know. No frame fetches one guild, but the auth
// answer lists them all (§3), and a second auth answers it again (§2.2).
const joinedElsewhere = new Set();
let syncing = false;

async function syncGuilds() {
  if (syncing) return; // the loop below takes ids added meanwhile
  syncing = true;
  try {
    while (joinedElsewhere.size > 0) {
      const asked = [...joinedElsewhere];
      const f = await conn.request('auth', { auth: sessionStorage.getItem(TOKEN_KEY) });
      const chats = new Map((f.payload.chats || []).map((c) => [c.chat_id, c]));
      for (const g of f.payload.guilds || []) {
        // One left again meanwhile (dropGuild) is no longer wanted.
        if (joinedElsewhere.has(g.id) && !S.guilds.has(g.id)) addGuild(g, chats);
      }
      // The event came after the join was stored, so an answer asked for
      // after it lists the guild unless it was left again: done either way.
      for (const id of asked) joinedElsewhere.delete(id);
      renderGuilds();
    }
  } catch (err) {
    // Lost with the connection: the reconnect's auth answer has every guild.
    if (conn.ready) report(err);
  } finally {
    syncing = false;
  }
}

// addGuild takes a guild new to this page, with its channels' read state
// from the auth answer's chats (by chat id), as a reload would show it.
function addGuild(g, chats) {
  S.guilds.set(g.id, g);
  for (const c of g.channels) {
    const ch = chat(c.id);
    ch.latest = Math.max(ch.latest, c.seq);
    const st = chats.get(c.id);
    if (st) { ch.readSeq = Math.max(ch.readSeq, st.read_seq); ch.unread = st.unread; }
  }
}

function dropGuild(id) {
  joinedElsewhere.delete(id);
  // Its channels' messages are forgotten: on joining again their history
  // is loaded afresh, with what was said meanwhile, not a stale copy.
  const g = S.guilds.get(id);
  if (g) for (const c of g.channels) S.chats.delete(c.id);
  S.guilds.delete(id);
  S.members.delete(id);
  if (S.guildId === id) { S.guildId = null; $('guild-pane').hidden = true; }
  if (S.view && S.view.guildId === id) closeChat();
}

// memberGone and channelGone apply a change once: the event and the
// owner's answer both tell it (events are best effort, §2.8), in either
// order.
function memberGone(g, userId) {
  const members = S.members.get(g.id);
  if (members && !members.delete(userId)) return;
  g.member_count--;
}

function channelGone(g, channelId) {
  g.channels = g.channels.filter((c) => c.id !== channelId);
  S.chats.delete(channelId);
  if (S.view && S.view.chatId === channelId) closeChat();
}

// applyMessage takes a chat object (event, echo, history or changes item).
function applyMessage(ch, m, live) {
  const seq = Math.max(m.seq || 0, m.edit_seq || 0);
  ch.latest = Math.max(ch.latest, seq);
  clearTyping(ch, m.user_id);
  const current = S.view && S.view.chatId === ch.id;
  if (ch.pos === null) {
    // History not loaded: only the badge changes.
    if (live && m.type === 'send' && S.me && m.user_id !== S.me.id) ch.unread++;
    renderBadges();
    return;
  }
  ch.pos = Math.max(ch.pos, seq);
  const known = ch.msgs.get(m.id);
  if (m.type === 'edit') {
    if (!known) return; // older than what this page holds
    if (m.content === '') {
      ch.msgs.delete(m.id);
      if (current) { const e = msgElement(m.id); if (e) e.remove(); }
    } else {
      Object.assign(known, { content: m.content, edited_at: m.edited_at, edit_seq: m.edit_seq });
      if (current) replaceMsg(known);
    }
    return;
  }
  if (known) return; // seen already (an echo and a catch-up, say)
  if (!m.content) return;
  const msg = { id: m.id, user_id: m.user_id, content: m.content, created_at: m.created_at, edited_at: m.edited_at, seq: m.seq, edit_seq: m.edit_seq };
  ch.msgs.set(m.id, msg);
  if (live && S.me && m.user_id !== S.me.id && !current) ch.unread++;
  if (current) {
    insertMsg(msg, live);
    if (live) markRead(ch);
  }
  renderBadges();
}

function onTyping(p) {
  if (S.me && p.user_id === S.me.id) return;
  const ch = chat(p.chat_id);
  clearTimeout(ch.typing.get(p.user_id));
  ch.typing.set(p.user_id, setTimeout(() => clearTyping(ch, p.user_id), TYPING_SHOW_MS));
  renderTyping();
}

function clearTyping(ch, userId) {
  if (!ch.typing.has(userId)) return;
  clearTimeout(ch.typing.get(userId));
  ch.typing.delete(userId);
  renderTyping();
}

function onRead(p) {
  const ch = chat(p.chat_id);
  if (S.me && p.user_id === S.me.id) {
    ch.readSeq = Math.max(ch.readSeq, p.seq);
    if (ch.readSeq >= ch.latest) ch.unread = 0;
    renderBadges();
    return;
  }
  ch.otherRead = Math.max(ch.otherRead, p.seq);
  if (S.view && S.view.chatId === ch.id) renderReceipts(ch);
}

// ---- rendering: lists ----

function renderAll() {
  renderMe();
  renderFriends();
  renderGuilds();
  renderGuildPane();
  renderChatHeader();
}

function avatar(u) {
  const a = el('span', { class: 'avatar', 'aria-hidden': 'true' }, (u && u.name ? u.name[0] : '?').toUpperCase());
  if (u && typeof u.profile === 'string' && u.profile.startsWith('https://')) {
    const img = el('img', { src: u.profile, alt: '', referrerPolicy: 'no-referrer' });
    img.addEventListener('error', () => img.remove());
    a.append(img);
  }
  return a;
}

function renderMe() {
  if (!S.me) return;
  $('me').replaceChildren(avatar(S.me), el('span', {}, S.me.name));
  $('profile-url').value = S.me.profile || '';
}

function badge(n) {
  return n > 0 ? el('span', { class: 'badge', 'aria-label': `${n} unread` }, n > 999 ? '999+' : String(n)) : null;
}

function dot(status) {
  const s = status === 'online' ? 'online' : 'offline';
  return el('span', { class: `dot ${s}`, role: 'img', 'aria-label': s, title: s });
}

function renderFriends() {
  if (!S.me) return;
  const byName = (m) => [...m.values()].sort((a, b) => a.name.localeCompare(b.name));
  $('incoming').replaceChildren(...byName(S.incoming).map((u) => el('li', { dataset: { name: u.name } },
    avatar(u), el('span', { class: 'name' }, u.name),
    el('button', { type: 'button', class: 'accept', onclick: () => friendAction('response', u.name) }, 'Accept'),
    el('button', { type: 'button', class: 'decline', onclick: () => friendAction('remove', u.name) }, 'Decline'))));
  $('outgoing').replaceChildren(...byName(S.outgoing).map((u) => el('li', { dataset: { name: u.name } },
    avatar(u), el('span', { class: 'name' }, u.name),
    el('button', { type: 'button', class: 'cancel', onclick: () => friendAction('remove', u.name) }, 'Cancel'))));
  for (const [id, list] of [['incoming', S.incoming], ['outgoing', S.outgoing]]) {
    $(id).hidden = list.size === 0;
    $(`${id}-title`).hidden = list.size === 0;
  }
  $('friends').replaceChildren(...byName(S.friends).map((u) => {
    const id = dmId(S.me.id, u.id);
    const active = S.view && S.view.chatId === id;
    return el('li', { dataset: { name: u.name } },
      el('button', { type: 'button', class: `chat-link${active ? ' active' : ''}`, 'aria-current': active ? 'true' : undefined, onclick: () => openDM(u.id) },
        avatar(u), dot(u.status), el('span', { class: 'name' }, u.name), badge(chat(id).unread)));
  }));
  if (S.friends.size === 0) $('friends').append(el('li', { class: 'hint' }, 'No friends yet: add one by name above.'));
}

function renderGuilds() {
  $('guilds').replaceChildren(...[...S.guilds.values()].map((g) => {
    const unread = g.channels.reduce((n, c) => n + (S.chats.has(c.id) ? S.chats.get(c.id).unread : 0), 0);
    const active = S.guildId === g.id;
    return el('li', { dataset: { guild: g.id } },
      el('button', { type: 'button', class: `chat-link${active ? ' active' : ''}`, 'aria-current': active ? 'true' : undefined, onclick: () => openGuild(g.id) },
        el('span', { class: 'avatar', 'aria-hidden': 'true' }, g.name[0].toUpperCase()), el('span', { class: 'name' }, g.name), badge(unread)));
  }));
}

function renderBadges() {
  renderFriends();
  renderGuilds();
  renderChannels();
}

function owns(g) {
  return S.me !== null && g.owner_id === S.me.id;
}

function renderGuildPane() {
  const g = S.guildId && S.guilds.get(S.guildId);
  if (!g) { $('guild-pane').hidden = true; return; }
  $('guild-pane').hidden = false;
  $('guild-title').textContent = g.name;
  $('create-channel').hidden = !owns(g);
  $('rename-button').hidden = !owns(g);
  $('leave-button').hidden = owns(g); // the owner cannot leave
  if (!owns(g)) $('rename-guild').hidden = true;
  renderChannels();
  const members = S.members.get(g.id);
  $('members-title').textContent = `Members (${g.member_count})`;
  $('members').replaceChildren(...(members ? [...members.values()] : []).map((u) => el('li', { dataset: { name: u.name } },
    avatar(u),
    S.friends.has(u.id) ? dot(S.friends.get(u.id).status) : null,
    el('span', { class: 'name' }, u.name),
    u.id === g.owner_id ? el('span', { class: 'tag' }, 'owner') : null,
    owns(g) && u.id !== g.owner_id ? el('button', { type: 'button', class: 'kick link', 'aria-label': `Kick ${u.name}`, onclick: () => kickMember(g.id, u.id) }, 'Kick') : null)));
}

function renderChannels() {
  const g = S.guildId && S.guilds.get(S.guildId);
  if (!g) return;
  $('channels').replaceChildren(...g.channels.map((c) => {
    const active = S.view && S.view.chatId === c.id;
    return el('li', { dataset: { channel: c.name } },
      el('button', { type: 'button', class: `chat-link${active ? ' active' : ''}`, 'aria-current': active ? 'true' : undefined, onclick: () => openChannel(g.id, c.id) },
        el('span', { class: 'hash', 'aria-hidden': 'true' }, '#'), el('span', { class: 'name' }, c.name), badge(chat(c.id).unread)),
      owns(g) ? el('button', { type: 'button', class: 'delete-channel link', title: `Delete #${c.name}`, 'aria-label': `Delete channel ${c.name}`, onclick: () => deleteChannel(g.id, c.id) }, '×') : null);
  }));
}

function renderChatHeader() {
  const v = S.view;
  $('unfriend-button').hidden = true;
  $('chat-presence').replaceChildren();
  if (!v) return;
  if (v.kind === 'dm') {
    const u = S.friends.get(v.peerId) || S.users.get(v.peerId);
    $('chat-title').textContent = u ? u.name : 'Direct message';
    $('composer').hidden = !S.friends.has(v.peerId); // a DM stays readable after unfriending
    if (S.friends.has(v.peerId)) {
      const s = S.friends.get(v.peerId).status === 'online' ? 'online' : 'offline';
      $('chat-presence').append(dot(s), el('span', { class: 'sr-only' }, s));
      $('unfriend-button').hidden = false;
    } else {
      $('chat-presence').append(el('span', { class: 'hint' }, 'not friends: read only'));
    }
  } else {
    const g = S.guilds.get(v.guildId);
    const c = g && g.channels.find((x) => x.id === v.chatId);
    $('chat-title').textContent = c ? `# ${c.name}` : '#';
  }
}

function renderTyping() {
  const t = $('typing');
  const ch = S.view && S.chats.get(S.view.chatId);
  const who = ch ? [...ch.typing.keys()].map(nameOf) : [];
  t.textContent = who.length === 0 ? '' : `${who.join(', ')} ${who.length === 1 ? 'is' : 'are'} typing…`;
}

// ---- rendering: messages ----

const msgElement = (id) => $('messages').querySelector(`li[data-id="${CSS.escape(id)}"]`);

function msgNode(m) {
  const mine = S.me && m.user_id === S.me.id;
  const content = el('p', { class: 'content' }, m.content); // text, never HTML
  const meta = el('div', { class: 'meta' },
    el('span', { class: 'author', dataset: { author: m.user_id } }, nameOf(m.user_id)),
    el('time', { dateTime: m.created_at }, m.created_at.slice(11, 16)),
    m.edited_at ? el('span', { class: 'edited' }, '(edited)') : null);
  if (mine) {
    meta.append(el('span', { class: 'receipt' }, ''),
      el('span', { class: 'actions' },
        el('button', { type: 'button', class: 'edit link', onclick: () => startEdit(m) }, 'Edit'),
        el('button', { type: 'button', class: 'delete link', onclick: () => deleteMsg(m) }, 'Delete')));
  }
  return el('li', { class: `msg${mine ? ' mine' : ''}`, dataset: { id: m.id, seq: String(m.seq) } }, meta, content);
}

function renderReceipts(ch) {
  if (!S.view || S.view.kind !== 'dm') return;
  for (const e of $('messages').querySelectorAll('li.mine .receipt')) {
    e.textContent = Number(e.closest('li').dataset.seq) <= ch.otherRead ? 'Seen' : 'Sent';
  }
}

function nearBottom() {
  const s = $('messages-scroll');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  const s = $('messages-scroll');
  s.scrollTop = s.scrollHeight;
}

function insertMsg(m, live) {
  const list = $('messages');
  const stick = nearBottom() || (S.me && m.user_id === S.me.id);
  const node = msgNode(m);
  let before = null;
  for (let e = list.lastElementChild; e; e = e.previousElementSibling) {
    if (Number(e.dataset.seq) > m.seq) before = e;
    else break;
  }
  list.insertBefore(node, before);
  renderReceipts(chat(S.view.chatId));
  if (live && stick) scrollToBottom();
}

function replaceMsg(m) {
  const old = msgElement(m.id);
  if (old) { old.replaceWith(msgNode(m)); renderReceipts(chat(S.view.chatId)); }
}

function renderMessages(ch) {
  const sorted = [...ch.msgs.values()].sort((a, b) => a.seq - b.seq);
  $('messages').replaceChildren(...sorted.map(msgNode));
  $('older-button').hidden = ch.exhausted;
  renderReceipts(ch);
  renderTyping();
}

// ---- opening chats, history ----

function openDM(peerId) {
  openChat({ kind: 'dm', chatId: dmId(S.me.id, peerId), peerId });
}

function openChannel(guildId, channelId) {
  openChat({ kind: 'channel', chatId: channelId, guildId });
}

async function openChat(view) {
  S.view = view;
  if (view.kind === 'dm') { S.guildId = null; $('guild-pane').hidden = true; }
  document.body.classList.add('in-chat');
  $('composer').hidden = view.kind === 'dm' && !S.friends.has(view.peerId);
  $('message-input').value = '';
  renderAll();
  const ch = chat(view.chatId);
  renderMessages(ch);
  if (ch.pos === null) await loadHistory(ch, true);
  else { scrollToBottom(); markRead(ch); }
  if (S.view === view && !$('composer').hidden) $('message-input').focus();
}

function closeChat() {
  S.view = null;
  document.body.classList.remove('in-chat');
  $('messages').replaceChildren();
  $('composer').hidden = true;
  $('chat-title').textContent = 'Pick a friend or a channel';
  renderAll();
}

$('back-button').addEventListener('click', () => {
  if (S.view && S.view.kind === 'channel') {
    S.view = null;
    document.body.classList.remove('in-chat');
    renderAll();
    return;
  }
  closeChat();
});

async function loadHistory(ch, first) {
  if (ch.loading || (ch.exhausted && !first)) return;
  ch.loading = true;
  const payload = { type: 'chat', load_id: ch.id, count: PAGE };
  const oldest = [...ch.msgs.values()].reduce((a, m) => (a === null || m.seq < a.seq ? m : a), null);
  if (!first && oldest) payload.before = oldest.id;
  const s = $('messages-scroll');
  try {
    const res = await conn.request('load', payload, { multi: true });
    const wasPos = ch.pos;
    if (ch.pos === null) ch.pos = ch.latest;
    for (const f of res.items) {
      const m = f.payload;
      ch.pos = Math.max(ch.pos, m.seq || 0, m.edit_seq || 0);
      if (!ch.msgs.has(m.id)) ch.msgs.set(m.id, { ...m });
    }
    if (res.items.length < PAGE) ch.exhausted = true;
    if (S.view && S.view.chatId === ch.id) {
      const fromBottom = s.scrollHeight - s.scrollTop;
      renderMessages(ch);
      if (first || wasPos === null) scrollToBottom();
      else s.scrollTop = s.scrollHeight - fromBottom; // keep the place
      markRead(ch);
    }
  } catch (err) {
    report(err);
  } finally {
    ch.loading = false;
  }
}

$('messages-scroll').addEventListener('scroll', () => {
  const ch = S.view && S.chats.get(S.view.chatId);
  if (ch && ch.pos !== null && $('messages-scroll').scrollTop < 60) loadHistory(ch, false);
});
$('older-button').addEventListener('click', () => {
  const ch = S.view && S.chats.get(S.view.chatId);
  if (ch) loadHistory(ch, false);
});

function markRead(ch) {
  if (!conn.ready || ch.pos === null || document.visibilityState === 'hidden') return;
  const seq = ch.pos;
  ch.unread = 0;
  renderBadges();
  if (seq <= ch.readSeq || seq === 0) return;
  ch.readSeq = seq;
  conn.request('read', { chat_id: ch.id, seq }).catch(report);
}

document.addEventListener('visibilitychange', () => {
  if (S.view && document.visibilityState === 'visible') markRead(chat(S.view.chatId));
});

// ---- sending, editing, typing ----

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('message-input');
  const content = input.value;
  if (!S.view || content.trim() === '') return;
  const ch = chat(S.view.chatId);
  input.value = '';
  try {
    const f = await conn.request('chat', { type: 'send', chat_id: ch.id, content });
    applyMessage(ch, f.payload, true);
  } catch (err) {
    report(err);
    if (input.value === '') input.value = content; // not lost
  }
});

$('message-input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
});

let lastTyping = 0;
$('message-input').addEventListener('input', () => {
  const now = Date.now();
  if (!S.view || !conn.ready || now - lastTyping < TYPING_SEND_MS || $('message-input').value === '') return;
  lastTyping = now;
  conn.send({ type: 'typing', payload: { chat_id: S.view.chatId } });
});

function startEdit(m) {
  const li = msgElement(m.id);
  if (!li) return;
  const input = el('input', { class: 'edit-input', value: m.content, maxLength: 4000, 'aria-label': 'Edit message' });
  const form = el('form', { class: 'edit-form row' }, input,
    el('button', { type: 'submit' }, 'Save'),
    el('button', { type: 'button', onclick: () => replaceMsg(m) }, 'Cancel'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (input.value.trim() === '') return;
    try {
      const f = await conn.request('chat', { type: 'edit', chat_id: S.view.chatId, id: m.id, content: input.value });
      applyMessage(chat(S.view.chatId), f.payload, true);
    } catch (err) {
      report(err);
    }
  });
  input.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') replaceMsg(m); });
  li.querySelector('.content').replaceWith(form);
  input.focus();
}

async function deleteMsg(m) {
  try {
    const f = await conn.request('chat', { type: 'edit', chat_id: S.view.chatId, id: m.id, content: '' });
    applyMessage(chat(S.view.chatId), f.payload, true);
  } catch (err) {
    report(err);
  }
}

// ---- friends ----

async function friendAction(type, name) {
  try {
    await conn.request('mutual_users', { type, name });
  } catch (err) {
    report(err);
  }
  await refreshLists();
}

$('add-friend').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('friend-name').value.trim();
  if (!name) return;
  try {
    await conn.request('mutual_users', { type: 'request', name });
    $('friend-name').value = '';
  } catch (err) {
    report(err);
  }
  await refreshLists();
});

$('unfriend-button').addEventListener('click', () => {
  const u = S.view && S.friends.get(S.view.peerId);
  if (u) friendAction('delete', u.name).then(() => openDM(u.id));
});

// ---- profile ----

$('profile-button').addEventListener('click', () => {
  const p = $('profile-panel');
  p.hidden = !p.hidden;
  $('profile-button').setAttribute('aria-expanded', String(!p.hidden));
  if (!p.hidden) $('profile-url').focus();
});

async function setProfile(profile) {
  try {
    const f = await conn.request('user', { profile });
    S.me = f.payload;
    remember(S.me);
    renderMe();
    $('profile-panel').hidden = true;
    $('profile-button').setAttribute('aria-expanded', 'false');
  } catch (err) {
    report(err);
  }
}

$('profile-panel').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const url = $('profile-url').value.trim();
  setProfile(url === '' ? null : url);
});
$('profile-clear').addEventListener('click', () => setProfile(null));

// ---- guilds ----

async function openGuild(id) {
  S.guildId = id;
  const g = S.guilds.get(id);
  $('invite-box').hidden = true;
  showRename(false);
  showGuildMore(false);
  renderAll();
  loadMembers(id);
  if (g && g.channels.length > 0 && !(S.view && S.view.guildId === id)) await openChannel(id, g.channels[0].id);
}

async function loadMembers(id) {
  const all = new Map();
  let after;
  try {
    for (;;) {
      const payload = { type: 'members', guild_id: id, count: 1000 };
      if (after) payload.after = after;
      const f = await conn.request('guild', payload);
      for (const u of f.payload.users) { all.set(u.id, u); remember(u); }
      if (f.payload.users.length < 1000) break;
      after = f.payload.users[f.payload.users.length - 1].id;
    }
  } catch (err) {
    report(err);
    return;
  }
  S.members.set(id, all);
  // The whole list is the count: a join event that raced the guild object
  // (or this list) may have been counted twice.
  const g = S.guilds.get(id);
  if (g) g.member_count = all.size;
  renderGuildPane();
}

$('create-guild').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const f = await conn.request('guild', { type: 'create', name: $('guild-name').value });
    S.guilds.set(f.payload.id, f.payload);
    $('guild-name').value = '';
    await openGuild(f.payload.id);
  } catch (err) {
    report(err);
  }
});

function inviteCode(text) {
  const t = text.trim();
  const m = t.match(/#join=([A-Za-z0-9_-]+)/);
  return m ? m[1] : t;
}

async function joinGuild(code) {
  try {
    const f = await conn.request('guild', { type: 'join', code });
    S.guilds.set(f.payload.id, f.payload);
    for (const c of f.payload.channels) chat(c.id).latest = Math.max(chat(c.id).latest, c.seq);
    await openGuild(f.payload.id);
  } catch (err) {
    report(new Error(`Could not join the guild: ${err.message}`));
  }
}

$('join-guild').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const code = inviteCode($('join-code').value);
  if (!code) return;
  $('join-code').value = '';
  await joinGuild(code);
});

$('invite-button').addEventListener('click', async () => {
  if (!S.guildId) return;
  try {
    const f = await conn.request('guild', { type: 'invite', guild_id: S.guildId });
    $('invite-link').value = `${location.origin}/#join=${f.payload.code}`;
    $('invite-box').hidden = false;
    $('invite-link').select();
  } catch (err) {
    report(err);
  }
});

$('invite-copy').addEventListener('click', async () => {
  const link = $('invite-link');
  try {
    await navigator.clipboard.writeText(link.value);
    $('invite-copy').textContent = 'Copied';
  } catch {
    link.select(); // the person copies it
    showError('Copying was not allowed here: the link is selected, copy it with Ctrl+C.');
  }
});

$('create-channel').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const g = S.guilds.get(S.guildId);
  if (!g) return;
  try {
    const f = await conn.request('guild', { type: 'channel_create', guild_id: g.id, name: $('channel-name').value });
    if (!g.channels.some((c) => c.id === f.payload.id)) g.channels.push(f.payload);
    $('channel-name').value = '';
    renderGuildPane();
    await openChannel(g.id, f.payload.id);
  } catch (err) {
    report(err);
  }
});

function showRename(on) {
  const g = S.guilds.get(S.guildId);
  $('rename-guild').hidden = !on;
  $('rename-button').setAttribute('aria-expanded', String(on));
  if (on && g) { $('rename-name').value = g.name; $('rename-name').focus(); }
}

$('rename-button').addEventListener('click', () => showRename($('rename-guild').hidden));

// On a phone the guild pane above a chat shows only its first controls
// and the channels; this opens the rest (new channel, members, kick).
// Wider screens show everything and never see the button.
function showGuildMore(on) {
  $('guild-pane').classList.toggle('expanded', on);
  $('guild-more').setAttribute('aria-expanded', String(on));
}

$('guild-more').addEventListener('click', () => showGuildMore(!$('guild-pane').classList.contains('expanded')));

$('rename-guild').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const g = S.guilds.get(S.guildId);
  if (!g) return;
  try {
    const f = await conn.request('guild', { type: 'rename', guild_id: g.id, name: $('rename-name').value });
    S.guilds.set(f.payload.id, f.payload);
    showRename(false);
    renderGuilds();
    renderGuildPane();
  } catch (err) {
    report(err);
  }
});

$('leave-button').addEventListener('click', async () => {
  const g = S.guilds.get(S.guildId);
  if (!g) return;
  try {
    await conn.request('guild', { type: 'leave', guild_id: g.id });
    dropGuild(g.id);
    renderGuilds();
  } catch (err) {
    report(err);
  }
});

// deleteChannel and kickMember look the guild up after the answer: an
// update event (a rename) may have replaced its object meanwhile.
async function deleteChannel(guildId, channelId) {
  try {
    await conn.request('guild', { type: 'channel_delete', channel_id: channelId });
    const g = S.guilds.get(guildId);
    if (g) channelGone(g, channelId);
    renderGuilds();
    renderGuildPane();
  } catch (err) {
    report(err);
  }
}

async function kickMember(guildId, userId) {
  try {
    await conn.request('guild', { type: 'kick', guild_id: guildId, user_id: userId });
    const g = S.guilds.get(guildId);
    if (g) memberGone(g, userId);
    renderGuildPane();
  } catch (err) {
    report(err);
  }
}

// ---- start ----

function takeJoinLink() {
  const m = location.hash.match(/^#join=([A-Za-z0-9_-]+)$/);
  if (!m) return;
  sessionStorage.setItem(JOIN_KEY, m[1]);
  history.replaceState(null, '', location.pathname);
  if (conn.ready) {
    sessionStorage.removeItem(JOIN_KEY);
    joinGuild(m[1]);
  }
}
window.addEventListener('hashchange', takeJoinLink);
takeJoinLink();

// A hook for the end-to-end tests (and for trying reconnects by hand):
// offline(true) closes the WebSocket and keeps it closed, offline(false)
// lets it reconnect.
window.__rewindTest = {
  offline(on) {
    conn.offline = on;
    if (on && conn.ws) conn.ws.close(1000);
    if (!on) { conn.attempt = 0; conn.connect(); }
  },
  state: () => ({ ready: conn.ready, pending: conn.pending.size }),
};

if (sessionStorage.getItem(TOKEN_KEY)) startSession();
else showAuth();
