#!/usr/bin/env python3
"""report.py RESULTS_DIR: the side-by-side table (markdown) of a run of
tests/bench/run.sh, from meta.txt, steps.tsv, best.tsv and memory.tsv.
Standard library only; it can be re-run on an old results directory.

Per scenario and server:
  max/s     median over the repeats of the highest passing rate
  at max    medians over the steps that were each repeat's maximum: sipp
            p50/p99 (ms, sipp's 1 ms clock), probe p50/p99 (us), server CPU
            (% of one core), us/op (server CPU time per call or transaction),
            PSS at the end of the step
  equal     the highest rate that every server passed: us/op and probe
            latency there (medians over all passing steps at that rate).  On a
            shared machine this is the steadier comparison.
Ratios are Parley / Kamailio.
"""
import csv
import os
import statistics
import sys

NAMES = {"parley": "Parley", "kamailio": "Kamailio", "sipp": "sipp↔sipp"}
SC_NAMES = {
    "register": "REGISTER (new users)",
    "register_auth": "REGISTER + digest (401, 200)",
    "call": "call (INVITE…BYE, proxied)",
    "message": "MESSAGE (proxied)",
    "null_call": "null call (sipp↔sipp)",
    "null_message": "null MESSAGE (sipp↔sipp)",
}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "–"
    if abs(v) >= 100 or v == int(v):
        s = f"{v:,.0f}".replace(",", " ")
    elif abs(v) >= 10:
        s = f"{v:.0f}"
    else:
        s = f"{v:.1f}"
    return s + unit


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def us_per_op(r):
    """server CPU time over the whole load / successful calls (run.sh); older
    runs: steady-state CPU % / achieved rate"""
    if num(r.get("us_per_op")) is not None:
        return num(r["us_per_op"])
    cpu, ach = num(r.get("sut_cpu_pct")), num(r.get("achieved"))
    if cpu is None or not ach:
        return None
    return cpu / 100 * 1e6 / ach


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def main(d):
    meta = {}
    if os.path.exists(f"{d}/meta.txt"):
        for line in open(f"{d}/meta.txt"):
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    steps = read_tsv(f"{d}/steps.tsv")
    bests = read_tsv(f"{d}/best.tsv")
    mem = read_tsv(f"{d}/memory.tsv")
    suts = [s for s in meta.get("suts", "parley kamailio").split()]
    scenarios = []
    for b in bests:
        if b["scenario"] not in scenarios:
            scenarios.append(b["scenario"])

    def best_list(sut, sc):
        return [b["best"] for b in bests if b["sut"] == sut and b["scenario"] == sc]

    def max_steps(sut, sc):
        sel = []
        for b in bests:
            if b["sut"] != sut or b["scenario"] != sc:
                continue
            rows = [r for r in steps if r["sut"] == sut and r["scenario"] == sc and r["repeat"] == b["repeat"]
                    and r["rate"] == b["best"] and r["verdict"] == "PASS"]
            if rows:
                sel.append(rows[-1])
        return sel

    out = []
    w = out.append
    w(f"# Parley vs Kamailio — {meta.get('date', '?')[:16].replace('T', ' ')}")
    w("")
    w(f"Machine: {meta.get('cpus', '?')} vCPU ({meta.get('cpu_model', '?')}), {meta.get('mem_gib', '?')} GiB, "
      f"kernel {meta.get('kernel', '?')}, shared with other sessions. "
      f"Parley {meta.get('parley_commit', '?')} (Release), Kamailio {meta.get('kamailio', '?')} "
      f"(1 UDP worker), {meta.get('sipp', 'sipp')}.")
    w(f"Settings: quick={meta.get('quick', '')}; pin={meta.get('pin', '')}; mem_users={meta.get('mem_users', '')}; "
      f"Parley data: {meta.get('parley_data_base', 'run dir')}; extra Parley flags: {meta.get('parley_args', '') or 'none'}.")
    w(f"Command: `{meta.get('command', 'tests/bench/run.sh')}`")
    w("")
    w("Ratio = Parley / Kamailio. Higher is better for max/s; lower is better for latency, µs/op and memory. "
      "µs/op (server CPU time per call or transaction) is the steadier figure on this shared machine; "
      "max/s and latency move with other people's load.")
    w("")
    w("| scenario | metric | " + " | ".join(NAMES.get(s, s) for s in suts) +
      (" | Parley/Kamailio |" if "parley" in suts and "kamailio" in suts else " |"))
    w("|---|---|" + "---|" * len(suts) + ("---|" if "parley" in suts and "kamailio" in suts else ""))
    both = "parley" in suts and "kamailio" in suts

    for sc in scenarios:
        row_suts = ["sipp"] if sc.startswith("null_") else suts
        vals = {}
        for s in row_suts:
            bl = best_list(s, sc)
            v = {"na": bool(bl) and all(x == "n/a" for x in bl), "bests": bl}
            v["max"] = med([num(x) for x in bl])
            sel = max_steps(s, sc)
            v["sipp50"] = med([num(r["sipp_p50_ms"]) for r in sel])
            v["sipp99"] = med([num(r["sipp_p99_ms"]) for r in sel])
            v["pr50"] = med([num(r["probe_p50_us"]) for r in sel])
            v["pr99"] = med([num(r["probe_p99_us"]) for r in sel])
            v["cpu"] = med([num(r.get("sut_cpu_load_pct", r["sut_cpu_pct"])) for r in sel])
            v["usop"] = med([us_per_op(r) for r in sel])
            v["pss"] = med([num(r["sut_pss_kib"]) / 1024 if num(r["sut_pss_kib"]) else None for r in sel])
            v["retr"] = med([num(r["retrans"]) for r in sel])
            v["fails"] = sum(1 for r in steps if r["sut"] == s and r["scenario"] == sc and r["verdict"] != "PASS")
            v["steps"] = sum(1 for r in steps if r["sut"] == s and r["scenario"] == sc)
            vals[s] = v
        # equal rate: the highest rate every server passed
        eq = None
        live = [s for s in row_suts if not vals[s]["na"]]
        if len(live) > 1:
            common = None
            for s in live:
                rates = {int(r["rate"]) for r in steps if r["sut"] == s and r["scenario"] == sc
                         and r["verdict"] == "PASS"}
                common = rates if common is None else common & rates
            eq = max(common) if common else None
        for s in live:
            rows = [r for r in steps if r["sut"] == s and r["scenario"] == sc and r["verdict"] == "PASS"
                    and eq is not None and int(r["rate"]) == eq]
            vals[s]["eq_usop"] = med([us_per_op(r) for r in rows])
            vals[s]["eq_cpu"] = med([num(r["sut_cpu_pct"]) for r in rows])
            vals[s]["eq_pr50"] = med([num(r["probe_p50_us"]) for r in rows])
            vals[s]["eq_pr99"] = med([num(r["probe_p99_us"]) for r in rows])
            vals[s]["eq_sipp99"] = med([num(r["sipp_p99_ms"]) for r in rows])

        def line(metric, cell, rat=None):
            cells = []
            for s in row_suts:
                cells.append("n/a" if vals[s]["na"] else cell(vals[s]))
            r = ""
            if both and not sc.startswith("null_"):
                r = " " + (rat() if rat and not vals["parley"]["na"] else "–") + " |"
            w(f"| {SC_NAMES.get(sc, sc)} | {metric} | " + " | ".join(cells) + " |" + r)

        P, K = vals.get("parley"), vals.get("kamailio")
        line("**max sustained /s** (per repeat)",
             lambda v: f"**{fmt(v['max'])}** ({', '.join(v['bests'])})",
             lambda: ratio(P["max"], K["max"]))
        line("sipp p50 / p99 at max (ms)",
             lambda v: f"{fmt(v['sipp50'])} / {fmt(v['sipp99'])}",
             lambda: f"{ratio(P['sipp50'], K['sipp50'])} / {ratio(P['sipp99'], K['sipp99'])}")
        if not sc.startswith("null_") and sc != "register_auth":
            line("probe p50 / p99 at max (µs)",
                 lambda v: f"{fmt(v['pr50'])} / {fmt(v['pr99'])}",
                 lambda: f"{ratio(P['pr50'], K['pr50'])} / {ratio(P['pr99'], K['pr99'])}")
        if not sc.startswith("null_"):
            line("server CPU during the load at max (% core)", lambda v: fmt(v["cpu"]), lambda: ratio(P["cpu"], K["cpu"]))
            line("**CPU µs/op at max**", lambda v: f"**{fmt(v['usop'])}**", lambda: ratio(P["usop"], K["usop"]))
            if eq is not None:
                line(f"**CPU µs/op at {eq}/s (equal rate)**", lambda v: f"**{fmt(v.get('eq_usop'))}**",
                     lambda: ratio(P.get("eq_usop"), K.get("eq_usop")))
                if sc != "register_auth":
                    line(f"probe p50 / p99 at {eq}/s (µs)",
                         lambda v: f"{fmt(v.get('eq_pr50'))} / {fmt(v.get('eq_pr99'))}",
                         lambda: f"{ratio(P.get('eq_pr50'), K.get('eq_pr50'))} / "
                                 f"{ratio(P.get('eq_pr99'), K.get('eq_pr99'))}")
            line("PSS at max, end of step (MiB)", lambda v: fmt(v["pss"]), lambda: ratio(P["pss"], K["pss"]))
        line("failed steps / steps", lambda v: f"{v['fails']} / {v['steps']}")

    if mem:
        w("")
        w(f"### Memory with registered contacts")
        w("")
        w("Distinct REGISTERs (user0 …) at a fixed rate to a fresh server; PSS summed over the server's "
          "processes. \"after load\" is read a few seconds after the last 200 OK, with the finished "
          "transactions still held (Kamailio's tm: ~5 s; Parley: Timer J, 32 s); \"settled\" once the "
          "server reports no live transactions, so that growth is the registrations' own.")
        w("")
        hdr = [NAMES.get(m["sut"], m["sut"]) for m in mem]
        w("| | " + " | ".join(hdr) + (" | Parley/Kamailio |" if both else " |"))
        w("|---|" + "---|" * len(mem) + ("---|" if both else ""))
        mv = {}
        for m in mem:
            b, a, z, n = num(m["pss_before_kib"]), num(m["pss_after_kib"]), num(m["pss_settled_kib"]), num(m["ok"])
            mv[m["sut"]] = {
                "ok": f"{m['ok']} of {m['users']} (server: {m['server_count']})",
                "before": b / 1024 if b is not None else None,
                "after": a / 1024 if a is not None else None,
                "settled": z / 1024 if z is not None else None,
                "settle_s": m["settle_s"],
                "delta": (z - b) / 1024 if z is not None and b is not None else None,
                "per": (z - b) * 1024 / n if z is not None and b is not None and n else None,
                "per_load": (a - b) * 1024 / n if a is not None and b is not None and n else None,
                "disk": num(m["data_dir_kib"]),
            }

        def mline(label, f, key=None):
            cells = [f(mv[m["sut"]]) for m in mem]
            r = ""
            if both:
                r = " " + (ratio(mv.get("parley", {}).get(key), mv.get("kamailio", {}).get(key)) if key else "–") + " |"
            w(f"| {label} | " + " | ".join(cells) + " |" + r)

        mline("registered (200 OK) / count on the server", lambda v: v["ok"])
        mline("PSS before (MiB)", lambda v: fmt(v["before"]), "before")
        mline("PSS after load (MiB)", lambda v: fmt(v["after"]), "after")
        mline("bytes per contact after load (incl. transactions)", lambda v: fmt(v["per_load"]), "per_load")
        mline("PSS settled (MiB) (s after the load)", lambda v: f"{fmt(v['settled'])} ({v['settle_s']} s)", "settled")
        mline("**PSS growth, settled (MiB)**", lambda v: f"**{fmt(v['delta'])}**", "delta")
        mline("**bytes per contact, settled**", lambda v: f"**{fmt(v['per'])}**", "per")
        mline("store on disk (MiB)",
              lambda v: fmt(v["disk"] / 1024) if v["disk"] is not None else "– (memory only)")

    # every step, compact
    w("")
    w("### All steps")
    w("")
    w("Server CPU: % of one core over the whole load (steady-state mid-step figure in brackets); run delay: "
      "% of the time the server was runnable but waited for a CPU (other tenants); cpu0 / cpu1: all tasks.")
    w("")
    w("| server | scenario | rep | rate | verdict | achieved | retrans | sipp p99 ms | probe p50/p99 µs | "
      "server CPU % | µs/op | run delay % | cpu0 / cpu1 used % | UDP drops srv/gen | server exit | server counters |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in steps:
        w(f"| {r['sut']} | {r['scenario']} | {r['repeat']} | {r['rate']} | {r['verdict']} | {r['achieved']} | "
          f"{r['retrans']} | {r['sipp_p99_ms']} | {r['probe_p50_us']} / {r['probe_p99_us']} | "
          f"{r.get('sut_cpu_load_pct', '')} ({r['sut_cpu_pct']}) | "
          f"{fmt(us_per_op(r))} | {r['sut_wait_pct']} | {r['cpu0_used_pct']} / {r['cpu1_used_pct']} | {r['sut_udp_drops']} / "
          f"{r['gen_udp_drops']} | {r['sut_exit']} | {r['sut_stats']} |")
    errs = sorted(os.listdir(f"{d}/errors")) if os.path.isdir(f"{d}/errors") else []
    if errs:
        w("")
        w("Error excerpts of the failed steps (sipp error logs, server log): " +
          ", ".join(f"`errors/{e}`" for e in errs))
    w("")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
