#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time.
#
#   scripts/fuzz.sh [--ci] [SECONDS]
#
# Each target runs SECONDS seconds (default 300; --ci: 20), starting from
# the seeds checked in under fuzz/corpus/<target>/. Prints per target the
# executions and coverage (libFuzzer's last stats line); exits non-zero if
# any target crashed, timed out or ran out of memory, naming the reproducer
# (fuzz/artifacts/<target>/...). Replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# (from fuzz/, with the same -s option as below).
#
# The checked-in seeds are never written to: libFuzzer adds the inputs it
# finds to the FIRST corpus directory only, so a scratch directory
# (fuzz/corpus-work/<target>/, git-ignored, kept between runs) goes first
# and the seed directory second.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

secs=
ci=0
while (($#)); do
    case $1 in
    --ci) ci=1 ;;
    [0-9]*) secs=$1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--ci] [SECONDS]" >&2
        exit 2
        ;;
    esac
    shift
done
# An explicit SECONDS wins over --ci's 20.
[[ -n $secs ]] || secs=$((ci ? 20 : 300))
[[ $secs =~ ^[0-9]+$ ]] || {
    echo "SECONDS must be a number" >&2
    exit 2
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer=address,
# -Cpasses=sancov-module and friends). Only a stable toolchain is available
# here; RUSTC_BOOTSTRAP=1 lets stable rustc accept -Z flags, as nightly
# would. The same compiler, so no other difference.
export RUSTC_BOOTSTRAP=1

# AddressSanitizer (cargo-fuzz's default) works with stable rustc under
# RUSTC_BOOTSTRAP; fall back to no sanitizer if it ever fails to build (the
# code under test has no unsafe code: the fuzz assertions and Rust's own
# checks, with debug assertions on, still hold).
sanitizer=(-s address)
step() { printf '\n==> %s\n' "$*"; }

step "cargo fuzz build (all targets)"
if ! cargo fuzz build "${sanitizer[@]}"; then
    echo "fuzz.sh: the AddressSanitizer build failed; building without a sanitizer" >&2
    sanitizer=(-s none)
    cargo fuzz build "${sanitizer[@]}"
fi

mapfile -t targets < <(cargo fuzz list)
failed=()
summary=()
mkdir -p artifacts corpus-work
for t in "${targets[@]}"; do
    step "fuzz $t (${secs}s)"
    mkdir -p "corpus-work/$t" "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    status=0
    # -timeout: an input taking over 10 s is a hang (a failure);
    # -rss_limit_mb: bounded memory (the targets use at most a few MiB).
    cargo fuzz run "${sanitizer[@]}" "$t" "corpus-work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    stats=$(grep -E '^#[0-9]+[[:space:]]+(DONE|REDUCE|NEW|pulse|INITED)' "$log" | tail -n 1 || true)
    # "#123 DONE cov: 4 ft: 5 corp: ..." -> the execution count.
    execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$stats")
    echo "$stats"
    if ((status != 0)); then
        # The panic message or sanitizer/libFuzzer verdict, then the input.
        grep -E -A2 'panicked at|^==[0-9]+==.*ERROR|^SUMMARY:' "$log" | head -n 20 || true
        repro=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
        # Relative to fuzz/ unless cargo-fuzz made it absolute.
        [[ -z $repro || $repro == /* ]] || repro="fuzz/${repro#./}"
        echo "fuzz.sh: $t FAILED (exit $status); reproducer: ${repro:-none written, log follows}"
        [[ -n $repro ]] || tail -n 40 "$log"
        failed+=("$t")
        summary+=("$(printf '%-20s FAILED  %s' "$t" "${repro:-?}")")
    else
        cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$stats" || true)
        summary+=("$(printf '%-20s ok  %12s execs  %s' "$t" "${execs:-?}" "$cov")")
    fi
    rm -f "$log"
done

step "fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "fuzz.sh: crashes in: ${failed[*]} (reproducers under fuzz/artifacts/)" >&2
    exit 1
fi
