#!/usr/bin/env bash
# Checks that the MSRV the workspace declares (`rust-version` in Cargo.toml)
# is honest, with what is available offline: only the current stable and
# nightly toolchains are installed, so the declared Rust cannot itself be
# run. Two checks:
#
#   1. Our code (done by clippy, not here): clippy takes the MSRV from each
#      package's `rust-version` and its `incompatible_msrv` lint (on by
#      default; `-D warnings` in scripts/test.sh) rejects any standard
#      library function, method or type stabilised after it. scripts/test.sh
#      runs clippy with all features and with each feature alone.
#   2. Our dependencies (this script): every package in the dependency graph
#      for this host (Cargo.lock's versions) must declare a `rust-version` no
#      newer than ours; otherwise a user on our MSRV could not build us.
#
# Not caught: language features and syntax newer than the MSRV (e.g. array
# length inference `[T; _]` of 1.89), changes in type inference or in
# lints, and dependencies that need a newer Rust without declaring it. Only
# building with that toolchain catches those.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --filter-platform "$host" | python3 -c '
import json, sys

def version(s):
    parts = [int(x) for x in s.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"check-msrv: the workspace members should declare one rust-version, found {sorted(map(str, ours))}")
msrv = ours.pop()
deps = [p for p in meta["packages"] if p["id"] not in members]
newer = sorted((version(p["rust_version"]), p["name"], p["version"], p["rust_version"])
               for p in deps if p.get("rust_version") and version(p["rust_version"]) > version(msrv))
if newer:
    print(f"check-msrv: these dependencies need a Rust newer than our rust-version {msrv}:")
    for _, name, ver, rv in newer:
        print(f"  {name} {ver}: rust-version {rv}")
    print("pin older versions (cargo update -p NAME --precise VERSION) or raise rust-version")
    sys.exit(1)
declared = [version(p["rust_version"]) for p in deps if p.get("rust_version")]
top = ".".join(map(str, max(declared))) if declared else "none"
print(f"MSRV {msrv}: {len(deps)} dependencies, {len(declared)} declare a rust-version, the newest {top}: ok")
'
