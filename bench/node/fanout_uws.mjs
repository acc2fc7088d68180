// Pub/sub fan-out server on uWebSockets.js (the prebuilt addon of the npm
// package @trufflesuite/uws-js-unofficial 20.30.0-unofficial.x): its own
// topics, `ws.subscribe` on open and `app.publish` per message (the
// app-level publish includes the sender).
//
// The addon is required directly (common.mjs, loadUws): never the
// package's pure-JS fallback.
//
// Protocol: as fanout_ws.mjs (`silverback serve --pubsub`'s).
//
// Usage: node bench/node/fanout_uws.mjs 127.0.0.1:PORT

import { loadUws, listenAddr, topicsOf, MAX_PAYLOAD, exitOnSignals } from './common.mjs';

const uWS = loadUws();
const { host, port } = listenAddr();
const app = uWS.App();
app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: MAX_PAYLOAD,
  // Bytes queued per socket before uWS drops what is published to it.
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
  upgrade: (res, req, context) => {
    res.upgrade(
      { topics: topicsOf(req.getQuery()) },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    for (const t of ws.getUserData().topics) ws.subscribe(t);
  },
  message: (ws, message, isBinary) => {
    for (const t of ws.getUserData().topics) app.publish(t, message, isBinary);
  },
});
app.listen(host, port, (token) => {
  if (!token) {
    console.error(`fanout-uws: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  console.error(`fanout-uws listening on ${host}:${port}`);
});
exitOnSignals();
