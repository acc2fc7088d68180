// Shared parts of the Node fan-out peers (fanout_*.mjs): where their
// packages come from, the command line, and the topics of a request.
//
// Packages: .peers/bench-node at the top of the checkout, installed by
// scripts/bench-fanout.sh (ws, and @trufflesuite/uws-js-unofficial for the
// uWebSockets.js addon). Set SILVERBACK_BENCH_NODE to use another directory
// whose node_modules holds them.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const peersDir =
  process.env.SILVERBACK_BENCH_NODE || path.resolve(here, '..', '..', '.peers', 'bench-node');
export const requirePeer = createRequire(path.join(peersDir, 'package.json'));

// `node fanout_X.mjs 127.0.0.1:PORT`
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
