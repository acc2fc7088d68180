// Interop client with permessage-deflate: Node `ws` against an echo server
// (silverback serve, compression on by default).
//
// Usage: node interop/node_deflate_client.mjs ws://127.0.0.1:PORT/ws
//
// `ws` is loaded from the checkout's .peers/node (scripts/install-peers.sh
// installs ws 8.18.3 there), or from SILVERBACK_NODE_PEERS/node_modules.
//
// On one connection, offering permessage-deflate (perMessageDeflate: true,
// the client default: "permessage-deflate; client_max_window_bits"):
//   * prints "negotiated: <Sec-WebSocket-Extensions of the response>" and
//     "extension: <ws.extensions> <agreed parameters as JSON>", and fails
//     unless permessage-deflate was agreed;
//   * echo of text and binary messages of 0, 125, 126, 65535, 65536 and
//     1048576 bytes, each highly compressible (JSON-like) and random
//     (incompressible); ws compresses those of 1024 bytes and more
//     (its threshold);
//   * echo of a small message compressed on request (compress: true) and a
//     large one sent uncompressed (compress: false);
//   * echo of a fragmented compressed message (fin: false ... fin: true);
//   * ws.close(1000): the 'close' event's code must be 1000.
// Prints "sent: N bytes in M messages" (payload bytes, before compression),
// then the success line. Exit status 0 on success; on failure, 1 with a
// "FAIL: ..." line on stderr. Every wait is bounded (TIMEOUT_MS).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TIMEOUT_MS = 30_000;
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

function jsonLike(n) {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `{"id":${i},"name":"item ${i % 97}","tags":["a","b"],"ok":true},`;
  return s.slice(0, n);
}

// Deterministic pseudo-random bytes (xorshift32).
function randomBytes(n, seed) {
  const b = Buffer.alloc(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
function randomText(n, seed) {
  const r = randomBytes(n, seed);
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[r[i] % ALPHABET.length];
  return s;
}

const describe = (m) => `${m.isBinary ? 'binary' : 'text'} of ${m.data.length} bytes`;

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
  const ws = new WebSocket(url, { maxPayload: 0, handshakeTimeout: TIMEOUT_MS, perMessageDeflate: true });
  const peer = new Peer(ws);
  let header;
  ws.once('upgrade', (res) => {
    header = res.headers['sec-websocket-extensions'];
  });
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new CheckFailed(`handshake refused: HTTP ${res.statusCode}`)));
    }),
    'opening handshake',
  );
  let sentBytes = 0;
  let sentMessages = 0;
  try {
    console.log(`negotiated: ${header}`);
    const pmd = ws._extensions['permessage-deflate'];
    console.log(`extension: ${ws.extensions} ${JSON.stringify(pmd ? pmd.params : null)}`);
    check(typeof header === 'string' && header.startsWith('permessage-deflate'), `no permessage-deflate in the response: ${header}`);
    check(ws.extensions === 'permessage-deflate', `extensions in use: ${JSON.stringify(ws.extensions)}`);

    let seed = 1;
    for (const n of SIZES) {
      const cases = [
        ['compressible text', Buffer.from(jsonLike(n)), false],
        ['random text', Buffer.from(randomText(n, seed++)), false],
        ['compressible binary', Buffer.from(jsonLike(n)), true],
        ['random binary', randomBytes(n, seed++), true],
      ];
      for (const [kind, data, binary] of cases) {
        await peer.send(binary ? data : data.toString(), { binary });
        sentBytes += n;
        sentMessages++;
        await peer.expectEcho(data, binary, `${kind} echo of ${n} bytes`);
        console.log(`ok: ${kind} echo, ${n} bytes`);
      }
    }

    const small = Buffer.from('{"small":"compressed on request"}');
    await peer.send(small.toString(), { binary: false, compress: true });
    await peer.expectEcho(small, false, 'small message compressed on request');
    const big = Buffer.from(jsonLike(50000));
    await peer.send(big, { binary: true, compress: false });
    await peer.expectEcho(big, true, 'large message sent uncompressed');
    sentBytes += small.length + big.length;
    sentMessages += 2;
    console.log('ok: compress: true / false per message');

    const fragments = [jsonLike(10000), '', jsonLike(70000), 'é'.repeat(1000)];
    for (let i = 0; i < fragments.length; i++) {
      await peer.send(fragments[i], { binary: false, compress: true, fin: i === fragments.length - 1 });
    }
    const joined = Buffer.from(fragments.join(''));
    sentBytes += joined.length;
    sentMessages++;
    await peer.expectEcho(joined, false, 'fragmented compressed text');
    console.log(`ok: fragmented compressed text (${fragments.length} fragments)`);
  } catch (e) {
    ws.terminate();
    throw e;
  }

  ws.close(1000, 'deflate interop done');
  const { code } = await withTimeout(peer.closed, "the server's Close");
  check(code === 1000, `'close' event code ${code}, expected 1000`);
  console.log('ok: close 1000 echoed');
  console.log(`sent: ${sentBytes} bytes in ${sentMessages} messages`);
}

const url = process.argv[2];
if (!url || process.argv.length !== 3) {
  console.error('usage: node interop/node_deflate_client.mjs ws://HOST:PORT/PATH');
  process.exit(2);
}
try {
  await run(url);
  console.log('node ws deflate interop: all checks passed');
  process.exit(0);
} catch (e) {
  console.error(`FAIL: ${e instanceof CheckFailed ? e.message : e.stack || e}`);
  process.exit(1);
}
