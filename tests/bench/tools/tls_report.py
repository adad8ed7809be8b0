#!/usr/bin/env python3
"""tls_report.py RESULTS_DIR: the side-by-side table (markdown) of a run of
tests/bench/tls.sh, from meta.txt and steps.tsv.  Standard library only.

Per scenario and offered rate, for each server: the steps passed / run, the
median server CPU µs per operation over the passing steps (over all steps in
brackets when some failed), the median response time p50 / p99, and the
ratio Parley / Kamailio of the µs/op.  Then the generator's own CPU per
operation (tls_load.py on its one CPU: its ceiling is 1e6 / that) and the
load average seen at the end of the steps.
"""
import csv
import os
import statistics
import sys

SC = {
    "reg_l1": "REGISTER, one TLS connection (-t l1)",
    "call_l1": "call INVITE…BYE, one TLS connection (-t l1)",
    "reg_ln": "REGISTER, new TLS connection each (-t ln)",
}
NAMES = {"parley": "Parley", "kamailio": "Kamailio"}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}".replace(",", " ")


def main(d):
    rows = list(csv.DictReader(open(os.path.join(d, "steps.tsv")), delimiter="\t"))
    meta = open(os.path.join(d, "meta.txt")).read() if os.path.exists(os.path.join(d, "meta.txt")) else ""
    suts = [s for s in ("parley", "kamailio") if any(r["sut"] == s for r in rows)]
    out = ["# Parley vs Kamailio over TLS (tests/bench/tls.sh)", "", "```", meta.strip(), "```", ""]
    hdr = "| scenario | rate/s |"
    sep = "|---|---|"
    for s in suts:
        hdr += f" {NAMES[s]} pass | {NAMES[s]} µs/op | {NAMES[s]} p50 / p99 ms |"
        sep += "---|---|---|"
    if len(suts) == 2:
        hdr += " Parley/Kamailio µs/op |"
        sep += "---|"
    hdr += " generator µs/op | load avg |"
    sep += "---|---|"
    out += [hdr, sep]
    seen = []
    for r in rows:
        k = (r["scenario"], int(r["rate"]))
        if k not in seen:
            seen.append(k)
    for sc, rate in seen:
        line = f"| {SC.get(sc, sc)} | {rate} |"
        us = {}
        gens, loads = [], []
        for s in suts:
            st = [r for r in rows if r["sut"] == s and r["scenario"] == sc and int(r["rate"]) == rate]
            ok = [r for r in st if r["verdict"] == "PASS"]
            u_ok = med([num(r["us_per_op"]) for r in ok])
            u_all = med([num(r["us_per_op"]) for r in st])
            us[s] = u_ok
            cell = f"**{fmt(u_ok)}**" if u_ok is not None else "–"
            if len(ok) != len(st):
                cell += f" ({fmt(u_all)})"
            src = ok or st
            p50 = med([num(r["p50_ms"]) for r in src])
            p99 = med([num(r["p99_ms"]) for r in src])
            line += f" {len(ok)}/{len(st)} | {cell} | {fmt(p50, 1)} / {fmt(p99, 1)} |"
            gens += [num(r["gen_us_per_op"]) for r in st]
            loads += [num(r["load1"]) for r in st if num(r["load1"]) is not None]
        if len(suts) == 2:
            p, k = us.get("parley"), us.get("kamailio")
            line += f" **{p / k:.2f}** |" if p and k else " – |"
        g = med(gens)
        line += f" {fmt(g)} (ceiling ≈ {fmt(1e6 / g) if g else '–'}/s) |"
        line += f" {min(loads):.1f}–{max(loads):.1f} |" if loads else " – |"
        out.append(line)
    out += ["", "µs/op: the server's CPU time (scheduler time summed over its processes, from before the "
            "load starts to after it ends) divided by the successful operations; medians over the passing "
            "steps (all steps in brackets when some failed).  p50 / p99: REGISTER -> 200 or INVITE -> 200 as "
            "the generator saw it.", "", "## Steps", "",
            "| " + " | ".join(rows[0].keys()) + " |" if rows else "", "|" + "---|" * (len(rows[0]) if rows else 0)]
    for r in rows:
        out.append("| " + " | ".join(r.values()) + " |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
