// e2e_chat.mjs - the browser chat page end to end, in Debian's chromium
// driven by playwright-core. Started by tests/integration/test_chat_web_browser.py:
//
//   node e2e_chat.mjs URL ARTIFACTS_DIR [SCENARIO]
//
// SCENARIO "main" (the default): three browser pages (two desktop, one
// phone-sized) talk with each other and with an nc client through the real
// `sockit chat serve --web`. SCENARIO "history": one page is dropped by the
// server's idle timeout, comes back, and the history replayed on its
// rejoin does not repeat what the page shows already. What
// only the test harness can do (the nc client, stopping and starting the
// server) is asked of it: one JSON line per request on stdout,
//   {"id": 3, "do": "nc_send", "line": "..."}
// answered by one JSON line on stdin, {"id": 3, "ok": true} or
// {"id": 3, "ok": false, "error": "..."}. Everything else this script says
// goes to stderr. The last stdout line is {"done": true, "steps": [...]}.
//
// Every wait is bounded (E2E_WAIT_MS, default 10 s); a failure names the
// step and exits 1.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const [URL_ARG, ARTIFACTS, SCENARIO = 'main'] = process.argv.slice(2);
if (!URL_ARG || !ARTIFACTS) {
  process.stderr.write('usage: node e2e_chat.mjs URL ARTIFACTS_DIR [main|history]\n');
  process.exit(2);
}
const WAIT = Number(process.env.E2E_WAIT_MS || 10000);
const RECONNECT_WAIT = Math.max(WAIT, 20000); // the backoff may be at 8 s (+ jitter) when the server is back
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_MS = Number(process.env.E2E_TOTAL_MS || 240000);

const HOSTILE_TEXT = '<img src=x onerror=alert(1)> and <b>bold</b> <script>alert(2)</script>';
const HOSTILE_NICK = '<svg/onload=alert(1)>'; // one word (/nick takes one), at most 24 characters (the field's limit)

const log = (...a) => process.stderr.write(a.join(' ') + '\n');

// ---- talking to the harness ------------------------------------------------------------------

const pending = new Map();
let nextId = 1;
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let msg;
  try { msg = JSON.parse(line); } catch (e) { log('harness sent a bad line:', line); return; }
  const p = pending.get(msg.id);
  if (!p) return;
  pending.delete(msg.id);
  clearTimeout(p.timer);
  if (msg.ok) p.resolve(msg);
  else p.reject(new Error(`harness: ${p.what}: ${msg.error}`));
});

/* Asks the harness to do something; resolves with its answer. */
function ask(what, args = {}) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`harness did not answer ${what} within ${RECONNECT_WAIT * 2} ms`));
    }, RECONNECT_WAIT * 2);
    pending.set(id, { resolve, reject, timer, what });
    process.stdout.write(JSON.stringify({ id, do: what, ...args }) + '\n');
  });
}

// ---- steps ----------------------------------------------------------------------------------

