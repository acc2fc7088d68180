// Interop client: Node `ws` against silverback's echo server.
//
// Usage: node interop/node_client.mjs ws://127.0.0.1:PORT/ws
//
// Where `ws` comes from: the checkout's own peer install, .peers/node
// (scripts/install-peers.sh puts ws 8.18.3 there), found relative to
// common.mjs, so the script works from any working directory and needs
// neither NODE_PATH nor a package.json next to it. To use another install,
// set SILVERBACK_NODE_PEERS to a directory whose node_modules holds `ws`.
//
// Checks, in order, on one connection:
//   * echo of text and binary messages of 0, 125, 126, 65535, 65536 and
//     1048576 bytes (the frame length encodings' boundaries);
//   * echo of fragmented messages (send(chunk, {fin: false}) ... {fin: true}):
//     text, text with a code point split across frames, binary; the echo
//     must be the joined message;
//   * a ping is answered (a 'pong' with the same payload);
//   * ws.close(4000, 'interop done'): the 'close' event's code must be 4000.
// Exit status 0 on success; on failure, 1 with a "FAIL: ..." line on stderr.
// Every wait is bounded (TIMEOUT_MS).

import { Peer, SIZES, binaryPayload, check, clientMain, loadWs, opened, textPayload, withTimeout } from './common.mjs';

const TIMEOUT_MS = 20_000;

const WebSocket = loadWs();

async function run(url) {
  // maxPayload: 0 means no limit (the default, 100 MiB, would do as well).
  const ws = new WebSocket(url, { maxPayload: 0, handshakeTimeout: TIMEOUT_MS });
  const peer = new Peer(ws, TIMEOUT_MS);
  await opened(ws, TIMEOUT_MS);

  await peer.guard(async () => {
    for (const n of SIZES) {
      const msg = textPayload(n);
      await peer.send(msg, { binary: false });
      await peer.expectEcho(Buffer.from(msg), false, `text echo of ${n} bytes`);
      console.log(`ok: text echo, ${n} bytes`);
    }
    for (const n of SIZES) {
      const msg = binaryPayload(n);
      await peer.send(msg, { binary: true });
      await peer.expectEcho(msg, true, `binary echo of ${n} bytes`);
      console.log(`ok: binary echo, ${n} bytes`);
    }

    const fragments = ['Hello, ', '', 'fragmented ', 'world ', 'é'.repeat(100)];
    await peer.sendFragments(fragments, { binary: false });
    await peer.expectEcho(Buffer.from(fragments.join('')), false, 'fragmented text');
    console.log(`ok: fragmented text (${fragments.length} fragments)`);

    // '€' is E2 82 AC: split one code point over three frames.
    const utf8 = Buffer.from('price: 5€, done');
    const cut = utf8.indexOf(0xe2);
    const split = [utf8.subarray(0, cut + 1), utf8.subarray(cut + 1, cut + 2), utf8.subarray(cut + 2)];
    await peer.sendFragments(split, { binary: false });
    await peer.expectEcho(utf8, false, 'fragmented text split inside a code point');
    console.log('ok: fragmented text, code point split across frames');

    const chunks = [binaryPayload(1000), Buffer.alloc(0), binaryPayload(70000), Buffer.from([0, 255])];
    await peer.sendFragments(chunks, { binary: true });
    await peer.expectEcho(Buffer.concat(chunks), true, 'fragmented binary');
    console.log(`ok: fragmented binary (${chunks.length} fragments)`);

    const pingData = Buffer.from('silverback?');
    const pong = withTimeout(new Promise((resolve) => ws.once('pong', resolve)), TIMEOUT_MS, 'pong');
    ws.ping(pingData);
    const pongData = await pong;
    check(pongData.equals(pingData), `pong payload ${JSON.stringify(pongData.toString())}, expected the ping's`);
    console.log('ok: ping answered');

    await peer.send('after ping', { binary: false });
    await peer.expectEcho(Buffer.from('after ping'), false, 'echo after ping');
  });

  const { code, reason } = await peer.close(4000, 'interop done');
  check(code === 4000, `'close' event code ${code}, expected 4000 echoed`);
  console.log(`ok: close 4000 echoed (reason ${JSON.stringify(reason)})`);
}

await clientMain('interop/node_client.mjs', run, 'node ws interop: all checks passed');
