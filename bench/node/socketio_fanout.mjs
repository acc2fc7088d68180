// Pub/sub fan-out on Socket.IO 4.8 with @socket.io/redis-adapter 8.3: the
// way Socket.IO users scale out. Run several of these on one Redis; a
// broadcast on any of them reaches the room's sockets on all of them.
//
// A client connects to `/socket.io/?EIO=4&transport=websocket&topic=NAME`
// (WebSocket only, no long-polling upgrade; topic `all` when absent) and is
// joined to the room NAME; every `m` event it emits is broadcast as `m` to
// that room, the sender included (`io.to(room).emit`).
//
// Usage: node bench/node/socketio_fanout.mjs 127.0.0.1:PORT redis://127.0.0.1:6379
// Packages (socket.io, @socket.io/redis-adapter, redis) from
// .peers/bench-node: scripts/bench-redis.sh --socketio installs them.

import http from 'node:http';
import { requirePeer, peersDir, listenAddr, exitOnSignals } from './common.mjs';

let Server, createAdapter, createClient;
try {
  ({ Server } = requirePeer('socket.io'));
  ({ createAdapter } = requirePeer('@socket.io/redis-adapter'));
  ({ createClient } = requirePeer('redis'));
} catch (e) {
  console.error(`cannot load socket.io/redis-adapter/redis from ${peersDir} (run scripts/bench-redis.sh --socketio --install): ${e.message}`);
  process.exit(1);
}

const { host, port } = listenAddr();
const redisUrl = process.argv[3] || 'redis://127.0.0.1:6379';

const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
pub.on('error', (e) => console.error(`redis pub: ${e.message}`));
sub.on('error', (e) => console.error(`redis sub: ${e.message}`));
await Promise.all([pub.connect(), sub.connect()]);

const server = http.createServer();
const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  maxHttpBufferSize: 16 * 1024 * 1024,
  serveClient: false,
  adapter: createAdapter(pub, sub),
});
io.on('connection', (socket) => {
  const q = socket.handshake.query.topic;
  const topics = [...new Set([].concat(q || []).filter((t) => t))];
  if (!topics.length) topics.push('all');
  socket.join(topics);
  // Each room's sockets once, on every node (the adapter PUBLISHes it).
  socket.on('m', (data) => io.to(topics).emit('m', data));
});
server.listen(port, host, () => console.error(`socketio-fanout listening on ${host}:${port} (redis ${redisUrl})`));
exitOnSignals();
