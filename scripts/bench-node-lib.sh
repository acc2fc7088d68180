# shellcheck shell=bash
# Shared by the benchmark scripts with Node peers (sourced, not run):
# scripts/bench.sh (uWebSockets.js echo), scripts/bench-fanout.sh (ws and
# uWebSockets.js fan-out), scripts/bench-redis.sh (Socket.IO).
#
# The npm packages are pinned here and installed into BENCH_NODE
# (.peers/bench-node, or SILVERBACK_BENCH_NODE; bench/node/common.mjs reads
# the same variable, exported here). Needs ROOT (the checkout) and die().

NODE_WS_VERSION=8.18.3
UWS_PACKAGE=@trufflesuite/uws-js-unofficial
UWS_VERSION=20.30.0-unofficial.0
BENCH_NODE=${SILVERBACK_BENCH_NODE:-$ROOT/.peers/bench-node}
export SILVERBACK_BENCH_NODE=$BENCH_NODE

# The installed version of an npm package in BENCH_NODE (empty if none).
node_peer_version() { # package
    node -p "require('$BENCH_NODE/node_modules/$1/package.json').version" 2>/dev/null || true
}

# npm-installs into BENCH_NODE those of the pinned NAME@VERSION specs whose
# installed version differs (all of them in one npm run).
npm_install_pinned() { # name@version...
    command -v node >/dev/null || die "node is needed for the Node peers"
    local spec missing=()
    for spec in "$@"; do
        # The version follows the last '@' (scoped names start with one).
        [ "$(node_peer_version "${spec%@*}")" = "${spec##*@}" ] || missing+=("$spec")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    command -v npm >/dev/null || die "npm is needed to install the Node peers"
    echo "==> npm install ${missing[*]} into ${BENCH_NODE#"$ROOT"/}"
    mkdir -p "$BENCH_NODE"
    (cd "$BENCH_NODE" && { [ -f package.json ] || echo '{"name":"silverback-bench-peers","private":true}' >package.json; } \
        && npm install --silent --no-audit --no-fund --save-exact "${missing[@]}")
}

# ws and uWebSockets.js, installed when missing; UWS_ADDON becomes the
# prebuilt addon for this Node's ABI (binaries/uws_linux_x64_115.node for
# Node 20), checked to load. The servers load it directly (through
# SILVERBACK_UWS_ADDON): the package's index would fall back to a pure-JS
# implementation if it failed, which must never be what is measured.
UWS_ADDON=
install_node_peers() {
    npm_install_pinned "ws@$NODE_WS_VERSION" "$UWS_PACKAGE@$UWS_VERSION"
    UWS_ADDON=$BENCH_NODE/node_modules/$UWS_PACKAGE/binaries/uws_$(node -p 'process.platform + "_" + process.arch + "_" + process.versions.modules').node
    [ -f "$UWS_ADDON" ] || die "no uWebSockets.js addon for this Node ($(node --version)): $UWS_ADDON"
    node -e "const u = require('$UWS_ADDON'); if (typeof u.App !== 'function') process.exit(1)" \
        || die "the uWebSockets.js addon does not load: $UWS_ADDON"
    echo "==> node $(node --version), ws $NODE_WS_VERSION, uWebSockets.js addon ${UWS_ADDON#"$ROOT"/} loads"
}

# For the reports: NODE_VERSION, WS_VERSION, UWS_PKG_VERSION ("?" if absent).
node_peer_versions() {
    NODE_VERSION=$(node --version 2>/dev/null || echo "?")
    WS_VERSION=$(node_peer_version ws)
    UWS_PKG_VERSION=$(node_peer_version "$UWS_PACKAGE")
    WS_VERSION=${WS_VERSION:-?} UWS_PKG_VERSION=${UWS_PKG_VERSION:-?}
    export NODE_VERSION WS_VERSION UWS_PKG_VERSION
}
