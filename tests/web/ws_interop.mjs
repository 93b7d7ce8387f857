// ws_interop.mjs - the chat's WebSocket (/ws of `sockit chat serve --web`)
// with an independent client: the npm `ws` package, with its default
// options (it offers permessage-deflate, which the server must decline by
// not answering it). Started by tests/integration/test_ws_interop.py:
//
//   node ws_interop.mjs ws://127.0.0.1:PORT/ws
//
// Steps, each bounded by WS_WAIT_MS (default 5000): two clients get HELLO
// and JOIN, one takes a nick, they talk both ways, a ping is answered by a
// pong with its payload, a 10 KB message (eleven lines) arrives as eleven
// chat lines, a close 1000 from the client is echoed, a /quit ends with BYE and
// a close 1000 from the server, a binary message is closed with 1003, and a
// foreign Origin is refused with 403. Progress goes to stderr; the last
// stdout line is {"ok": true, "steps": [...]} or the script exits 1 naming
// the step that failed.

import WebSocket from 'ws';

const URL_ARG = process.argv[2];
if (!URL_ARG) {
  process.stderr.write('usage: node ws_interop.mjs ws://HOST:PORT/ws\n');
  process.exit(2);
}
const WAIT = Number(process.env.WS_WAIT_MS || 5000);
const log = (...a) => process.stderr.write(a.join(' ') + '\n');
const steps = [];

function fail(what) {
  throw new Error(what);
}

function expectEqual(got, want, what) {
  if (got !== want) fail(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
}

/* A client whose text messages queue up to be awaited one by one. */
class Client {
  constructor(name, options = {}) {
    this.name = name;
    this.queue = [];
    this.waiters = [];
    this.closed = null;
    this.ws = new WebSocket(URL_ARG, options);
    this.ws.on('message', (data, isBinary) => {
      const item = isBinary ? { binary: data } : { text: data.toString('utf8') };
      const w = this.waiters.shift();
      if (w) w(item);
      else this.queue.push(item);
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      for (const w of this.waiters.splice(0)) w({ closed: this.closed });
      if (this.onClosed) this.onClosed(this.closed);
    });
    this.ws.on('error', (e) => log(`${name}: error: ${e.message}`));
  }

  opened() {
    return bounded(`${this.name} opens`, new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) =>
        reject(new Error(`${this.name}: handshake answered ${res.statusCode}`)));
      this.ws.once('error', reject);
    }));
  }

  /* The next text message; fails on timeout, binary or close. */
  async next(what) {
    const item = this.queue.length ? this.queue.shift()
      : await bounded(`${this.name}: ${what}`, new Promise((resolve) => {
        if (this.closed) resolve({ closed: this.closed });
        else this.waiters.push(resolve);
      }));
    if (item.closed) fail(`${this.name}: ${what}: closed ${JSON.stringify(item.closed)}`);
    if (item.binary) fail(`${this.name}: ${what}: a binary message from the server`);
    if (item.text.includes('\n')) fail(`${this.name}: a message of more than one line`);
    return item.text;
  }

  async expect(line, what) {
    expectEqual(await this.next(what || `wait for ${line}`), line, this.name);
  }

  send(text) {
    return new Promise((resolve, reject) => this.ws.send(text, (e) => (e ? reject(e) : resolve())));
  }

  /* Resolves with {code, reason} when the connection is closed. */
  whenClosed(what) {
    return bounded(`${this.name}: ${what}`, new Promise((resolve) => {
      if (this.closed) resolve(this.closed);
      else this.onClosed = resolve;
    }));
  }
}

