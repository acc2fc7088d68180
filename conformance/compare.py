#!/usr/bin/env python3
"""Compare an Autobahn|Testsuite report with the checked-in expected results.

Usage: compare.py EXPECTED.json INDEX_JSON AGENT [--spec SPEC.json] [--update]

EXPECTED.json maps case id -> behavior ({"1.1.1": "OK", ...}). INDEX_JSON is
wstest's report index (reports/.../index.json). With --spec (the wstest spec
the run used), expected cases that the run excluded (or did not select) are
left out of the comparison, so a partial run (AUTOBAHN_CASES, AUTOBAHN_QUICK)
is checked against its part of the expected file only.

Prints every difference (changed behavior, case missing from the report, case
not in the expected file) and exits 1 if there is any, 0 if none, 2 if a file
cannot be read. --update rewrites EXPECTED.json from the report (for all cases
in the report; entries of cases the run did not select are kept).
"""
import argparse
import json
import re
import sys


def case_key(case_id):
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def pattern_re(patterns):
    # wstest's own pattern syntax: '*' is a wildcard, everything else literal.
    return [re.compile("^" + re.escape(p).replace("\\*", ".*") + "$") for p in patterns]


def selected(cid, cases_re, excl_re):
    return any(r.match(cid) for r in cases_re) and not any(r.match(cid) for r in excl_re)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("expected")
    ap.add_argument("index")
    ap.add_argument("agent")
    ap.add_argument("--spec")
    ap.add_argument("--update", action="store_true")
    a = ap.parse_args()
    try:
        with open(a.index) as f:
            report = json.load(f)
        actual = {c: r.get("behavior", "?") for c, r in report[a.agent].items()}
        spec = {"cases": ["*"], "exclude-cases": []}
        if a.spec:
            with open(a.spec) as f:
                spec = json.load(f)
    except (OSError, ValueError, KeyError) as e:
        print(f"cannot read report {a.index} (agent {a.agent}): {e!r}", file=sys.stderr)
        return 2
    try:
        with open(a.expected) as f:
            expected = json.load(f)
    except FileNotFoundError:
        if not a.update:
            print(f"no expected-results file {a.expected}", file=sys.stderr)
            return 2
        expected = {}
    except ValueError as e:
        print(f"cannot read {a.expected}: {e}", file=sys.stderr)
        return 2

    cases_re = pattern_re(spec.get("cases", ["*"]))
    excl_re = pattern_re(spec.get("exclude-cases", []))

    if a.update:
        merged = {c: b for c, b in expected.items() if not selected(c, cases_re, excl_re)}
        merged.update(actual)
        with open(a.expected, "w") as f:
            json.dump({c: merged[c] for c in sorted(merged, key=case_key)}, f, indent=1)
            f.write("\n")
        print(f"wrote {len(merged)} cases to {a.expected}")
        return 0

    want = {c: b for c, b in expected.items() if selected(c, cases_re, excl_re)}
    diffs = []
    for cid in sorted(set(want) | set(actual), key=case_key):
        w, g = want.get(cid), actual.get(cid)
        if w == g:
            continue
        if g is None:
            diffs.append(f"  {cid}: expected {w}, missing from the report")
        elif w is None:
            diffs.append(f"  {cid}: got {g}, not in {a.expected}")
        else:
            diffs.append(f"  {cid}: expected {w}, got {g}")
    if diffs:
        print(f"MISMATCH: {len(diffs)} case(s) differ from {a.expected}:")
        print("\n".join(diffs))
        return 1
    print(f"all {len(actual)} cases as expected ({a.expected})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
