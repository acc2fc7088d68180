// Echo server on uWebSockets.js (the prebuilt addon of the npm package
// @trufflesuite/uws-js-unofficial 20.30.0-unofficial.x, loaded directly:
// common.mjs, loadUws), written as uWebSockets.js's own example writes one
// (examples/WebSockets.js): `ws.send(message, isBinary)` in the `message`
// handler, every message sent back as it came, same opcode.
//
// Settings like the Rust peers' of scripts/bench.sh: no compression,
// messages up to 64 MiB (tungstenite's, fastwebsockets' and `silverback
// serve`'s default), no idle timeout (uWS's default closes a connection
// silent for 120 s; the idle scenario holds silent ones). maxBackpressure is raised from its
// 64 KiB default: with more than that queued on a socket, uWS drops a send
// (returns 2) instead of queueing it, and the other servers never drop an
// echo. uWS's own TCP layer (uSockets) sets TCP_NODELAY on every accepted
// socket. Any path is accepted (the bench connects to /ws).
//
// Node runs it on one thread (plus V8's and libuv's helper threads, pinned
// to the same core by scripts/bench.sh's taskset); exits on SIGINT/SIGTERM.
//
// Usage: node bench/node/echo_uws.mjs 127.0.0.1:PORT

import { loadUws, listenAddr, exitOnSignals } from './common.mjs';

const uWS = loadUws();
const { host, port } = listenAddr();
uWS
  .App()
  .ws('/*', {
    compression: uWS.DISABLED,
    maxPayloadLength: 64 * 1024 * 1024,
    maxBackpressure: 256 * 1024 * 1024,
    idleTimeout: 0,
    message: (ws, message, isBinary) => ws.send(message, isBinary),
  })
  .listen(host, port, (token) => {
    if (!token) {
      console.error(`echo-uws: cannot listen on ${host}:${port}`);
      process.exit(1);
    }
    console.error(`echo-uws listening on ${host}:${port}`);
  });
exitOnSignals();
