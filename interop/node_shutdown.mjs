// Interop: a Node `ws` client sees silverback's graceful shutdown.
//
// Usage: node interop/node_shutdown.mjs ws://127.0.0.1:PORT/ws
//
// `ws` is loaded from the checkout's .peers/node (scripts/install-peers.sh),
// or from SILVERBACK_NODE_PEERS, as in node_client.mjs.
//
// Connects, checks one echo (so the server tracks the connection), prints
// "ready", then waits for the server to close (the test sends it SIGTERM):
// the 'close' event must carry 1001 "server shutting down", and the client
// must have answered the server's Close frame (a clean closing handshake).
// Exit status 0 with "all checks passed"; on failure, 1 with a "FAIL: ..."
// line on stderr. Every wait is bounded (TIMEOUT_MS).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TIMEOUT_MS = 20_000;

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

async function run(url) {
  const ws = new WebSocket(url, { handshakeTimeout: TIMEOUT_MS });
  const messages = [];
  let onMessage = null;
  ws.on('message', (data, isBinary) => {
    messages.push({ data: data.toString(), isBinary });
    if (onMessage) onMessage();
  });
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  ws.on('error', (e) => console.error(`ws error: ${e.message}`));
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new CheckFailed(`handshake refused: HTTP ${res.statusCode}`)));
    }),
    'opening handshake',
  );

  const echoed = new Promise((resolve) => {
    onMessage = resolve;
  });
  ws.send('before shutdown');
  await withTimeout(echoed, 'the echo');
  check(messages.length === 1 && messages[0].data === 'before shutdown', `echo: got ${JSON.stringify(messages)}`);
  console.log('ok: echo before the shutdown');
  console.log('ready');

  // Now the server gets SIGTERM; this client never closes by itself.
  const { code, reason } = await withTimeout(closed, "the server's Close");
  check(code === 1001, `'close' event code ${code}, expected 1001`);
  check(reason === 'server shutting down', `'close' event reason ${JSON.stringify(reason)}`);
  // ws 8 keeps these flags: a Close frame came, and ours answered it (a
  // clean closing handshake rather than a dropped connection).
  check(ws._closeFrameReceived === true, 'no Close frame received from the server');
  check(ws._closeFrameSent === true, "the client did not answer the server's Close");
  check(messages.length === 1, `messages after the echo: ${JSON.stringify(messages.slice(1))}`);
  console.log(`ok: server closed with 1001 ${JSON.stringify(reason)}`);
}

const url = process.argv[2];
if (!url || process.argv.length !== 3) {
  console.error('usage: node interop/node_shutdown.mjs ws://HOST:PORT/PATH');
  process.exit(2);
}
try {
  await run(url);
  console.log('node ws shutdown: all checks passed');
  process.exit(0);
} catch (e) {
  console.error(`FAIL: ${e instanceof CheckFailed ? e.message : e.stack || e}`);
  process.exit(1);
}
