// Interop client: Node `ws` against silverback's echo server.
//
// Usage: node interop/node_client.mjs ws://127.0.0.1:PORT/ws
//
// Where `ws` comes from: the checkout's own peer install, .peers/node
// (scripts/install-peers.sh puts ws 8.18.3 there). It is loaded with
// createRequire anchored at that directory, found relative to this file
// (import.meta.url), so the script works from any working directory and
// needs neither NODE_PATH nor a package.json next to it. To use another
// install, set SILVERBACK_NODE_PEERS to a directory whose node_modules holds
// `ws`.
//
// Checks, in order, on one connection:
//   * echo of text and binary messages of 0, 125, 126, 65535, 65536 and
//     1048576 bytes (the frame length encodings' boundaries);
//   * echo of fragmented messages (send(chunk, {fin: false}) ... {fin: true}):
//     text, text with a code point split across frames, binary; the echo
//     must be the joined message;
//   * a ping is answered (a 'pong' with the same payload);
//   * ws.close(4000, 'interop done'): the 'close' event's code must be 4000.
// Exit status 0 on success; on failure, 1 with a "FAIL: ..." line on stderr.
// Every wait is bounded (TIMEOUT_MS).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TIMEOUT_MS = 20_000;
const SIZES = [0, 125, 126, 65535, 65536, 1 << 20];

const here = path.dirname(fileURLToPath(import.meta.url));
const peersDir = process.env.SILVERBACK_NODE_PEERS || path.resolve(here, '..', '.peers', 'node');
let WebSocket;
try {
  WebSocket = createRequire(path.join(peersDir, 'package.json'))('ws');
} catch (e) {
  console.error(`FAIL: cannot load ws from ${peersDir} (run scripts/install-peers.sh): ${e.message}`);
  process.exit(1);
}

class CheckFailed extends Error {}

function check(cond, what) {
  if (!cond) throw new CheckFailed(what);
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`timed out after ${TIMEOUT_MS} ms: ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function textPayload(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(97 + (i % 26));
  return s;
}

function binaryPayload(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 256;
  return b;
}

const describe = (m) => `${m.isBinary ? 'binary' : 'text'} of ${m.data.length} bytes`;

// Incoming messages and the end of the connection, as awaitable events.
class Peer {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    this.failure = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.fail(new CheckFailed(`connection closed while waiting (code ${code}, reason ${JSON.stringify(reason.toString())})`));
        resolve({ code, reason: reason.toString() });
      });
    });
    ws.on('message', (data, isBinary) => {
      const msg = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.messages.push(msg);
    });
    ws.on('error', (e) => this.fail(new CheckFailed(`ws error: ${e.message}`)));
  }

  fail(err) {
    if (!this.failure) this.failure = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  next(what) {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    if (this.failure) return Promise.reject(this.failure);
    return withTimeout(new Promise((resolve, reject) => this.waiters.push({ resolve, reject })), what);
  }

  send(data, options) {
    return withTimeout(
      new Promise((resolve, reject) => this.ws.send(data, options, (err) => (err ? reject(err) : resolve()))),
      'send',
    );
  }

  async expectEcho(expected, isBinary, what) {
    const got = await this.next(what);
    const want = { data: expected, isBinary };
    check(got.isBinary === isBinary, `${what}: sent ${describe(want)}, got back ${describe(got)}`);
    if (!got.data.equals(expected)) {
      let at = 0;
      while (at < got.data.length && at < expected.length && got.data[at] === expected[at]) at++;
      throw new CheckFailed(`${what}: echo differs from offset ${at} (${describe(want)} sent, ${describe(got)} received)`);
    }
  }
}

async function run(url) {
  // maxPayload: 0 means no limit (the default, 100 MiB, would do as well).
  const ws = new WebSocket(url, { maxPayload: 0, handshakeTimeout: TIMEOUT_MS });
  const peer = new Peer(ws);
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new CheckFailed(`handshake refused: HTTP ${res.statusCode}`)));
    }),
    'opening handshake',
  );

  try {
    for (const n of SIZES) {
      const msg = textPayload(n);
      await peer.send(msg, { binary: false });
      await peer.expectEcho(Buffer.from(msg), false, `text echo of ${n} bytes`);
      console.log(`ok: text echo, ${n} bytes`);
    }
    for (const n of SIZES) {
      const msg = binaryPayload(n);
      await peer.send(msg, { binary: true });
      await peer.expectEcho(msg, true, `binary echo of ${n} bytes`);
      console.log(`ok: binary echo, ${n} bytes`);
    }

    const fragments = ['Hello, ', '', 'fragmented ', 'world ', 'é'.repeat(100)];
    for (let i = 0; i < fragments.length; i++) {
      await peer.send(fragments[i], { binary: false, fin: i === fragments.length - 1 });
    }
    await peer.expectEcho(Buffer.from(fragments.join('')), false, 'fragmented text');
    console.log(`ok: fragmented text (${fragments.length} fragments)`);

    // '€' is E2 82 AC: split one code point over three frames.
    const utf8 = Buffer.from('price: 5€, done');
    const cut = utf8.indexOf(0xe2);
    const split = [utf8.subarray(0, cut + 1), utf8.subarray(cut + 1, cut + 2), utf8.subarray(cut + 2)];
    for (let i = 0; i < split.length; i++) {
      await peer.send(split[i], { binary: false, fin: i === split.length - 1 });
    }
    await peer.expectEcho(utf8, false, 'fragmented text split inside a code point');
    console.log('ok: fragmented text, code point split across frames');

    const chunks = [binaryPayload(1000), Buffer.alloc(0), binaryPayload(70000), Buffer.from([0, 255])];
    for (let i = 0; i < chunks.length; i++) {
      await peer.send(chunks[i], { binary: true, fin: i === chunks.length - 1 });
    }
    await peer.expectEcho(Buffer.concat(chunks), true, 'fragmented binary');
    console.log(`ok: fragmented binary (${chunks.length} fragments)`);

    const pingData = Buffer.from('silverback?');
    const pong = withTimeout(new Promise((resolve) => ws.once('pong', resolve)), 'pong');
    ws.ping(pingData);
    const pongData = await pong;
    check(pongData.equals(pingData), `pong payload ${JSON.stringify(pongData.toString())}, expected the ping's`);
    console.log('ok: ping answered');

    await peer.send('after ping', { binary: false });
    await peer.expectEcho(Buffer.from('after ping'), false, 'echo after ping');
  } catch (e) {
    ws.terminate();
    throw e;
  }

  ws.close(4000, 'interop done');
  const { code, reason } = await withTimeout(peer.closed, "the server's Close");
  check(code === 4000, `'close' event code ${code}, expected 4000 echoed`);
  console.log(`ok: close 4000 echoed (reason ${JSON.stringify(reason)})`);
}

const url = process.argv[2];
if (!url || process.argv.length !== 3) {
  console.error('usage: node interop/node_client.mjs ws://HOST:PORT/PATH');
  process.exit(2);
}
try {
  await run(url);
  console.log('node ws interop: all checks passed');
  process.exit(0);
} catch (e) {
  console.error(`FAIL: ${e instanceof CheckFailed ? e.message : e.stack || e}`);
  process.exit(1);
}
