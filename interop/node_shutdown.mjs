// Interop: a Node `ws` client sees silverback's graceful shutdown.
//
// Usage: node interop/node_shutdown.mjs ws://127.0.0.1:PORT/ws
//
// `ws` is loaded from the checkout's .peers/node (scripts/install-peers.sh),
// or from SILVERBACK_NODE_PEERS (see common.mjs).
//
// Connects, checks one echo (so the server tracks the connection), prints
// "ready", then waits for the server to close (the test sends it SIGTERM):
// the 'close' event must carry 1001 "server shutting down", and the client
// must have answered the server's Close frame (a clean closing handshake).
// Exit status 0 with "all checks passed"; on failure, 1 with a "FAIL: ..."
// line on stderr. Every wait is bounded (TIMEOUT_MS).

import { check, clientMain, loadWs, opened, withTimeout } from './common.mjs';

const TIMEOUT_MS = 20_000;

const WebSocket = loadWs();

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
  await opened(ws, TIMEOUT_MS);

  const echoed = new Promise((resolve) => {
    onMessage = resolve;
  });
  ws.send('before shutdown');
  await withTimeout(echoed, TIMEOUT_MS, 'the echo');
  check(messages.length === 1 && messages[0].data === 'before shutdown', `echo: got ${JSON.stringify(messages)}`);
  console.log('ok: echo before the shutdown');
  console.log('ready');

  // Now the server gets SIGTERM; this client never closes by itself.
  const { code, reason } = await withTimeout(closed, TIMEOUT_MS, "the server's Close");
  check(code === 1001, `'close' event code ${code}, expected 1001`);
  check(reason === 'server shutting down', `'close' event reason ${JSON.stringify(reason)}`);
  // ws 8 keeps these flags: a Close frame came, and ours answered it (a
  // clean closing handshake rather than a dropped connection).
  check(ws._closeFrameReceived === true, 'no Close frame received from the server');
  check(ws._closeFrameSent === true, "the client did not answer the server's Close");
  check(messages.length === 1, `messages after the echo: ${JSON.stringify(messages.slice(1))}`);
  console.log(`ok: server closed with 1001 ${JSON.stringify(reason)}`);
}

await clientMain('interop/node_shutdown.mjs', run, 'node ws shutdown: all checks passed');
