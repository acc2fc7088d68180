// Interop echo server with permessage-deflate: Node `ws`, for silverback's
// client (Dialer with compression) to talk to.
//
// Usage: node interop/node_deflate_server.mjs [PORT]
//
// Listens on 127.0.0.1:PORT (default 0: a free port) and prints
// "listening on ws://127.0.0.1:PORT" once ready. perMessageDeflate: true
// (ws's defaults: context takeover unless the client asks otherwise, the
// window sizes the client offers, messages of 1024 bytes and more
// compressed). For each connection it prints "connection: negotiated
// <Sec-WebSocket-Extensions of its response>", then echoes every message
// (text as text, binary as binary) until the client closes. No message size
// limit. Exits by itself after LIFETIME_MS (the tests kill it long before).
//
// `ws` is loaded from the checkout's .peers/node (scripts/install-peers.sh
// installs ws 8.18.3 there), or from SILVERBACK_NODE_PEERS/node_modules.

import { announceListening, exitAfter, loadWs } from './common.mjs';

const LIFETIME_MS = 300_000;

const { WebSocketServer } = loadWs();

const port = process.argv[2] ? Number(process.argv[2]) : 0;
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: true, maxPayload: 0 });
const negotiated = new WeakMap();
wss.on('headers', (headers, req) => {
  const ext = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'));
  negotiated.set(req, ext ? ext.slice(ext.indexOf(':') + 1).trim() : undefined);
});
wss.on('connection', (ws, req) => {
  console.log(`connection: negotiated ${negotiated.get(req)}`);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', (e) => console.error(`connection error: ${e.message}`));
});
wss.on('listening', () => announceListening(wss.address().port));
wss.on('error', (e) => {
  console.error(`FAIL: ${e.message}`);
  process.exit(1);
});
exitAfter(LIFETIME_MS);