const steps = [];
async function step(name, fn) {
  const t0 = Date.now();
  log(`-- ${name}`);
  try {
    await fn();
  } catch (e) {
    e.message = `step "${name}": ${e.message}`;
    throw e;
  }
  steps.push({ name, ms: Date.now() - t0 });
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// ---- pages ----------------------------------------------------------------------------------

const problems = []; // page errors, CSP violations, dialogs: all fail the test at the end

/* A new browser context (its own storage) with the chat page open and its
 * errors watched. */
async function openPage(browser, name, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => problems.push(`${name}: uncaught error in the page: ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    // While the server is down the browser logs each refused WebSocket.
    if (/WebSocket connection to .* failed/.test(text)) return;
    if (m.type() === 'error' || /Content Security Policy/i.test(text))
      problems.push(`${name}: console ${m.type()}: ${text}`);
  });
  page.on('dialog', (d) => {
    problems.push(`${name}: a JavaScript dialog opened (markup from a peer ran?): ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation',
      (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const res = await page.goto(URL_ARG, { waitUntil: 'load', timeout: WAIT });
  check(res && res.status() === 200, `${name}: GET ${URL_ARG} gave ${res && res.status()}`);
  const csp = res.headers()['content-security-policy'] || '';
  check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp),
    `${name}: the page came without a strict Content-Security-Policy: ${csp}`);
  return { name, context, page };
}

const logSel = (room) => `ol.log[aria-label="Messages in ${room}"]`;

/* Waits for a message (.msg entry) with text in room's log (shown or not). */
async function seeMessage(p, room, text, timeout = WAIT) {
  await p.page.locator(`${logSel(room)} li.msg`, { hasText: text }).first()
    .waitFor({ state: 'attached', timeout });
}

/* Waits for any entry of the shown log with this text. */
async function seeInView(p, text, cls = 'li', timeout = WAIT) {
  await p.page.locator(`ol.log:not([hidden]) ${cls}`, { hasText: text }).first()
    .waitFor({ state: 'visible', timeout });
}

async function connected(p, timeout = WAIT) {
  await p.page.locator('#conn[data-state="connected"]').waitFor({ state: 'attached', timeout });
}

/* Types a line in the message box and presses Enter. */
async function say(p, line) {
  await p.page.locator('#input').fill(line);
  await p.page.locator('#input').press('Enter');
}

/* Picks a nick in the dialog the page opens on arrival (keyboard only). */
async function pickNick(p, nick) {
  const input = p.page.locator('#nick-input');
  await input.waitFor({ state: 'visible' });
  check(await p.page.evaluate(() => document.activeElement && document.activeElement.id) === 'nick-input',
    `${p.name}: the nickname field does not have the focus`);
  await p.page.keyboard.press('Control+A');
  await p.page.keyboard.type(nick);
  await p.page.keyboard.press('Enter');
}

async function myNickIs(p, nick) {
  await p.page.locator('#my-nick', { hasText: new RegExp(`^${nick}$`) }).waitFor({ state: 'visible' });
  await p.page.locator('#nick-dialog').waitFor({ state: 'hidden' });
}

/* Markup from peers must stay text: no element made from it anywhere in
 * the logs or the dialog. */
async function noPeerMarkup(p) {
  const n = await p.page.evaluate(() =>
    document.querySelectorAll('#logs img, #logs b, #logs script, #logs iframe, #logs svg, #nick-dialog img, #nick-dialog svg').length);
  check(n === 0, `${p.name}: ${n} elements made from a peer's text`);
}

async function shot(p, file) {
  const out = path.join(ARTIFACTS, file);
  await p.page.screenshot({ path: out });
  log(`   screenshot ${out}`);
}

// ---- the scenario ---------------------------------------------------------------------------

async function scenarioMain(browser) {
  let alice, bob, dave;
  await step('alice opens the page, is refused a hostile nick, then joins as alice', async () => {
    alice = await openPage(browser, 'alice');
    await connected(alice);
    await pickNick(alice, HOSTILE_NICK);
    const err = alice.page.locator('#nick-error');
    await err.filter({ hasText: 'is not a valid nick' }).waitFor({ state: 'visible' });
    const text = await err.textContent();
    check(text.includes(HOSTILE_NICK), `the error does not show the nick as typed: ${text}`);
    await noPeerMarkup(alice);
    await pickNick(alice, 'alice');
    await myNickIs(alice, 'alice');
    await seeInView(alice, 'You are now alice');
    check(await alice.page.evaluate(() => document.activeElement.id) === 'input',
      'after joining, the focus is not in the message box');
  });

  await step('bob cannot take alice, joins as bob; both see each other in #lobby', async () => {
    bob = await openPage(browser, 'bob');
    await connected(bob);
    await pickNick(bob, 'alice');
    await bob.page.locator('#nick-error', { hasText: 'alice is already in use' }).waitFor({ state: 'visible' });
    await pickNick(bob, 'bob');
    await myNickIs(bob, 'bob');
    await alice.page.locator('#member-list button.member[data-nick="bob"]').waitFor({ state: 'visible' });
    await bob.page.locator('#member-list button.member[data-nick="alice"]').waitFor({ state: 'visible' });
    await bob.page.locator('#member-list .member.own', { hasText: 'bob' }).waitFor({ state: 'visible' });
  });

  await step('nc (carol) arrives; browsers see her in the member list', async () => {
    await ask('nc_connect', { nick: 'carol' });
    await alice.page.locator('#member-list button.member[data-nick="carol"]').waitFor({ state: 'visible' });
    await bob.page.locator('#member-list button.member[data-nick="carol"]').waitFor({ state: 'visible' });
    await seeInView(alice, 'is now carol');
  });

  await step('messages browser -> nc and browser, nc -> browsers', async () => {
    await say(alice, 'hello from alice');
    await ask('nc_expect', { pattern: '^MSG #lobby alice hello from alice$' });
    await seeMessage(bob, '#lobby', 'hello from alice');
    await seeMessage(alice, '#lobby', 'hello from alice'); // own line, via /echo on
    const own = alice.page.locator(`${logSel('#lobby')} li.msg.own`, { hasText: 'hello from alice' });
    check(await own.count() === 1, 'alice\'s own message is not shown once, highlighted as hers');
    await ask('nc_send', { line: 'hi from carol' });
    await seeMessage(alice, '#lobby', 'hi from carol');
    await seeMessage(bob, '#lobby', 'hi from carol');
    await say(bob, 'alice: mention for you');
    await alice.page.locator(`${logSel('#lobby')} li.msg.mention`, { hasText: 'mention for you' })
      .waitFor({ state: 'visible' });
  });

  await step('rooms: alice joins #dev by the form, bob by clicking it in the room list', async () => {
    await alice.page.locator('#join-room-input').fill('dev');
    await alice.page.locator('#join-room-input').press('Enter');
    await alice.page.locator('#view-name', { hasText: '#dev' }).waitFor({ state: 'visible' });
    await alice.page.locator('#room-list button.room[data-room="#dev"][aria-current="true"]')
      .waitFor({ state: 'visible' });
    await say(bob, '/rooms'); // a command typed as in the terminal client: its reply is shown
    await seeInView(bob, 'Room #dev (1)');
    const other = bob.page.locator('#other-room-list button.room[data-room="#dev"]');
    await other.waitFor({ state: 'visible' });
    await other.click();
    await bob.page.locator('#room-list button.room[data-room="#dev"][aria-current="true"]')
      .waitFor({ state: 'visible' });
    await alice.page.locator('#member-list button.member[data-nick="bob"]').waitFor({ state: 'visible' });
    await say(bob, 'dev talk from bob');
    await seeMessage(alice, '#dev', 'dev talk from bob');
    await alice.page.locator(`${logSel('#dev')}:not([hidden])`).waitFor({ state: 'visible' });
  });

  await step('a #lobby message while alice looks at #dev: unread badge, then shown', async () => {
    await ask('nc_send', { line: 'lobby news while alice is away' });
    await seeMessage(bob, '#lobby', 'lobby news while alice is away');
    const badge = alice.page.locator('#room-list button.room[data-room="#lobby"] .badge', { hasText: '1' });
    await badge.waitFor({ state: 'visible' });
    await alice.page.locator('#room-list button.room[data-room="#lobby"]').click();
    await alice.page.locator('#view-name', { hasText: '#lobby' }).waitFor({ state: 'visible' });
    await seeInView(alice, 'lobby news while alice is away', 'li.msg');
    await badge.waitFor({ state: 'detached' });
    // the server knows #lobby is current again: plain text goes there
    await say(alice, 'back in the lobby');
    await ask('nc_expect', { pattern: '^MSG #lobby alice back in the lobby$' });
  });

  await step('nc, in #lobby only, never got the #dev talk; then joins #dev and talks there', async () => {
    await ask('nc_absent', { text: 'dev talk from bob' });
    await ask('nc_send', { line: '/join #dev' });
    await ask('nc_expect', { pattern: '^JOIN #dev carol$' });
    await ask('nc_send', { line: 'carol in dev' });
    await seeMessage(bob, '#dev', 'carol in dev');
    await seeMessage(alice, '#dev', 'carol in dev');
  });

  await step('private messages both ways; a member click prefills /msg', async () => {
    await alice.page.locator('#member-list button.member[data-nick="carol"]').click();
    const value = await alice.page.locator('#input').inputValue();
    check(value === '/msg carol ', `the member click gave ${JSON.stringify(value)}`);
    check(await alice.page.evaluate(() => document.activeElement.id) === 'input', 'focus not in the box');
    await alice.page.keyboard.type('a secret for carol');
    await alice.page.keyboard.press('Enter');
    await ask('nc_expect', { pattern: '^MSG carol alice a secret for carol$' });
    await seeInView(alice, 'a secret for carol', 'li.msg.private.own');
    await seeInView(alice, 'private to carol', 'li.msg.private.own');
    await ask('nc_send', { line: '/msg alice psst from carol' });
    await seeInView(alice, 'psst from carol', 'li.msg.private');
    const bobSaw = await bob.page.locator('li.msg', { hasText: 'psst from carol' }).count();
    check(bobSaw === 0, 'bob saw a private message to alice');
  });

  await step('hostile text from nc is shown as text and makes no element', async () => {
    await ask('nc_send', { line: `/msg #lobby ${HOSTILE_TEXT}` });
    await seeMessage(alice, '#lobby', 'onerror=alert(1)');
    await seeMessage(bob, '#lobby', 'onerror=alert(1)');
    for (const p of [alice, bob]) {
      const texts = await p.page.locator(`${logSel('#lobby')} li.msg .text`).allTextContents();
      check(texts.includes(HOSTILE_TEXT), `${p.name}: the text is not shown literally: ${JSON.stringify(texts)}`);
      await noPeerMarkup(p);
    }
  });

  await step('keyboard only: send, recall with Up, clear with Escape, Tab to a member, visible focus', async () => {
    const pg = bob.page;
    await pg.locator('#room-list button.room[data-room="#lobby"]').click();
    await pg.locator('#view-name', { hasText: '#lobby' }).waitFor({ state: 'visible' });
    await pg.locator('#input').focus();
    await pg.keyboard.type('typed with the keyboard only');
    await pg.keyboard.press('Enter');
    await seeMessage(alice, '#lobby', 'typed with the keyboard only');
    await ask('nc_expect', { pattern: '^MSG #lobby bob typed with the keyboard only$' });
    check(await pg.locator('#input').inputValue() === '', 'the box was not cleared after Enter');
    await pg.keyboard.press('ArrowUp');
    check(await pg.locator('#input').inputValue() === 'typed with the keyboard only', 'Up did not recall the line');
    await pg.keyboard.press('Escape');
    check(await pg.locator('#input').inputValue() === '', 'Escape did not clear the line');
    // Tab from the box: the Send button, then the people
    let reached = null;
    for (let i = 0; i < 12 && !reached; i++) {
      await pg.keyboard.press('Tab');
      reached = await pg.evaluate(() => {
        const a = document.activeElement;
        if (!a || !a.matches('button.member')) return null;
        const st = getComputedStyle(a);
        return { nick: a.dataset.nick, outline: st.outlineStyle, width: st.outlineWidth };
      });
    }
    check(reached, 'Tab from the message box never reached a member');
    check(reached.outline !== 'none' && reached.width !== '0px',
      `the focused member shows no focus ring (${reached.outline} ${reached.width})`);
    await pg.keyboard.press('Enter');
    check(await pg.evaluate(() => document.activeElement.id) === 'input', 'Enter on a member did not go to the box');
    await pg.keyboard.type('private by keyboard');
    await pg.keyboard.press('Enter');
    if (reached.nick === 'alice') await seeInView(alice, 'private by keyboard', 'li.msg.private');
    else if (reached.nick === 'carol') await ask('nc_expect', { pattern: '^MSG carol bob private by keyboard$' });
    await seeInView(bob, 'private by keyboard', 'li.msg.private.own');
    // Shift+Tab back from the box reaches the rooms
    await pg.locator('#input').focus();
    let room = false;
    for (let i = 0; i < 20 && !room; i++) {
      await pg.keyboard.press('Shift+Tab');
      room = await pg.evaluate(() => document.activeElement.matches('button.room'));
    }
    check(room, 'Shift+Tab from the message box never reached a room');
  });

  await step('desktop screenshot', async () => {
    await alice.page.locator('#input').fill('');
    await shot(alice, 'chat-desktop.png');
  });

  await step('phone width: drawers, input visible, history safe, can send', async () => {
    dave = await openPage(browser, 'dave', { viewport: { width: 375, height: 700 }, isMobile: true, hasTouch: true });
    await connected(dave);
    await pickNick(dave, 'dave');
    await myNickIs(dave, 'dave');
    // history on join, with the hostile line in it
    await seeMessage(dave, '#lobby', 'hello from alice');
    await seeMessage(dave, '#lobby', 'onerror=alert(1)');
    const texts = await dave.page.locator(`${logSel('#lobby')} li.msg .text`).allTextContents();
    check(texts.includes(HOSTILE_TEXT), 'the hostile line from history is not shown literally');
    await noPeerMarkup(dave);
    const box = await dave.page.locator('#input').boundingBox();
    check(box && box.x >= 0 && box.y >= 0 && box.x + box.width <= 375 && box.y + box.height <= 700,
      `the message box is not inside the phone's screen: ${JSON.stringify(box)}`);
    const send = await dave.page.locator('#send-button').boundingBox();
    check(send && send.x + send.width <= 375 && send.y + send.height <= 700, 'the Send button is off screen');
    check(!(await dave.page.locator('#rooms-panel').isVisible()), 'the rooms panel is open at phone width');
    check(!(await dave.page.locator('#members-panel').isVisible()), 'the people panel is open at phone width');
    const width = await dave.page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 375, `the page scrolls sideways at phone width (${width}px)`);
    await say(dave, 'from the phone');
    await ask('nc_expect', { pattern: '^MSG #lobby dave from the phone$' });
    await seeMessage(alice, '#lobby', 'from the phone');
    await shot(dave, 'chat-phone.png');
    await dave.page.locator('#toggle-rooms').click();
    await dave.page.locator('#rooms-panel').waitFor({ state: 'visible' });
    check(await dave.page.locator('#toggle-rooms').getAttribute('aria-expanded') === 'true', 'aria-expanded not set');
    await dave.page.waitForTimeout(250); // the drawer slides in (0.18 s) before the picture
    await shot(dave, 'chat-phone-rooms.png');
    await dave.page.keyboard.press('Escape');
    await dave.page.locator('#rooms-panel').waitFor({ state: 'hidden' });
    await dave.page.locator('#toggle-members').click();
    await dave.page.locator('#members-panel button.member[data-nick="alice"]').waitFor({ state: 'visible' });
    await dave.page.locator('#members-panel button.member[data-nick="alice"]').click();
    await dave.page.locator('#members-panel').waitFor({ state: 'hidden' });
    check(await dave.page.locator('#input').inputValue() === '/msg alice ', 'member click on the phone');
    await dave.page.locator('#input').fill('');
  });

  await step('the server stops: the pages say so and keep what is typed', async () => {
    await ask('server_stop');
    for (const p of [alice, bob, dave]) {
      await p.page.locator('#conn[data-state="reconnecting"]').waitFor({ state: 'visible' });
    }
    const t = (await alice.page.locator('#conn').textContent()).replace(/\s+/g, ' ').trim();
    check(/reconnecting in \d+s/.test(t), `the state does not say when: ${JSON.stringify(t)}`);
    await say(alice, 'typed while offline');
    await seeInView(alice, 'Not connected', 'li.err');
    check(await alice.page.locator('#input').inputValue() === 'typed while offline', 'the line was lost');
    await shot(alice, 'chat-desktop-reconnecting.png');
  });

  await step('the server is back on the same port: pages reconnect with their nicks and rooms', async () => {
    await ask('server_start');
    for (const p of [alice, bob, dave]) await connected(p, RECONNECT_WAIT);
    await myNickIs(alice, 'alice');
    await myNickIs(bob, 'bob');
    await myNickIs(dave, 'dave');
    await alice.page.locator('#room-list button.room[data-room="#dev"]').waitFor({ state: 'visible' });
    await bob.page.locator('#room-list button.room[data-room="#dev"]').waitFor({ state: 'visible' });
    await seeInView(alice, 'Reconnected', 'li.note');
    // alice's current room was #lobby: still the one her plain text goes to
    await alice.page.locator('#view-name', { hasText: '#lobby' }).waitFor({ state: 'visible' });
    await alice.page.locator('#member-list button.member[data-nick="bob"]').waitFor({ state: 'visible' });
    await ask('nc_connect', { nick: 'carol' });
    await alice.page.locator('#input').press('Enter'); // the line kept from before
    await ask('nc_expect', { pattern: '^MSG #lobby alice typed while offline$' });
    await ask('nc_send', { line: 'welcome back' });
    await seeMessage(alice, '#lobby', 'welcome back');
    await seeMessage(bob, '#lobby', 'welcome back');
    await seeMessage(dave, '#lobby', 'welcome back');
    await say(bob, '/join #dev');
    await bob.page.locator('#view-name', { hasText: '#dev' }).waitFor({ state: 'visible' });
    await say(bob, 'dev is back too');
    await seeMessage(alice, '#dev', 'dev is back too');
    await noPeerMarkup(alice);
  });

  await step('/quit: offline, no reconnecting, then Connect brings the page back', async () => {
    await say(dave, '/quit');
    await dave.page.locator('#conn[data-state="offline"]').waitFor({ state: 'visible' });
    const button = dave.page.locator('#reconnect-now');
    await button.waitFor({ state: 'visible' });
    await alice.page.locator(`${logSel('#lobby')} li.sys`, { hasText: 'dave quit #lobby' }).waitFor({ state: 'attached' });
    await button.click();
    await connected(dave);
    await myNickIs(dave, 'dave');
  });

  return [alice, bob, dave];
}

