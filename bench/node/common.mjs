// Shared parts of the Node benchmark peers (fanout_*.mjs, echo_uws.mjs,
// socketio_fanout.mjs): where their packages come from, the uWebSockets.js
// addon, the command line, and the topics of a request.
//
// Packages: .peers/bench-node at the top of the checkout, installed by
// scripts/bench.sh and scripts/bench-fanout.sh (scripts/bench-node-lib.sh:
// ws, and @trufflesuite/uws-js-unofficial for the uWebSockets.js addon).
// Set SILVERBACK_BENCH_NODE to use another directory whose node_modules
// holds them.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const peersDir =
  process.env.SILVERBACK_BENCH_NODE || path.resolve(here, '..', '..', '.peers', 'bench-node');
export const requirePeer = createRequire(path.join(peersDir, 'package.json'));

// uWebSockets.js: the prebuilt addon of @trufflesuite/uws-js-unofficial
// 20.30.0-unofficial.x for this Node's ABI (binaries/uws_linux_x64_115.node
// on Node 20), required directly: the package's index falls back to a
// pure-JS implementation when the addon fails to load, which must never be
// what is measured. SILVERBACK_UWS_ADDON overrides the path (the scripts
// set it to the addon they checked). Exits if it does not load.
export function loadUws() {
  const addon =
    process.env.SILVERBACK_UWS_ADDON ||
    path.join(
      peersDir,
      'node_modules',
      '@trufflesuite',
      'uws-js-unofficial',
      'binaries',
      `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
    );
  try {
    return requirePeer(addon);
  } catch (e) {
    console.error(`cannot load the uWebSockets.js addon ${addon} (run scripts/bench-fanout.sh --install): ${e.message}`);
    process.exit(1);
  }
}

// `node fanout_X.mjs 127.0.0.1:PORT` (echo_uws.mjs too)
export function listenAddr() {
  const arg = process.argv[2] || '127.0.0.1:9001';
  const i = arg.lastIndexOf(':');
  return { host: arg.slice(0, i), port: Number(arg.slice(i + 1)) };
}

// The `topic` parameters of a query string (without '?'); `all` if none.
export function topicsOf(query) {
  const topics = [...new Set(new URLSearchParams(query || '').getAll('topic').filter((t) => t))];
  return topics.length ? topics : ['all'];
}

// Largest message accepted: the bench sends small ones.
export const MAX_PAYLOAD = 16 * 1024 * 1024;

export function exitOnSignals() {
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
}
