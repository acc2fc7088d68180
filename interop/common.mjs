// Shared parts of the Node interop peers (node_*.mjs in this directory):
// loading `ws`, the check and timeout helpers of the clients, their payload
// generators, a message queue with echo checks, and the servers' startup
// and exit boilerplate. Imported by relative path ('./common.mjs').
//
// Where `ws` comes from: the checkout's own peer install, .peers/node
// (scripts/install-peers.sh puts ws 8.18.3 there). It is loaded with
// createRequire anchored at that directory, found relative to this file
// (import.meta.url), so the scripts work from any working directory and
// need neither NODE_PATH nor a package.json next to them. To use another
// install, set SILVERBACK_NODE_PEERS to a directory whose node_modules holds
// `ws`.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The `ws` package (its export is the WebSocket class, with WebSocketServer
// and the rest as properties). If it cannot be loaded, prints a FAIL line
// and exits 1.
export function loadWs() {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const peersDir = process.env.SILVERBACK_NODE_PEERS || path.resolve(here, '..', '.peers', 'node');
  try {
    return createRequire(path.join(peersDir, 'package.json'))('ws');
  } catch (e) {
    console.error(`FAIL: cannot load ws from ${peersDir} (run scripts/install-peers.sh): ${e.message}`);
    process.exit(1);
  }
}

// ----- clients ----------------------------------------------------------------

// A failed check: reported as "FAIL: <message>" (without a stack).
export class CheckFailed extends Error {}

export function check(cond, what) {
  if (!cond) throw new CheckFailed(what);
}

// `promise`, or a CheckFailed naming `what` after `ms` milliseconds.
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The frame length encodings' boundaries (7-bit, 16-bit, 64-bit lengths).
export const SIZES = [0, 125, 126, 65535, 65536, 1 << 20];

// ASCII, so that the byte length is exactly n.
export function textPayload(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(97 + (i % 26));
  return s;
}

// All byte values, including the ones invalid in UTF-8.
export function binaryPayload(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 256;
  return b;
}

// Highly compressible ASCII, exactly n bytes.
export function jsonLike(n) {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `{"id":${i},"name":"item ${i % 97}","tags":["a","b"],"ok":true},`;
  return s.slice(0, n);
}

// Deterministic pseudo-random bytes (xorshift32).
export function randomBytes(n, seed) {
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

// Deterministic pseudo-random letters and digits, n bytes.
export function randomText(n, seed) {
  const r = randomBytes(n, seed);
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[r[i] % ALPHABET.length];
  return s;
}

const describe = (m) => `${m.isBinary ? 'binary' : 'text'} of ${m.data.length} bytes`;

// Waits, bounded by `timeoutMs`, until the opening handshake of `ws` is done.
export function opened(ws, timeoutMs) {
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new CheckFailed(`handshake refused: HTTP ${res.statusCode}`)));
    }),
    timeoutMs,
    'opening handshake',
  );
}

// Incoming messages and the end of the connection, as awaitable events;
// every wait is bounded by `timeoutMs`.
export class Peer {
  constructor(ws, timeoutMs) {
    this.ws = ws;
    this.timeoutMs = timeoutMs;
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

  bounded(promise, what) {
    return withTimeout(promise, this.timeoutMs, what);
  }

  next(what) {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    if (this.failure) return Promise.reject(this.failure);
    return this.bounded(new Promise((resolve, reject) => this.waiters.push({ resolve, reject })), what);
  }

  send(data, options) {
    return this.bounded(
      new Promise((resolve, reject) => this.ws.send(data, options, (err) => (err ? reject(err) : resolve()))),
      'send',
    );
  }

  // Sends `fragments` as one message, a frame each (fin on the last).
  async sendFragments(fragments, options) {
    for (let i = 0; i < fragments.length; i++) {
      await this.send(fragments[i], { ...options, fin: i === fragments.length - 1 });
    }
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

  // Runs `steps`; if they fail, drops the connection (no closing handshake)
  // so that the first failure is the one reported.
  async guard(steps) {
    try {
      await steps();
    } catch (e) {
      this.ws.terminate();
      throw e;
    }
  }

  // Closes with `code` and `reason`; resolves to the 'close' event's
  // { code, reason } once the server's Close has come.
  close(code, reason) {
    this.ws.close(code, reason);
    return this.bounded(this.closed, "the server's Close");
  }
}

// A client script's entry point: checks the command line (one argument, the
// URL; else usage on stderr, exit 2), awaits run(url), then prints
// `passed` and exits 0; on failure prints "FAIL: ..." on stderr, exits 1.
export async function clientMain(script, run, passed) {
  const url = process.argv[2];
  if (!url || process.argv.length !== 3) {
    console.error(`usage: node ${script} ws://HOST:PORT/PATH`);
    process.exit(2);
  }
  try {
    await run(url);
    console.log(passed);
    process.exit(0);
  } catch (e) {
    console.error(`FAIL: ${e instanceof CheckFailed ? e.message : e.stack || e}`);
    process.exit(1);
  }
}

// ----- servers ----------------------------------------------------------------

// The line the tests wait for (crates/cli/tests/common: parse_listening_line).
export function announceListening(port) {
  console.log(`listening on ws://127.0.0.1:${port}`);
}

// Ends the server if the test that started it is gone.
export function exitWhenParentDies() {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 1000).unref();
}

// Ends the server after `ms` milliseconds at the latest.
export function exitAfter(ms) {
  setTimeout(() => process.exit(0), ms).unref();
}