function bounded(what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${WAIT} ms`)), WAIT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function step(name, fn) {
  log(`step: ${name}`);
  try {
    await fn();
  } catch (e) {
    e.message = `${name}: ${e.message}`;
    throw e;
  }
  steps.push(name);
}

/* HELLO first, then the JOIN of the default room; returns [nick, room]. */
async function welcome(c) {
  const hello = await c.next('HELLO');
  const m = /^HELLO 1 (\S+) (#\S+) /.exec(hello);
  if (!m) fail(`${c.name}: first message is not HELLO: ${hello}`);
  await c.expect(`JOIN ${m[2]} ${m[1]}`);
  return [m[1], m[2]];
}

async function main() {
  const a = new Client('a');
  const b = new Client('b');
  let aNick, bNick, room;

  await step('open and HELLO', async () => {
    await a.opened();
    [aNick, room] = await welcome(a);
    if (a.ws.extensions !== '') fail(`extensions negotiated: ${a.ws.extensions}`);
    await b.opened();
    [bNick] = await welcome(b);
    await a.expect(`JOIN ${room} ${bNick}`);
  });

  await step('nick', async () => {
    await a.send('/nick alice');
    await a.expect(`NICK ${room} ${aNick} alice`);
    await b.expect(`NICK ${room} ${aNick} alice`);
    aNick = 'alice';
  });

  await step('messages both ways', async () => {
    await b.send('hello alice');
    await a.expect(`MSG ${room} ${bNick} hello alice`);
    await a.send('hello über-b ✓');
    await b.expect(`MSG ${room} alice hello über-b ✓`);
  });

  await step('ping and pong', async () => {
    const payload = Buffer.from('interop ping \u00e9');
    const pong = bounded('pong', new Promise((resolve) => a.ws.once('pong', resolve)));
    a.ws.ping(payload);
    const got = await pong;
    if (!got.equals(payload)) fail(`pong payload ${got.toString('hex')} is not the ping's`);
  });

  await step('10 KB message', async () => {
    // Ten lines of 1000 bytes and one of 230, LF between: 10240 bytes.
    const lines = [];
    for (let i = 0; i < 10; i++) lines.push(`line ${i} `.padEnd(1000, String.fromCharCode(97 + i)));
    lines.push('last line '.padEnd(230, 'z'));
    const text = lines.join('\n');
    expectEqual(Buffer.byteLength(text), 10 * 1024, 'message size');
    await a.send(text);
    for (const line of lines) await b.expect(`MSG ${room} alice ${line}`, 'a line of the 10 KB message');
  });

  await step('client close 1000', async () => {
    const closed = a.whenClosed('close echoed');
    a.ws.close(1000, 'done');
    const { code } = await closed;
    expectEqual(code, 1000, 'close code the client saw');
    await b.expect(`QUIT ${room} alice connection closed`);
  });

  await step('quit: BYE then close 1000 from the server', async () => {
    await b.send('/quit see you');
    await b.expect('BYE goodbye');
    const { code } = await b.whenClosed('server close');
    expectEqual(code, 1000, 'close code after /quit');
  });

  await step('binary message closed with 1003', async () => {
    const c = new Client('c');
    await c.opened();
    await welcome(c);
    c.ws.send(Buffer.from([0, 1, 2]), { binary: true });
    const { code, reason } = await c.whenClosed('close after binary');
    expectEqual(code, 1003, 'close code after binary');
    expectEqual(reason, 'binary messages are not part of the chat', 'close reason');
  });

  await step('foreign origin refused with 403', async () => {
    const d = new Client('d', { origin: 'http://evil.example' });
    let status = null;
    await bounded('403', new Promise((resolve) => {
      d.ws.once('unexpected-response', (req, res) => {
        status = res.statusCode;
        res.resume();
        req.destroy();
        resolve();
      });
      d.ws.once('open', () => resolve());
    }));
    expectEqual(status, 403, 'status for a foreign Origin');
  });

  await step('own origin accepted', async () => {
    const host = new URL(URL_ARG).host;
    const e = new Client('e', { origin: `http://${host}` });
    await e.opened();
    await welcome(e);
    const closed = e.whenClosed('close');
    e.ws.close(1000);
    expectEqual((await closed).code, 1000, 'close code');
  });
}

main().then(() => {
  process.stdout.write(JSON.stringify({ ok: true, steps }) + '\n');
  process.exit(0);
}, (e) => {
  log(`ws_interop: FAILED: ${e.message}`);
  process.stdout.write(JSON.stringify({ ok: false, steps, error: e.message }) + '\n');
  process.exit(1);
});
