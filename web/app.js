/* app.js - the browser client of sockit's chat (docs/chat.md, protocol 1).
 *
 * One WebSocket to /ws on the page's own host. Each text message from the
 * server is one event line, `TYPE TARGET SENDER [TEXT]`; each line the user
 * types is sent as one text message, exactly as a terminal user would type
 * it (plain text or a /command). On top of that the page keeps:
 *   - a log per room (messages, joins and parts), the room list (/rooms)
 *     and the member list of each joined room (/who, then JOIN, PART, QUIT
 *     and NICK lines);
 *   - the nick and rooms the user had, sent again after a reconnect, which
 *     happens with exponential backoff and jitter (0.5 s doubling to 8 s).
 *
 * Safety: everything that comes from the server or a peer reaches the page
 * through textContent or createTextNode, never as markup. The page runs
 * under a Content-Security-Policy without inline script or style. */
'use strict';

(() => {
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 8000;
  const CONNECT_TIMEOUT_MS = 5000;  /* a socket not open (or not greeted) by then is retried */
  const LOG_MAX = 1000;             /* entries kept per room */
  const SEEN_MAX = 200;             /* message keys kept per room to drop repeated history */
  const HISTORY_MAX = 100;          /* typed lines kept for Up and Down */
  const LINE_MAX = 1022;            /* bytes of a line, as the terminal client */
  const ROOMS_REFRESH_MS = 30000;   /* /rooms while connected and visible */
  const EXPECT_TTL_MS = 5000;       /* how long an automatic command's reply is awaited */
  const HIST_SETTLE_MS = 250;       /* a history batch ends with the next line or this */
  const NICK_COLOURS = 12;
  const STORE_NICK = 'sockit-chat-nick';

  /* ---- small helpers ------------------------------------------------------------------- */

  const $ = (id) => document.getElementById(id);

  /* An element with a class and a text (always as text, never as markup). */
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /* Nicks and rooms compare without regard to ASCII case, as on the server. */
  const fold = (s) => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));

  /* The colour class of a nick: FNV-1a of its folded form, as the terminal
   * client does, so a person keeps the same colour everywhere. */
  function nickClass(nick) {
    if (nick.startsWith('@')) return 'nick n-server';
    let h = 2166136261;
    const f = fold(nick);
    for (let i = 0; i < f.length; i++) {
      h ^= f.charCodeAt(i) & 0xff;
      h = Math.imul(h, 16777619) >>> 0;
    }
    return 'nick n' + (h % NICK_COLOURS);
  }

  const utf8Len = (s) => new TextEncoder().encode(s).length;

  function store(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* storage off: fine */ }
  }
  function load(key) {
    try { return localStorage.getItem(key) || ''; } catch (e) { return ''; }
  }

  const pad2 = (n) => (n < 10 ? '0' : '') + n;
  const hhmm = (d) => pad2(d.getHours()) + ':' + pad2(d.getMinutes());

  /* Splits an event line into TYPE, TARGET, SENDER and TEXT (each field but
   * the last one word, one space between), and keeps what follows TYPE. */
  function parseLine(line) {
    const f = [];
    let rest = line;
    for (let i = 0; i < 3; i++) {
      const sp = rest.indexOf(' ');
      if (sp < 0) { f.push(rest); rest = null; break; }
      f.push(rest.slice(0, sp));
      rest = rest.slice(sp + 1);
    }
    const sp0 = line.indexOf(' ');
    return {
      type: f[0] || '', target: f[1] || '', sender: f[2] || '', text: rest || '',
      after: sp0 < 0 ? '' : line.slice(sp0 + 1),
    };
  }

  /* ---- state ---------------------------------------------------------------------------- */

  const S = {
    ws: null,
    state: 'connecting',  /* connecting | connected | reconnecting | offline */
    greeted: false,
    everConnected: false,
    nick: '',              /* as the server last said */
    wantNick: '',          /* the nick chosen: asked for again after a reconnect */
    home: '',              /* the room HELLO put us in */
    joined: [],            /* names of our rooms in join order; the last is current */
    leftHome: false,
    restoring: null,       /* after a reconnect: {rooms: Set of keys, nick} */
    viewKey: '*',
    logs: new Map(),       /* key -> room log ('*': lines outside any room) */
    allRooms: new Map(),   /* key -> {name, count}, from /rooms */
    roomBatch: null,       /* ROOM lines of a /rooms reply being read */
    expect: [],            /* replies of our own commands, to be kept out of sight */
    localEcho: false,      /* the user said /echo off: show own lines here */
    backoff: BACKOFF_MIN_MS,
    retryAt: 0,
    retryTimer: 0,
    tickTimer: 0,
    openTimer: 0,
    roomsTimer: 0,
    roomsSoon: 0,
    quitting: false,
    kicked: false,
    offlineWhy: '',
    lostNoted: false,
    history: [],
    histPos: 0,
    draft: '',
    nickAsked: '',         /* the nick the dialog sent, while waiting for the answer */
  };

  /* ---- the DOM -------------------------------------------------------------------------- */

  const ui = {
    conn: $('conn'), connText: $('conn-text'), reconnectNow: $('reconnect-now'),
    me: $('me'), myNick: $('my-nick'),
    viewName: $('view-name'), viewCount: $('view-count'), viewTopic: $('view-topic'),
    leave: $('leave-room'), logs: $('logs'),
    form: $('send-form'), input: $('input'), inputLabel: $('input-label'),
    roomList: $('room-list'), otherRooms: $('other-room-list'), otherHead: $('other-rooms-heading'),
    joinForm: $('join-room-form'), joinInput: $('join-room-input'),
    memberList: $('member-list'), memberCount: $('member-count'),
    roomsPanel: $('rooms-panel'), membersPanel: $('members-panel'),
    toggleRooms: $('toggle-rooms'), toggleMembers: $('toggle-members'), scrim: $('scrim'),
    dialog: $('nick-dialog'), nickForm: $('nick-form'), nickInput: $('nick-input'),
    nickError: $('nick-error'), nickGuest: $('nick-guest'),
  };
  const connWait = $('conn-wait'); /* "in 3s": seen, not read out every second */

  /* ---- room logs ------------------------------------------------------------------------ */

  /* One room's log: its entries, members (null until /who answers) and the
   * keys of the messages shown, to tell new history from history seen. */
  class RoomLog {
    constructor(key, name) {
      this.key = key;
      this.name = name;
      this.list = el('ol', 'log');
      this.list.setAttribute('role', 'log');
      this.list.setAttribute('aria-live', 'polite');
      this.list.setAttribute('aria-relevant', 'additions');
      this.list.setAttribute('aria-label', key === '*' ? 'Messages' : 'Messages in ' + name);
      this.list.tabIndex = 0;
      this.list.hidden = true;
      this.members = null;   /* Map fold(nick) -> nick */
      this.total = 0;        /* members as WHO counted them (the bot included) */
      this.unread = 0;
      this.mentioned = false;
      this.seen = [];
      this.histBatch = null;
      this.histTimer = 0;
      this.lastSender = '';
      this.lastTime = 0;
      this.joinLine = null;  /* our last "You joined": history goes above it */
      this.insertAt = null;
      ui.logs.appendChild(this.list);
    }

    /* Appends li (before insertAt while history goes in above our own join
     * line); keeps the view at the bottom if it was there. */
    append(li) {
      const l = this.list;
      const atBottom = l.hidden || l.scrollHeight - l.scrollTop - l.clientHeight < 48;
      if (this.insertAt && this.insertAt.parentNode === l) l.insertBefore(li, this.insertAt);
      else l.appendChild(li);
      while (l.childElementCount > LOG_MAX) l.removeChild(l.firstElementChild);
      if (atBottom) l.scrollTop = l.scrollHeight;
    }

    remember(key) {
      this.seen.push(key);
      if (this.seen.length > SEEN_MAX) this.seen.splice(0, this.seen.length - SEEN_MAX);
    }
  }

  function getLog(name) {
    const key = name === '*' ? '*' : fold(name);
    let log = S.logs.get(key);
    if (!log) {
      log = new RoomLog(key, name === '*' ? 'no room' : name);
      S.logs.set(key, log);
    }
    return log;
  }

  const viewLog = () => S.logs.get(S.viewKey) || getLog('*');
  const isJoined = (name) => S.joined.some((r) => fold(r) === fold(name));

  /* A <time> for d. */
  function timeEl(d) {
    const t = el('time', 'when', hhmm(d));
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    return t;
  }

  /* A log entry: time, then parts, each a string (text) or [class, text]. */
  function entry(cls, when, parts) {
    const li = el('li', 'ev ' + cls);
    li.appendChild(timeEl(when));
    const body = el('span', 'body');
    for (const p of parts) {
      if (typeof p === 'string') body.appendChild(document.createTextNode(p));
      else body.appendChild(el('span', p[0], p[1]));
    }
    li.appendChild(body);
    return li;
  }

  /* A line of the page's own or the server's (dimmed). */
  function sysLine(log, parts, cls) {
    log.lastSender = '';
    log.append(entry(cls || 'sys', new Date(), typeof parts === 'string' ? [parts] : parts));
  }
  const note = (parts, cls) => sysLine(viewLog(), parts, cls || 'note');

  function mentions(text) {
    if (!S.nick) return false;
    const n = S.nick.replace(/[\\^$.*+?()[\]{}|-]/g, '\\$&');
    return new RegExp('(^|[^A-Za-z0-9_\\-\\[\\]{}^`|])' + n + '($|[^A-Za-z0-9_\\-\\[\\]{}^`|])', 'i')
      .test(text);
  }
  const isMe = (nick) => S.nick !== '' && fold(nick) === fold(S.nick);

  /* A room message or action (live, or from history with its time). */
  function roomMessage(log, type, sender, text, when, hist) {
    const me = isMe(sender);
    const cls = ['msg'];
    if (type === 'ACT') cls.push('act');
    if (me) cls.push('own');
    const mention = !me && mentions(text);
    if (mention) cls.push('mention');
    if (hist) cls.push('hist');
    /* Lines in a row from one sender within 5 minutes: the nick is shown once
     * (screen readers still read it). */
    const t = when.getTime();
    if (type === 'MSG' && log.lastSender === fold(sender) && t - log.lastTime < 300000) cls.push('cont');
    log.lastSender = type === 'MSG' ? fold(sender) : '';
    log.lastTime = t;
    const parts = type === 'ACT'
      ? [['act-mark', '* '], [nickClass(sender), sender], ' ', ['text', text]]
      : [[nickClass(sender), sender], ['sep', ': '], ['text', text]];
    log.append(entry(cls.join(' '), when, parts));
    log.remember(type + ' ' + sender + ' ' + text);
    if (!hist && !me && (log.key !== S.viewKey || document.hidden)) {
      log.unread++;
      log.mentioned = log.mentioned || mention;
      renderRooms();
      renderTitle();
    }
  }

  /* ---- history on join ------------------------------------------------------------------ */

  /* HIST lines come right after our JOIN. They are gathered and shown as a
   * batch, without the part already on screen (after a reconnect the server
   * replays the same last messages): the batch is matched against the keys
   * of the messages shown, at its last common message. */
  function histAdd(log, item) {
    if (!log.histBatch) log.histBatch = [];
    log.histBatch.push(item);
    clearTimeout(log.histTimer);
    log.histTimer = setTimeout(() => histFlush(log), HIST_SETTLE_MS);
  }

  function histFlush(log) {
    clearTimeout(log.histTimer);
    const batch = log.histBatch;
    log.histBatch = null;
    if (!batch || !batch.length) return;
    let start = 0;
    const seen = log.seen;
    if (seen.length) {
      for (let i = batch.length - 1; i >= 0 && start === 0; i--) {
        if (batch[i].key !== seen[seen.length - 1]) continue;
        let same = true;
        for (let k = 1; k <= Math.min(i, seen.length - 1, 3); k++)
          if (batch[i - k].key !== seen[seen.length - 1 - k]) { same = false; break; }
        if (same) start = i + 1;
      }
    }
    const fresh = batch.slice(start);
    if (!fresh.length) return;
    const label = start > 0 ? 'while you were away' : seen.length ? 'recent messages' : 'earlier messages';
    const div = el('li', 'divider');
    div.appendChild(el('span', '', label));
    log.lastSender = '';
    log.insertAt = start === 0 ? log.joinLine : null;
    log.append(div);
    for (const h of fresh) roomMessage(log, h.type, h.sender, h.text, h.when, true);
    log.insertAt = null;
    log.joinLine = null;
    log.lastSender = '';
  }

  function flushAllHist() {
    for (const log of S.logs.values()) if (log.histBatch) histFlush(log);
  }

  /* ---- the view ------------------------------------------------------------------------- */

  function setView(name) {
    const log = getLog(name);
    if (S.viewKey !== log.key) {
      const old = S.logs.get(S.viewKey);
      if (old) old.list.hidden = true;
      S.viewKey = log.key;
    }
    log.list.hidden = false;
    log.unread = 0;
    log.mentioned = false;
    log.list.scrollTop = log.list.scrollHeight;
    renderView();
    renderRooms();
    renderMembers();
    renderTitle();
  }

  function renderView() {
    const log = viewLog();
    const inRoom = log.key !== '*';
    ui.viewName.textContent = inRoom ? log.name : 'no room';
    const n = inRoom && log.members ? Math.max(log.total, log.members.size) : 0;
    ui.viewCount.textContent = n ? n + (n === 1 ? ' person' : ' people') : '';
    ui.viewTopic.textContent = !inRoom ? 'You are in no room: join one to talk.'
      : isJoined(log.name) ? 'What you type goes to ' + log.name + '. /help lists the commands.'
      : 'You are not in ' + log.name + ' any more.';
    ui.leave.hidden = !(inRoom && isJoined(log.name));
    ui.leave.textContent = inRoom ? 'Leave ' + log.name : 'Leave room';
    ui.input.placeholder = inRoom && isJoined(log.name) ? 'Message ' + log.name : 'Type /join #room';
    ui.inputLabel.textContent = inRoom && isJoined(log.name) ? 'Message to ' + log.name : 'Command';
  }

  function renderTitle() {
    let n = 0;
    for (const log of S.logs.values()) n += log.unread;
    document.title = (n ? '(' + n + ') ' : '') + 'sockit chat';
  }

  /* One room button of the side panel. */
  function roomItem(name, count, joined) {
    const key = fold(name);
    const log = S.logs.get(key);
    const li = el('li');
    const b = el('button', 'room' + (joined ? ' joined' : ''));
    b.type = 'button';
    b.dataset.room = name;
    b.appendChild(el('span', 'room-name', name));
    if (count) b.appendChild(el('span', 'room-count', count));
    if (log && log.unread) {
      const badge = el('span', 'badge' + (log.mentioned ? ' badge-mention' : ''), log.unread);
      badge.title = log.unread + ' new';
      b.appendChild(badge);
    }
    if (key === S.viewKey) b.setAttribute('aria-current', 'true');
    const label = name + (joined ? '' : ', not joined') + (count ? ', ' + count + ' in it' : '')
      + (log && log.unread ? ', ' + log.unread + ' new' : '');
    b.setAttribute('aria-label', label);
    li.appendChild(b);
    return li;
  }

  function renderRooms() {
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.room : undefined;
    const mine = S.joined.slice().sort((a, b) => (fold(a) < fold(b) ? -1 : fold(a) > fold(b) ? 1 : 0));
    ui.roomList.replaceChildren();
    for (const name of mine) {
      const log = S.logs.get(fold(name));
      const info = S.allRooms.get(fold(name));
      const count = log && log.members ? Math.max(log.total, log.members.size) : info ? info.count : 0;
      ui.roomList.appendChild(roomItem(name, count, true));
    }
    if (!mine.length) ui.roomList.appendChild(el('li', 'empty', S.greeted ? 'none yet' : '\u2026'));
    ui.otherRooms.replaceChildren();
    const others = [...S.allRooms.values()].filter((r) => !isJoined(r.name))
      .sort((a, b) => (fold(a.name) < fold(b.name) ? -1 : 1));
    for (const r of others) ui.otherRooms.appendChild(roomItem(r.name, r.count, false));
    ui.otherRooms.hidden = ui.otherHead.hidden = others.length === 0;
    if (focused !== undefined) {
      for (const b of document.querySelectorAll('.rooms-panel button.room'))
        if (b.dataset.room === focused) { b.focus(); break; }
    }
  }

  function renderMembers() {
    const log = viewLog();
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.nick : undefined;
    ui.memberList.replaceChildren();
    if (log.key === '*' || !log.members) {
      ui.memberCount.textContent = '';
      ui.memberList.appendChild(el('li', 'empty', !S.greeted ? 'Not connected.'
        : log.key === '*' || !isJoined(log.name) ? 'Not in a room.' : '\u2026'));
      renderView();
      return;
    }
    const nicks = [...log.members.values()].sort((a, b) => (fold(a) < fold(b) ? -1 : 1));
    ui.memberCount.textContent = '(' + Math.max(log.total, nicks.length) + ')';
    for (const n of nicks) {
      const li = el('li');
      if (isMe(n)) {
        const s = el('span', 'member own');
        s.appendChild(el('span', nickClass(n), n));
        s.appendChild(el('span', 'you', ' (you)'));
        li.appendChild(s);
      } else {
        const b = el('button', 'member');
        b.type = 'button';
        b.dataset.nick = n;
        b.appendChild(el('span', nickClass(n), n));
        b.setAttribute('aria-label', 'Write to ' + n + ' privately');
        li.appendChild(b);
      }
      ui.memberList.appendChild(li);
    }
    if (focused !== undefined) {
      for (const b of ui.memberList.querySelectorAll('button'))
        if (b.dataset.nick === focused) { b.focus(); break; }
    }
    renderView();
  }

  function renderMe() {
    ui.myNick.textContent = S.nick;
    ui.me.hidden = !S.nick;
  }

  /* ---- connection state ----------------------------------------------------------------- */

  const STATE_TEXT = {
    connecting: 'connecting', connected: 'connected', reconnecting: 'reconnecting', offline: 'offline',
  };

  function setState(state, why) {
    S.state = state;
    ui.conn.dataset.state = state;
    ui.connText.textContent = STATE_TEXT[state] + (why ? ' \u2014 ' + why : '');
    ui.reconnectNow.hidden = !(state === 'reconnecting' || state === 'offline');
    ui.reconnectNow.textContent = state === 'offline' ? 'Connect' : 'Reconnect now';
    document.body.classList.toggle('is-offline', state !== 'connected');
    tick();
  }

  /* The countdown of "reconnecting in Ns". */
  function tick() {
    clearTimeout(S.tickTimer);
    if (S.state !== 'reconnecting') {
      connWait.textContent = '';
      return;
    }
    const left = Math.max(0, S.retryAt - Date.now());
    connWait.textContent = ' in ' + Math.ceil(left / 1000) + 's';
    S.tickTimer = setTimeout(tick, Math.min(250, left + 20));
  }

  function wsUrl() {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  }

  function connect() {
    clearTimeout(S.retryTimer);
    clearTimeout(S.openTimer);
    if (S.ws) {
      const old = S.ws;
      S.ws = null;
      try { old.close(); } catch (e) { /* already closed */ }
    }
    S.quitting = false;
    S.kicked = false;
    setState('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      lost();
      return;
    }
    S.ws = ws;
    /* No HELLO within the time: try again (a server that accepts and says
     * nothing should not keep the page waiting). */
    S.openTimer = setTimeout(() => {
      if (S.ws !== ws || S.greeted) return;
      ws.close();
      lost(ws);
    }, CONNECT_TIMEOUT_MS);
    ws.onmessage = (e) => {
      if (S.ws !== ws || typeof e.data !== 'string') return;
      for (const line of e.data.split('\n')) {
        const l = line.endsWith('\r') ? line.slice(0, -1) : line;
        if (l) onLine(l);
      }
    };
    ws.onclose = () => lost(ws);
    ws.onerror = () => { /* onclose follows */ };
  }

  /* The connection ended (or could not be made): offline after /quit or a
   * kick, otherwise the next try after the backoff, with jitter. */
  function lost(ws) {
    if (ws !== undefined && S.ws !== ws) return;
    clearTimeout(S.openTimer);
    flushAllHist();
    const was = S.greeted;
    S.ws = null;
    S.greeted = false;
    S.expect = [];
    S.roomBatch = null;
    for (const log of S.logs.values()) { log.members = null; log.total = 0; }
    renderMembers();
    if (was) {
      S.prevJoined = S.joined.slice();
      S.prevLeftHome = S.leftHome;
    }
    if (S.quitting || S.kicked) {
      S.offlineWhy = S.kicked ? 'kicked' : 'you left';
      setState('offline', S.offlineWhy);
      note('Disconnected. Choose \u201cConnect\u201d to come back.');
      return;
    }
    if (!navigator.onLine) {
      setState('offline', 'no network');
      if (!S.lostNoted) note('Disconnected: the browser is offline. Waiting for the network.');
      S.lostNoted = true;
      return;
    }
    const wait = S.backoff / 2 + Math.random() * (S.backoff / 2);
    S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
    S.retryAt = Date.now() + wait;
    if (!S.lostNoted && S.everConnected)
      note('Disconnected from the server: reconnecting.');
    S.lostNoted = true;
    setState('reconnecting');
    S.retryTimer = setTimeout(connect, wait);
  }

  function send(line) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN || !S.greeted) return false;
    S.ws.send(line);
    return true;
  }

  /* Sends one of our own commands whose reply should not show. */
  function sendQuiet(line, expect) {
    if (!send(line)) return false;
    if (expect) S.expect.push(Object.assign({ at: Date.now() }, expect));
    return true;
  }

  /* The first awaited reply that test(e) accepts, taken off the list. */
  function takeExpect(test) {
    const now = Date.now();
    S.expect = S.expect.filter((e) => now - e.at < EXPECT_TTL_MS);
    const i = S.expect.findIndex(test);
    if (i < 0) return null;
    return S.expect.splice(i, 1)[0];
  }

  function askRooms() {
    clearTimeout(S.roomsSoon);
    S.roomsSoon = 0;
    if (S.greeted && !S.expect.some((e) => e.kind === 'rooms')) sendQuiet('/rooms', { kind: 'rooms' });
  }
  function askRoomsSoon() {
    if (!S.roomsSoon) S.roomsSoon = setTimeout(askRooms, 600);
  }
  function askWho(name) {
    sendQuiet('/who ' + name, { kind: 'who', room: fold(name) });
  }

  /* ---- server lines --------------------------------------------------------------------- */

  function onLine(line) {
    const ev = parseLine(line);
    if (ev.type !== 'HIST') flushAllHist();
    switch (ev.type) {
      case 'HELLO': onHello(ev); break;
      case 'MSG': case 'ACT': onMessage(ev, new Date()); break;
      case 'HIST': onHist(ev); break;
      case 'JOIN': onJoin(ev); break;
      case 'PART': case 'QUIT': onLeave(ev); break;
      case 'NICK': onNick(ev); break;
      case 'WHO': onWho(ev); break;
      case 'ROOM': onRoom(ev); break;
      case 'NOTICE': onNotice(ev.after); break;
      case 'ERR': onErr(ev); break;
      case 'BYE': onBye(ev.after); break;
      default: break; /* types this page does not know are ignored (protocol rule) */
    }
  }

  /* HELLO 1 NICK #ROOM TEXT: a new connection. The nick and the rooms of
   * before are asked for again, the current room last. */
  function onHello(ev) {
    clearTimeout(S.openTimer);
    const sp = ev.text.indexOf(' ');
    S.nick = ev.sender;
    S.home = sp < 0 ? ev.text : ev.text.slice(0, sp);
    const greeting = sp < 0 ? '' : ev.text.slice(sp + 1);
    const reconnect = S.everConnected;
    const prev = reconnect ? (S.prevJoined || []) : [];
    const prevLeftHome = reconnect && S.prevLeftHome;
    S.joined = [];
    S.leftHome = false;
    S.greeted = true;
    S.expect = [];
    S.backoff = BACKOFF_MIN_MS;
    S.lostNoted = false;
    setState('connected');
    renderMe();
    if (ev.target !== '1')
      note('The server speaks protocol version ' + ev.target + '; this page knows version 1.', 'err');
    if (reconnect) note('Reconnected.');
    else if (greeting) sysLine(getLog(S.home), [['text', greeting]], 'notice');
    S.everConnected = true;
    sendQuiet('/echo on', { kind: 'notice', re: /^echo is on$/ });
    S.localEcho = false;
    /* After a reconnect the lines that bring the user back are not shown
     * again (the joins, the rename): the log already says it all. */
    S.restoring = reconnect ? { rooms: new Set([fold(S.home)]), nick: '' } : null;
    clearTimeout(S.restoreTimer);
    S.restoreTimer = setTimeout(() => { S.restoring = null; }, EXPECT_TTL_MS);
    if (S.wantNick && fold(S.wantNick) !== fold(S.nick)) {
      if (reconnect) S.restoring.nick = S.wantNick;
      send('/nick ' + S.wantNick);
    }
    prev.forEach((room, i) => {
      if (fold(room) !== fold(S.home)) {
        S.restoring.rooms.add(fold(room));
        send('/join ' + room);
      } else if (i === prev.length - 1) {
        /* back to the room we are in already, to make it current */
        sendQuiet('/join ' + room, { kind: 'notice', re: /^#\S+ is your current room now$/ });
      }
    });
    if (prevLeftHome) send('/part ' + S.home);
    askRooms();
    clearInterval(S.roomsTimer);
    S.roomsTimer = setInterval(() => { if (!document.hidden) askRooms(); }, ROOMS_REFRESH_MS);
    renderRooms();
    renderView();
  }

  function onMessage(ev, when) {
    const to = ev.target;
    if (to.startsWith('#')) {
      roomMessage(getLog(to), ev.type, ev.sender, ev.text, when, false);
      return;
    }
    const log = viewLog();
    log.lastSender = '';
    if (to === '*') {
      log.append(entry('msg all', when, [['tag', 'to everyone'], [nickClass(ev.sender), ev.sender],
        ['sep', ': '], ['text', ev.text]]));
    } else if (isMe(ev.sender) && !isMe(to)) {
      log.append(entry('msg private own', when, [['tag', 'private to ' + to],
        [nickClass(ev.sender), ev.sender], ['sep', ': '], ['text', ev.text]]));
    } else {
      log.append(entry('msg private', when, [['tag', 'private'], [nickClass(ev.sender), ev.sender],
        ['sep', ': '], ['text', ev.text]]));
      if (document.hidden) { log.unread++; log.mentioned = true; renderRooms(); renderTitle(); }
    }
  }

  /* HIST TIME LINE: LINE is the MSG or ACT line as it was sent. */
  function onHist(ev) {
    const inner = parseLine(ev.after.slice(ev.target.length + 1));
    if ((inner.type !== 'MSG' && inner.type !== 'ACT') || !inner.target.startsWith('#')) return;
    let when = new Date(ev.target);
    if (isNaN(when.getTime())) when = new Date();
    histAdd(getLog(inner.target), {
      type: inner.type, sender: inner.sender, text: inner.text, when,
      key: inner.type + ' ' + inner.sender + ' ' + inner.text,
    });
  }

  /* The look-alike marker among the marker words of a JOIN or NICK line
   * ("like:NICK": another member's nick looks like this one, docs/chat.md):
   * parts to add to the line, as text; none without one. Other words are
   * for later versions and are not shown. */
  const NICK_RE = /^[A-Za-z_\[\]{}^`|][A-Za-z0-9_\-\[\]{}^`|]{0,23}$/;
  function likeParts(words) {
    for (const w of words.split(' ')) {
      const like = w.startsWith('like:') ? w.slice(5) : '';
      if (NICK_RE.test(like)) return [' ', ['lookalike', '(looks like ' + like + ')']];
    }
    return [];
  }

  function onJoin(ev) {
    const room = ev.target;
    const log = getLog(room);
    log.name = room;
    if (isMe(ev.sender)) {
      S.joined = S.joined.filter((r) => fold(r) !== fold(room));
      S.joined.push(room);
      if (fold(room) === fold(S.home)) S.leftHome = false;
      log.members = new Map([[fold(S.nick), S.nick]]);
      log.total = 0;
      askWho(room);
      const quiet = S.restoring && S.restoring.rooms.delete(log.key);
      log.joinLine = null;
      if (!quiet) {
        sysLine(log, [['you', 'You'], ' joined ' + room], 'sys own');
        log.joinLine = log.list.lastElementChild;
      }
      setView(room);
      askRoomsSoon();
      return;
    }
    if (log.members) log.members.set(fold(ev.sender), ev.sender);
    sysLine(log, [[nickClass(ev.sender), ev.sender], ' joined ' + room, ...likeParts(ev.text)]);
    renderMembersIf(log);
  }

  function onLeave(ev) {
    const room = ev.target;
    const log = getLog(room);
    const reason = ev.text ? ' (' + ev.text + ')' : '';
    const verb = ev.type === 'PART' ? ' left ' : ' quit ';
    if (isMe(ev.sender)) {
      S.joined = S.joined.filter((r) => fold(r) !== fold(room));
      if (fold(room) === fold(S.home)) S.leftHome = true;
      log.members = null;
      sysLine(log, [['you', 'You'], verb + room + reason], 'sys own');
      const cur = S.joined[S.joined.length - 1];
      setView(cur || '*');
      askRoomsSoon();
      return;
    }
    if (log.members) log.members.delete(fold(ev.sender));
    sysLine(log, [[nickClass(ev.sender), ev.sender], verb + room + reason]);
    renderMembersIf(log);
  }

  /* NICK #room OLD NEW [MARKS] (once per shared room), NICK * OLD NEW (no
   * room): the new nick is the first word of the text. */
  function onNick(ev) {
    const oldNick = ev.sender;
    const sp = ev.text.indexOf(' ');
    const newNick = sp < 0 ? ev.text : ev.text.slice(0, sp);
    const marks = sp < 0 ? [] : likeParts(ev.text.slice(sp + 1));
    const mine = isMe(oldNick);
    let quiet = false;
    if (mine) {
      S.nick = newNick;
      S.wantNick = newNick;
      store(STORE_NICK, newNick);
      renderMe();
      if (S.restoring && S.restoring.nick && fold(S.restoring.nick) === fold(newNick)) {
        quiet = true;
      }
      nickAccepted();
    }
    const log = ev.target.startsWith('#') ? getLog(ev.target) : viewLog();
    if (log.members && log.members.delete(fold(oldNick))) log.members.set(fold(newNick), newNick);
    if (!quiet)
      sysLine(log, mine ? [['you', 'You'], ' are now ', [nickClass(newNick), newNick]]
        : [[nickClass(oldNick), oldNick], ' is now ', [nickClass(newNick), newNick], ...marks],
      mine ? 'sys own' : 'sys');
    renderMembersIf(log);
    if (mine) renderMembers();
  }

  function renderMembersIf(log) {
    if (log.key === S.viewKey) renderMembers();
    else renderRooms();
  }

  /* WHO #room COUNT NICK...: the members (ours, or the user asked). */
  function onWho(ev) {
    const log = getLog(ev.target);
    const nicks = ev.text ? ev.text.split(' ').filter(Boolean) : [];
    const count = parseInt(ev.sender, 10) || nicks.length;
    const mine = takeExpect((e) => e.kind === 'who' && e.room === log.key);
    if (isJoined(ev.target)) {
      log.members = new Map(nicks.map((n) => [fold(n), n]));
      log.total = count;
      renderMembersIf(log);
      renderRooms();
    }
    if (!mine) note('In ' + ev.target + ' (' + count + '): ' + nicks.join(', '), 'notice');
  }

  function onRoom(ev) {
    const count = parseInt(ev.sender, 10) || 0;
    if (!S.roomBatch) {
      const mine = S.expect.find((e) => e.kind === 'rooms');
      S.roomBatch = { rooms: new Map(), quiet: !!mine };
    }
    S.roomBatch.rooms.set(fold(ev.target), { name: ev.target, count });
    if (!S.roomBatch.quiet) note('Room ' + ev.target + ' (' + count + ')', 'notice');
  }

  function onNotice(text) {
    /* The end of a /rooms reply: "N rooms". */
    if (/^\d+ rooms?( |$)/.test(text)) {
      const mine = takeExpect((e) => e.kind === 'rooms');
      if (S.roomBatch) S.allRooms = S.roomBatch.rooms;
      else if (/^0 /.test(text)) S.allRooms = new Map();
      S.roomBatch = null;
      renderRooms();
      if (mine) return;
      note([['text', text]], 'notice');
      return;
    }
    const m = /^echo is (on|off)$/.exec(text);
    if (m) S.localEcho = m[1] === 'off';
    /* The server's word on the current room: the view follows it. */
    const cur = /^(?:you are talking in (#\S+) now|(#\S+) is your current room now)$/.exec(text);
    if (cur) {
      const room = cur[1] || cur[2];
      if (isJoined(room)) {
        S.joined = S.joined.filter((r) => fold(r) !== fold(room));
        S.joined.push(room);
        if (fold(room) !== S.viewKey) setView(room);
      }
    }
    if (takeExpect((e) => e.kind === 'notice' && e.re.test(text))) return;
    /* Columns made with spaces (/help) line up in a fixed-width font. */
    note([['text', text]], / {2}\S/.test(text) ? 'notice columns' : 'notice');
    if (/^you are \S+ already$/.test(text)) nickAccepted();
  }

  function onErr(ev) {
    const text = ev.text ? ev.sender + ' ' + ev.text : ev.sender;
    const code = ev.target;
    if (S.nickAsked && (code === 'bad-nick' || code === 'nick-taken' || code === 'bad-args')) {
      S.nickAsked = '';
      S.wantNick = S.nick;
      if (ui.dialog.open) {
        ui.nickError.textContent = text;
        ui.nickInput.setAttribute('aria-invalid', 'true');
        ui.nickInput.focus();
        ui.nickInput.select();
        return;
      }
    }
    if (S.restoring && S.restoring.nick && code === 'nick-taken') {
      S.restoring.nick = '';
      S.wantNick = S.nick;
    }
    note([['text', text], ['code', ' (' + code + ')']], 'err');
  }

  function onBye(text) {
    if (text.startsWith('kicked')) S.kicked = true;
    note([['', 'The server says goodbye: '], ['text', text]], 'notice');
  }

  /* ---- the nick dialog ------------------------------------------------------------------ */

  function openNickDialog() {
    ui.nickInput.value = S.wantNick || load(STORE_NICK);
    ui.nickError.textContent = '';
    ui.nickInput.removeAttribute('aria-invalid');
    if (typeof ui.dialog.showModal === 'function') ui.dialog.showModal();
    else ui.dialog.setAttribute('open', '');
    ui.nickInput.focus();
    ui.nickInput.select();
  }

  function closeNickDialog() {
    if (ui.dialog.open) ui.dialog.close();
    S.nickAsked = '';
    ui.input.focus();
  }

  function nickAccepted() {
    if (S.nickAsked) closeNickDialog();
  }

  ui.nickForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = ui.nickInput.value.trim();
    ui.nickError.textContent = '';
    ui.nickInput.removeAttribute('aria-invalid');
    if (!nick) {
      ui.nickError.textContent = 'Type a nickname, or stay a guest.';
      return;
    }
    if (S.nick && nick === S.nick) {
      closeNickDialog();
      return;
    }
    S.nickAsked = nick;
    S.wantNick = nick;
    if (S.greeted) send('/nick ' + nick);
    /* else: sent once HELLO comes */
  });
  ui.nickGuest.addEventListener('click', () => {
    if (!S.greeted) S.wantNick = '';
    closeNickDialog();
  });
  ui.dialog.addEventListener('cancel', () => {
    S.nickAsked = '';
    setTimeout(() => ui.input.focus(), 0);
  });

  /* ---- what the user types -------------------------------------------------------------- */

  const PAGE_HELP = [
    'This page also knows: /clear (empties this view), /nick with no name (the nickname dialog).',
    'Keys: Enter sends, Up and Down recall sent lines, Escape clears the line or closes a panel.',
    'Choose a room to switch to it, a person to write to them privately.',
  ];

  /* A typed line: page commands here, everything else to the server as it
   * is. Returns true when the line is done with (the box may be cleared). */
  function userLine(line) {
    if (!line.trim()) return true;
    const m = /^\/(\S+)\s*(.*)$/.exec(line);
    const cmd = m && !line.startsWith('//') ? m[1].toLowerCase() : '';
    const arg = m ? m[2] : '';
    if (cmd === 'clear') {
      const log = viewLog();
      log.list.replaceChildren();
      log.lastSender = '';
      return true;
    }
    if (cmd === 'nick' && !arg.trim()) {
      openNickDialog();
      return true;
    }
    if (utf8Len(line) > LINE_MAX) {
      note('The line is ' + utf8Len(line) + ' bytes long; at most ' + LINE_MAX + ' go in one line. Nothing was sent.', 'err');
      return false;
    }
    if (!send(line)) {
      note('Not connected: the line was not sent (it is still in the box).', 'err');
      return false;
    }
    if (cmd === 'quit') S.quitting = true;
    if (cmd === 'help') setTimeout(() => PAGE_HELP.forEach((t) => note(t, 'notice')), 300);
    if (cmd === 'join' && arg.trim()) {
      const word = arg.trim().split(/\s+/)[0];
      const room = word.startsWith('#') ? word : '#' + word;
      if (isJoined(room)) {
        S.joined = S.joined.filter((r) => fold(r) !== fold(room));
        S.joined.push(room);
        setView(room);
      }
    }
    if (S.localEcho && S.nick) {
      const log = viewLog();
      if (!cmd && log.key !== '*') {
        roomMessage(log, 'MSG', S.nick, line.startsWith('//') ? line.slice(1) : line, new Date(), false);
      } else if (cmd === 'me' && log.key !== '*') {
        roomMessage(log, 'ACT', S.nick, arg, new Date(), false);
      }
    }
    return true;
  }

  function historyAdd(line) {
    if (line && S.history[S.history.length - 1] !== line) S.history.push(line);
    if (S.history.length > HISTORY_MAX) S.history.shift();
    S.histPos = S.history.length;
    S.draft = '';
  }

  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    const line = ui.input.value;
    if (userLine(line)) {
      historyAdd(line);
      ui.input.value = '';
    }
    ui.input.focus();
  });

  function setInput(v) {
    ui.input.value = v;
    const n = v.length;
    ui.input.setSelectionRange(n, n);
  }

  ui.input.addEventListener('keydown', (e) => {
    if (e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === 'ArrowUp') {
      if (S.histPos > 0) {
        if (S.histPos === S.history.length) S.draft = ui.input.value;
        S.histPos--;
        setInput(S.history[S.histPos]);
      }
      e.preventDefault();
    } else if (e.key === 'ArrowDown') {
      if (S.histPos < S.history.length) {
        S.histPos++;
        setInput(S.histPos === S.history.length ? S.draft : S.history[S.histPos]);
      }
      e.preventDefault();
    } else if (e.key === 'Escape' && ui.input.value && !panelOpen()) {
      ui.input.value = '';
      S.histPos = S.history.length;
      S.draft = '';
      e.preventDefault();
      e.stopPropagation();
    }
  });

  /* ---- side panels ---------------------------------------------------------------------- */

  const panels = [[ui.toggleRooms, ui.roomsPanel], [ui.toggleMembers, ui.membersPanel]];
  const panelOpen = () => panels.some(([, p]) => p.classList.contains('open'));

  function setPanel(panel, open) {
    for (const [t, p] of panels) {
      const o = open && p === panel;
      p.classList.toggle('open', o);
      t.setAttribute('aria-expanded', String(o));
    }
    ui.scrim.hidden = !open;
    if (open) {
      const first = panel.querySelector('button, input');
      if (first) first.focus();
    }
  }
  function closePanels(focusBack) {
    const open = panels.find(([, p]) => p.classList.contains('open'));
    setPanel(null, false);
    if (open && focusBack) open[0].focus();
  }

  for (const [t, p] of panels)
    t.addEventListener('click', () => setPanel(p, !p.classList.contains('open')));
  ui.scrim.addEventListener('click', () => closePanels(false));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && panelOpen()) {
      closePanels(true);
      e.preventDefault();
    }
  });

  /* A room chosen: made current on the server (/join), and shown. */
  function chooseRoom(name) {
    closePanels(false);
    if (!send('/join ' + name)) {
      if (S.logs.has(fold(name))) setView(name);
      note('Not connected: cannot join ' + name + ' now.', 'err');
      return;
    }
    if (isJoined(name)) {
      S.expect.push({ kind: 'notice', re: /^#\S+ is your current room now$/, at: Date.now() });
      S.joined = S.joined.filter((r) => fold(r) !== fold(name));
      S.joined.push(name);
      setView(name);
    }
    ui.input.focus();
  }

  function roomClick(e) {
    const b = e.target.closest('button.room');
    if (b) chooseRoom(b.dataset.room);
  }
  ui.roomList.addEventListener('click', roomClick);
  ui.otherRooms.addEventListener('click', roomClick);

  ui.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    let room = ui.joinInput.value.trim();
    if (!room) return;
    if (!room.startsWith('#')) room = '#' + room;
    ui.joinInput.value = '';
    chooseRoom(room);
  });

  ui.leave.addEventListener('click', () => {
    const log = viewLog();
    if (log.key !== '*' && !send('/part ' + log.name))
      note('Not connected: cannot leave ' + log.name + ' now.', 'err');
    ui.input.focus();
  });

  ui.memberList.addEventListener('click', (e) => {
    const b = e.target.closest('button.member');
    if (!b) return;
    closePanels(false);
    setInput('/msg ' + b.dataset.nick + ' ');
    ui.input.focus();
  });

  ui.reconnectNow.addEventListener('click', () => {
    S.backoff = BACKOFF_MIN_MS;
    connect();
  });

  /* ---- the page's life ------------------------------------------------------------------ */

  window.addEventListener('online', () => {
    if (S.state === 'offline' && !S.quitting && !S.kicked) connect();
  });
  window.addEventListener('offline', () => {
    if (S.state === 'reconnecting') {
      clearTimeout(S.retryTimer);
      setState('offline', 'no network');
    }
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      const log = viewLog();
      log.unread = 0;
      log.mentioned = false;
      renderRooms();
      renderTitle();
    }
  });

  getLog('*');
  setView('*');
  renderMe();
  renderRooms();
  connect();
  openNickDialog();
})();
