// Pub/sub fan-out server on Node `ws`: a Set of sockets per topic, and a
// loop over the topic's sockets for each message, as a user writes it.
//
// The raw protocol of `silverback serve --pubsub`: a client connecting to
// `/ws?topic=NAME` (topic `all` when absent; several `topic` parameters
// allowed) is subscribed; every data message it sends is published
// unchanged (same opcode and bytes) to every subscriber of its topics, the
// sender included.
//
// Usage: node bench/node/fanout_ws.mjs 127.0.0.1:PORT

import { requirePeer, peersDir, listenAddr, topicsOf, MAX_PAYLOAD, exitOnSignals } from './common.mjs';

let WebSocketServer;
try {
  ({ WebSocketServer } = requirePeer('ws'));
} catch (e) {
  console.error(`cannot load ws from ${peersDir} (run scripts/bench-fanout.sh --install): ${e.message}`);
  process.exit(1);
}

const { host, port } = listenAddr();
const rooms = new Map(); // topic -> Set<WebSocket>

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
wss.on('connection', (ws, req) => {
  const q = req.url.indexOf('?');
  const topics = topicsOf(q < 0 ? '' : req.url.slice(q + 1));
  for (const t of topics) {
    let room = rooms.get(t);
    if (!room) rooms.set(t, (room = new Set()));
    room.add(ws);
  }
  ws.on('message', (data, isBinary) => {
    for (const t of topics) {
      for (const peer of rooms.get(t)) {
        if (peer.readyState === 1) peer.send(data, { binary: isBinary });
      }
    }
  });
  ws.on('close', () => {
    for (const t of topics) {
      const room = rooms.get(t);
      room.delete(ws);
      if (room.size === 0) rooms.delete(t);
    }
  });
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`fanout-ws listening on ${host}:${port}`));
exitOnSignals();
