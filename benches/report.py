#!/usr/bin/env python3
"""Prints the figures of the last `cargo bench` runs as the Markdown tables of BENCHMARKS.md.

Reads criterion's `target/criterion/<group>/<bench>/new/estimates.json` (or the directory
given as the first argument) and prints, per group, the median with criterion's 95 %
confidence interval of the median, throughput where the bench declares one, and the ratios
each bench is judged by.

    python3 benches/report.py [target/criterion]
"""

import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")


def load(group, bench):
    base = os.path.join(ROOT, group, bench, "new")
    try:
        with open(os.path.join(base, "estimates.json")) as f:
            est = json.load(f)
        with open(os.path.join(base, "benchmark.json")) as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    med = est["median"]
    ci = med["confidence_interval"]
    elements = (meta.get("throughput") or {}).get("Elements")
    return {
        "median": med["point_estimate"],
        "lo": ci["lower_bound"],
        "hi": ci["upper_bound"],
        "elements": elements,
    }


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def table(group, benches, extra=None):
    print(f"\n#### `{group}`\n")
    head = "| bench | median | 95 % CI of the median |"
    rule = "|---|---:|---|"
    if extra:
        head += f" {extra[0]} |"
        rule += "---:|"
    print(head)
    print(rule)
    found = {}
    for bench in benches:
        r = load(group, bench)
        if r is None:
            print(f"| `{bench}` | (not run) | |" + (" |" if extra else ""))
            continue
        found[bench] = r
        row = f"| `{bench}` | {fmt(r['median'])} | {fmt(r['lo'])} – {fmt(r['hi'])} |"
        if extra:
            row += f" {extra[1](bench, r)} |"
        print(row)
    return found


def per_second(bench, r):
    n = r["elements"] or 1
    return f"{n / (r['median'] / 1e9):,.0f} /s"


def main():
    if not os.path.isdir(ROOT):
        sys.exit(f"no criterion results under {ROOT}: run cargo bench first")

    t = table("authenticated_request",
              ["a_bare_router", "b_jit_session_cache_hit", "c_axum_login_tower_sessions"])
    if len(t) == 3:
        bare = t["a_bare_router"]["median"]
        ours = t["b_jit_session_cache_hit"]["median"] - bare
        peer = t["c_axum_login_tower_sessions"]["median"] - bare
        ratio = ours / peer
        print(f"\noverhead over the bare router: ours {fmt(ours)}, peer {fmt(peer)}; "
              f"ours/peer = **{ratio:.2f}** (target ≤ 0.50: "
              f"{'met' if ratio <= 0.5 else 'missed'})")

    t = table("cached_users", ["10", "10000", "100000", "1000000"])
    if t:
        base = t.get("10", {}).get("median")
        if base:
            print("\nrelative to 10 users: " + ", ".join(
                f"{k}: {v['median'] / base:.2f}×" for k, v in t.items()))

    t = table("callback_returning_user",
              ["ours_validate_and_provision", "raw_jsonwebtoken_decode", "raw_rsa_verify",
               "breakdown_validate_only", "breakdown_provision_only"])
    if "ours_validate_and_provision" in t:
        ours = t["ours_validate_and_provision"]["median"]
        for raw in ["raw_jsonwebtoken_decode", "raw_rsa_verify"]:
            if raw in t:
                ratio = ours / t[raw]["median"]
                print(f"\nours / {raw} = **{ratio:.2f}** (target ≤ 1.30: "
                      f"{'met' if ratio <= 1.3 else 'missed'})")

    t = table("bearer", ["bare_router", "repeated_token", "first_sight_token"])
    if "repeated_token" in t:
        rep = t["repeated_token"]["median"]
        line = f"\nrepeated token: {fmt(rep)} per request (target ≤ 2 µs: " \
               f"{'met' if rep <= 2000 else 'missed'})"
        if "bare_router" in t:
            line += f"; layer overhead over the bare router {fmt(rep - t['bare_router']['median'])}"
        if "first_sight_token" in t:
            line += f"; first sight / repeated = {t['first_sight_token']['median'] / rep:.0f}×"
        print(line)

    table("bearer_thundering_herd", ["1000_tokens_one_new_subject"])

    table("first_login",
          ["sqlite_sequential", "sqlite_16_concurrent", "sqlite_16_concurrent_serialized",
           "memory_sequential", "postgres_sequential", "postgres_16_concurrent"],
          ("logins/s", per_second))

    table("mapping",
          ["explain_50_claims_200_groups_20_rules", "explain_and_serialize_trace",
           "flat_claims_no_groups"])

    table("thundering_herd",
          ["memory_1000_same_identity", "sqlite_1000_same_identity",
           "postgres_1000_same_identity"])

    table("session_hit_steps",
          ["cookie_open_as_in_src", "cookie_open_prebuilt_cipher", "session_data_serde_json",
           "user_cache_try_get_with_hit", "user_cache_get_hit", "opened_session_cache_get_hit",
           "revoked_sessions_contains_key"])

    table("bearer_hit_steps", ["sha256_of_token", "token_cache_get_hit", "siphash13_of_token"])


main()