/* The server drops alice for idleness (--idle-timeout); the page comes
 * back, rejoins, and the history the server replays shows nothing twice. */
async function scenarioHistory(browser) {
  const alice = await openPage(browser, 'alice');
  const lines = ['first line', 'second line', 'third line'];
  await step('alice joins and talks in #lobby and #dev', async () => {
    await connected(alice);
    await pickNick(alice, 'alice');
    await myNickIs(alice, 'alice');
    for (const l of lines) {
      await say(alice, l);
      await seeMessage(alice, '#lobby', l);
    }
    await say(alice, '/join #dev');
    await alice.page.locator('#view-name', { hasText: '#dev' }).waitFor({ state: 'visible' });
    await say(alice, 'a dev line');
    await seeMessage(alice, '#dev', 'a dev line');
    await alice.page.locator('#room-list button.room[data-room="#lobby"]').click();
    await alice.page.locator('#view-name', { hasText: '#lobby' }).waitFor({ state: 'visible' });
  });
  await step('idle: dropped by the server, back with its nick and rooms', async () => {
    await seeInView(alice, 'idle for', 'li', RECONNECT_WAIT);
    await seeInView(alice, 'Reconnected', 'li.note', RECONNECT_WAIT);
    await connected(alice);
    await myNickIs(alice, 'alice');
    await alice.page.locator('#room-list button.room[data-room="#dev"]').waitFor({ state: 'visible' });
    await alice.page.locator('#view-name', { hasText: '#lobby' }).waitFor({ state: 'visible' });
    await say(alice, 'after the drop');
    await seeMessage(alice, '#lobby', 'after the drop');
  });
  await step('the replayed history is not shown twice', async () => {
    for (const [room, texts] of [['#lobby', lines], ['#dev', ['a dev line']]]) {
      const shown = await alice.page.locator(`${logSel(room)} li.msg .text`).allTextContents();
      for (const t of texts) {
        const n = shown.filter((x) => x === t).length;
        check(n === 1, `${room}: "${t}" shown ${n} times: ${JSON.stringify(shown)}`);
      }
    }
  });
  return [alice];
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const args = ['--disable-gpu', '--disable-dev-shm-usage'];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  const scenario = { main: scenarioMain, history: scenarioHistory }[SCENARIO];
  check(scenario, `no scenario ${SCENARIO}`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: WAIT * 2 });
  try {
    const pages = await scenario(browser);
    for (const p of pages) {
      const v = await p.page.evaluate(() => window.__cspViolations);
      for (const x of v) problems.push(`${p.name}: Content-Security-Policy violation: ${x}`);
    }
    check(problems.length === 0, 'problems in the pages:\n  ' + problems.join('\n  '));
  } finally {
    await browser.close().catch(() => {});
  }
}

const guard = setTimeout(() => {
  log(`e2e: not done within ${TOTAL_MS} ms`);
  process.exit(1);
}, TOTAL_MS);

main().then(() => {
  clearTimeout(guard);
  process.stdout.write(JSON.stringify({ done: true, steps }) + '\n');
  rl.close();
  process.exit(0);
}, (e) => {
  clearTimeout(guard);
  log(`e2e FAILED: ${e.stack || e}`);
  if (problems.length) log('problems in the pages:\n  ' + problems.join('\n  '));
  process.stdout.write(JSON.stringify({ done: false, error: String(e.message || e), steps }) + '\n');
  rl.close();
  process.exit(1);
});
