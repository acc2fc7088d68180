// Interop client with permessage-deflate: Node `ws` against an echo server
// (silverback serve, compression on by default).
//
// Usage: node interop/node_deflate_client.mjs ws://127.0.0.1:PORT/ws
//
// `ws` is loaded from the checkout's .peers/node (scripts/install-peers.sh
// installs ws 8.18.3 there), or from SILVERBACK_NODE_PEERS/node_modules.
//
// On one connection, offering permessage-deflate (perMessageDeflate: true,
// the client default: "permessage-deflate; client_max_window_bits"):
//   * prints "negotiated: <Sec-WebSocket-Extensions of the response>" and
//     "extension: <ws.extensions> <agreed parameters as JSON>", and fails
//     unless permessage-deflate was agreed;
//   * echo of text and binary messages of 0, 125, 126, 65535, 65536 and
//     1048576 bytes, each highly compressible (JSON-like) and random
//     (incompressible); ws compresses those of 1024 bytes and more
//     (its threshold);
//   * echo of a small message compressed on request (compress: true) and a
//     large one sent uncompressed (compress: false);
//   * echo of a fragmented compressed message (fin: false ... fin: true);
//   * ws.close(1000): the 'close' event's code must be 1000.
// Prints "sent: N bytes in M messages" (payload bytes, before compression),
// then the success line. Exit status 0 on success; on failure, 1 with a
// "FAIL: ..." line on stderr. Every wait is bounded (TIMEOUT_MS).

import { Peer, SIZES, check, clientMain, jsonLike, loadWs, opened, randomBytes, randomText } from './common.mjs';

const TIMEOUT_MS = 30_000;

const WebSocket = loadWs();

async function run(url) {
  const ws = new WebSocket(url, { maxPayload: 0, handshakeTimeout: TIMEOUT_MS, perMessageDeflate: true });
  const peer = new Peer(ws, TIMEOUT_MS);
  let header;
  ws.once('upgrade', (res) => {
    header = res.headers['sec-websocket-extensions'];
  });
  await opened(ws, TIMEOUT_MS);
  let sentBytes = 0;
  let sentMessages = 0;
  await peer.guard(async () => {
    console.log(`negotiated: ${header}`);
    const pmd = ws._extensions['permessage-deflate'];
    console.log(`extension: ${ws.extensions} ${JSON.stringify(pmd ? pmd.params : null)}`);
    check(typeof header === 'string' && header.startsWith('permessage-deflate'), `no permessage-deflate in the response: ${header}`);
    check(ws.extensions === 'permessage-deflate', `extensions in use: ${JSON.stringify(ws.extensions)}`);

    let seed = 1;
    for (const n of SIZES) {
      const cases = [
        ['compressible text', Buffer.from(jsonLike(n)), false],
        ['random text', Buffer.from(randomText(n, seed++)), false],
        ['compressible binary', Buffer.from(jsonLike(n)), true],
        ['random binary', randomBytes(n, seed++), true],
      ];
      for (const [kind, data, binary] of cases) {
        await peer.send(binary ? data : data.toString(), { binary });
        sentBytes += n;
        sentMessages++;
        await peer.expectEcho(data, binary, `${kind} echo of ${n} bytes`);
        console.log(`ok: ${kind} echo, ${n} bytes`);
      }
    }

    const small = Buffer.from('{"small":"compressed on request"}');
    await peer.send(small.toString(), { binary: false, compress: true });
    await peer.expectEcho(small, false, 'small message compressed on request');
    const big = Buffer.from(jsonLike(50000));
    await peer.send(big, { binary: true, compress: false });
    await peer.expectEcho(big, true, 'large message sent uncompressed');
    sentBytes += small.length + big.length;
    sentMessages += 2;
    console.log('ok: compress: true / false per message');

    const fragments = [jsonLike(10000), '', jsonLike(70000), 'é'.repeat(1000)];
    await peer.sendFragments(fragments, { binary: false, compress: true });
    const joined = Buffer.from(fragments.join(''));
    sentBytes += joined.length;
    sentMessages++;
    await peer.expectEcho(joined, false, 'fragmented compressed text');
    console.log(`ok: fragmented compressed text (${fragments.length} fragments)`);
  });

  const { code } = await peer.close(1000, 'deflate interop done');
  check(code === 1000, `'close' event code ${code}, expected 1000`);
  console.log('ok: close 1000 echoed');
  console.log(`sent: ${sentBytes} bytes in ${sentMessages} messages`);
}

await clientMain('interop/node_deflate_client.mjs', run, 'node ws deflate interop: all checks passed');
