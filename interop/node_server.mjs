// Interop server: Node `ws` for silverback's client.
//
// Usage: node interop/node_server.mjs
//
// Listens on 127.0.0.1 (port chosen by the system) and prints
// `listening on ws://127.0.0.1:PORT` once ready. Then, for every connection:
//   * the path /private is refused with 401, a `WWW-Authenticate` header and
//     the body "go away" (from the HTTP server's 'upgrade' event, before ws
//     sees the request);
//   * subprotocol "b" is chosen when the client offers it (handleProtocols);
//   * if the request has an X-Test header, its value is sent as the first
//     (text) message;
//   * messages are echoed as they came (text or binary), except the text
//     "close-me", answered by ws.close(4001, 'bye from node');
//   * when the connection has closed, `closed code=N reason=R` is printed,
//     with the code and reason of the Close frame received from the client.
// Exits when its parent process goes away.
//
// `ws` is loaded from the checkout's peer install, .peers/node (see
// scripts/install-peers.sh), or from SILVERBACK_NODE_PEERS, by common.mjs.

import http from 'node:http';

import { announceListening, exitWhenParentDies, loadWs } from './common.mjs';

const { WebSocketServer } = loadWs();

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' });
  res.end('WebSocket only\n');
});

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.has('b') ? 'b' : false),
});

server.on('upgrade', (req, socket, head) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  if (pathname === '/private') {
    const body = 'go away';
    socket.end(
      'HTTP/1.1 401 Unauthorized\r\n' +
        'WWW-Authenticate: Basic realm="interop"\r\n' +
        'Content-Type: text/plain; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

wss.on('connection', (ws, req) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'close-me') {
      ws.close(4001, 'bye from node');
      return;
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => {
    console.log(`closed code=${code} reason=${reason.toString()}`);
  });
  ws.on('error', (e) => console.error(`connection error: ${e.message}`));
  const value = req.headers['x-test'];
  if (value !== undefined) ws.send(value);
});

server.listen(0, '127.0.0.1', () => announceListening(server.address().port));

exitWhenParentDies();
