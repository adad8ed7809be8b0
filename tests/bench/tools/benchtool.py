#!/usr/bin/env python3
"""Measurement helpers for tests/bench/run.sh (Parley against Kamailio).
Standard library only.  Adapted from the peer benchmark's tool (shared/bench):
portsbusy, parleymetrics and kamstats are new.

  benchtool.py tree ROOTPID...            all PIDs in the process trees (one per line)
  benchtool.py snap OUT.json NAME=ROOTPID[,ROOTPID] ...
                                          CPU ticks of every process in each named
                                          group (trees), plus /proc/stat per CPU
  benchtool.py cpu A.json B.json          CPU used between two snaps: per group in %
                                          of one core, its busiest process, and per
                                          CPU busy % (all tenants of the machine),
                                          its irq+softirq % and hypervisor steal %
                                          (tick-sampled /proc/stat: unreliable here),
                                          cpuN_used_pct (exact, root cpuacct cgroup),
                                          and NAME_wait_pct: time the group's
                                          processes waited for a CPU (run delay)
  benchtool.py mem ROOTPID...             RSS and PSS (smaps_rollup) summed over the
                                          process trees, in KiB, and process count
  benchtool.py sipp STAT.csv [RTT.csv]    final counters of a sipp -trace_stat file
                                          and p50/p99 of response time 1 (ms) from a
                                          -trace_rtt file
  benchtool.py udpdrops PORT...           packets dropped by each UDP socket bound to
                                          127.0.0.1:PORT (/proc/net/udp "drops": full
                                          receive buffer), as port=drops
  benchtool.py median V...                median of numbers (ignores non-numbers)
  benchtool.py portsbusy PORT...          the ports that cannot be bound on 127.0.0.1
                                          (UDP, and TCP for 15098 and the ports in
                                          $BENCH_TCP_PORTS), space separated
  benchtool.py parleymetrics HOST:PORT    failure counters from Parley's admin
                                          /metrics, as key=value
  benchtool.py kamstats                   the same from `kamcmd stats.get_statistics
                                          all` read on stdin
  benchtool.py errsummary FILE            a sipp error log summed up: events by kind
                                          (numbers and names folded), then the first few
"""
import csv
import json
import os
import re
import socket
import statistics
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def tree(roots):
    seen, stack = [], [int(r) for r in roots]
    while stack:
        p = stack.pop()
        if p in seen or not os.path.exists(f"/proc/{p}"):
            continue
        seen.append(p)
        stack += children(p)
    return seen


def proc_ticks(pid):
    """(comm, cpu_ns, run_delay_ns) of a process, all its threads included.
    cpu_ns comes from /proc/PID/schedstat (scheduler clock, exact) when the
    kernel has it, else from utime+stime in /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None, None, None
    comm = s[s.index("(") + 1:s.rindex(")")]
    fields = s[s.rindex(")") + 2:].split()
    # fields[11]=utime fields[12]=stime (0-based after state)
    cpu_ns = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // HZ
    delay_ns = None
    try:
        run = delay = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                a = f.read().split()
            run += int(a[0])
            delay += int(a[1])
        cpu_ns, delay_ns = run, delay
    except (OSError, ValueError, IndexError):
        pass
    return comm, cpu_ns, delay_ns


def cpuacct_percpu():
    """per-CPU CPU time (ns) used by all tasks, from the root cpuacct cgroup
    (scheduler clock, exact).  /proc/stat per-CPU figures are sampled at the
    timer tick and were found to be badly wrong on this VM for timer-driven
    loads like sipp (e.g. 23 % busy for a CPU running 55 % of sipp)."""
    for path in ("/sys/fs/cgroup/cpuacct/cpuacct.usage_percpu",
                 "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage_percpu"):
        try:
            with open(path) as f:
                return [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return None


def cpu_lines():
    res = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                p = line.split()
                vals = [int(x) for x in p[1:]]
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                res[p[0]] = {"total": sum(vals[:8]), "idle": idle,
                             "si": sum(vals[5:7]), "steal": vals[7] if len(vals) > 7 else 0}
    return res


def cmd_snap(out, groups):
    snap = {"t": time.monotonic(), "cpus": cpu_lines(), "cpuacct": cpuacct_percpu(), "groups": {}}
    for g in groups:
        name, roots = g.split("=", 1)
        procs = {}
        for p in tree([r for r in roots.split(",") if r and r != "0"]):
            comm, t, d = proc_ticks(p)
            if t is not None:
                procs[str(p)] = {"comm": comm, "ns": t, "delay_ns": d}
        snap["groups"][name] = procs
    with open(out, "w") as f:
        json.dump(snap, f)


def cmd_cpu(a, b):
    A, B = json.load(open(a)), json.load(open(b))
    dt = B["t"] - A["t"]
    out = {"interval_s": round(dt, 2)}
    for name, procs in B["groups"].items():
        tot, top, wait = 0, 0, 0
        for pid, v in procs.items():
            a = A["groups"].get(name, {}).get(pid, {"ns": 0, "delay_ns": 0})
            d = v["ns"] - a["ns"]
            tot += d
            top = max(top, d)
            if v.get("delay_ns") is not None and a.get("delay_ns") is not None:
                wait += v["delay_ns"] - a["delay_ns"]
        out[f"{name}_cpu_pct"] = round(100.0 * tot / 1e9 / dt, 1) if dt > 0 else 0
        out[f"{name}_top_proc_pct"] = round(100.0 * top / 1e9 / dt, 1) if dt > 0 else 0
        # time its processes were runnable but waiting for a CPU (% of the interval)
        out[f"{name}_wait_pct"] = round(100.0 * wait / 1e9 / dt, 1) if dt > 0 else 0
    if A.get("cpuacct") and B.get("cpuacct"):
        for i, (x, y) in enumerate(zip(A["cpuacct"], B["cpuacct"])):
            out[f"cpu{i}_used_pct"] = round(100.0 * (y - x) / 1e9 / dt, 1) if dt > 0 else 0
    for cpu, v in B["cpus"].items():
        if cpu == "cpu":
            continue
        a_ = A["cpus"].get(cpu)
        if not a_:
            continue
        dtot = v["total"] - a_["total"]
        didle = v["idle"] - a_["idle"]
        out[f"{cpu}_busy_pct"] = round(100.0 * (dtot - didle) / dtot, 1) if dtot > 0 else 0
        out[f"{cpu}_irq_pct"] = round(100.0 * (v.get("si", 0) - a_.get("si", 0)) / dtot, 1) if dtot > 0 else 0
        out[f"{cpu}_steal_pct"] = round(100.0 * (v.get("steal", 0) - a_.get("steal", 0)) / dtot, 1) if dtot > 0 else 0
    print(" ".join(f"{k}={v}" for k, v in out.items()))


def cmd_mem(roots):
    rss = pss = n = 0
    for p in tree(roots):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            n += 1
        except OSError:
            pass
    print(f"procs={n} rss_kib={rss} pss_kib={pss}")


def pct(sorted_vals, q):
    if not sorted_vals:
        return -1
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def cmd_sipp(stat, rtt=None):
    rows = list(csv.reader(open(stat), delimiter=";"))
    if len(rows) < 2:
        print("error=no_stats")
        return
    d = dict(zip(rows[0], rows[-1]))
    keys = {
        "rate": "CallRate(C)", "created": "TotalCallCreated",
        "ok": "SuccessfulCall(C)", "failed": "FailedCall(C)",
        "retrans": "Retransmissions(C)", "timeouts": "FailedTimeoutOnRecv(C)",
        "maxretrans": "FailedMaxUDPRetrans(C)", "unexpected": "FailedUnexpectedMessage(C)",
        "dead": "DeadCallMsgs(C)", "watchdog_major": "WatchdogMajor(C)",
        "watchdog_minor": "WatchdogMinor(C)",
    }
    out = {}
    for k, h in keys.items():
        v = d.get(h, "")
        try:
            out[k] = float(v) if "." in v else int(v)
        except ValueError:
            out[k] = v or -1
    if rtt and os.path.exists(rtt):
        vals = []
        with open(rtt) as f:
            next(f, None)
            for line in f:
                p = line.strip().split(";")
                if len(p) >= 3 and p[2] == "1":
                    try:
                        vals.append(float(p[1]))
                    except ValueError:
                        pass
        vals.sort()
        out["rt_n"] = len(vals)
        out["rt_p50_ms"] = pct(vals, 0.50)
        out["rt_p99_ms"] = pct(vals, 0.99)
        out["rt_max_ms"] = vals[-1] if vals else -1
    print(" ".join(f"{k}={v}" for k, v in out.items()))


def cmd_udpdrops(ports):
    want = {int(p) for p in ports}
    drops = {p: 0 for p in sorted(want)}
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                p = line.split()
                local = p[1]
                ip_hex, port_hex = local.split(":")
                port = int(port_hex, 16)
                if port in want and ip_hex in ("0100007F", "00000000"):
                    drops[port] += int(p[-1])
    except OSError:
        pass
    print(" ".join(f"drops_{k}={v}" for k, v in drops.items()))


def cmd_median(vals):
    nums = []
    for v in vals:
        try:
            nums.append(float(v))
        except ValueError:
            pass
    if not nums:
        print("-")
        return
    m = statistics.median(nums)
    print(int(m) if m == int(m) else round(m, 1))


def cmd_portsbusy(ports):
    busy = []
    tcp = {15098} | {int(x) for x in os.environ.get("BENCH_TCP_PORTS", "").split() if x.isdigit()}
    for p in ports:
        port = int(p)
        kinds = [socket.SOCK_DGRAM] + ([socket.SOCK_STREAM] if port in tcp else [])
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            if kind == socket.SOCK_STREAM:   # TIME_WAIT leftovers do not stop a server
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(str(port))
                break
            finally:
                s.close()
    print(" ".join(busy))


# Parley metric name (with labels) -> short key; what shows trouble under load
PARLEY_KEYS = {
    "parley_sip_requests_received_total": "rx_req",
    "parley_sip_parse_errors_total": "parse_err",
    "parley_proxy_forwarded_total": "fwd",
    'parley_proxy_rejections_total{reason="timeout"}': "r408",
    'parley_proxy_rejections_total{reason="unreachable"}': "r504",
    'parley_proxy_rejections_total{reason="not_found"}': "r404",
    'parley_proxy_rejections_total{reason="loop"}': "r482",
    "parley_transaction_timeouts_total": "tx_timeouts",
    "parley_transaction_retransmits_total": "tx_retx",
    'parley_transactions{kind="server"}': "tx_srv_live",
    'parley_transactions{kind="client"}': "tx_cli_live",
    "parley_registrar_aors": "aors",
    "parley_store_commits_total": "commits",
    "parley_store_commit_failures_total": "commit_fail",
}


def cmd_parleymetrics(addr):
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=3) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError as e:
        print(f"metrics_error={type(e).__name__}")
        return
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, val = line.rsplit(" ", 1)
        key = PARLEY_KEYS.get(name)
        if key:
            try:
                out[key] = int(float(val))
            except ValueError:
                out[key] = val
    print(" ".join(f"{k}={v}" for k, v in out.items()))


KAM_KEYS = {
    "core:rcv_requests": "rx_req", "core:bad_msg_hdr": "parse_err",
    "sl:408_replies": "sl408", "tmx:4xx_transactions": "t4xx",
    "tmx:5xx_transactions": "t5xx", "tmx:active_transactions": "tx_live",
    "core:drop_requests": "drops", "usrloc:registered_users": "aors",
    "shmem:real_used_size": "shm_used",
}


def cmd_kamstats(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\w:]+)\s*=\s*(\d+)", line)
        if m and m.group(1) in KAM_KEYS:
            out[KAM_KEYS[m.group(1)]] = int(m.group(2))
    print(" ".join(f"{k}={v}" for k, v in out.items()))


def cmd_errsummary(path, first=8):
    """sipp's -trace_err log: one event per line that starts with a date, the
    rest of the event (a SIP message) on the following lines"""
    ev = re.compile(r"^(?:The following events occurred:)?\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: (.*)")
    kinds, firsts, n = {}, [], 0
    with open(path, errors="replace") as f:
        for line in f:
            # sipp writes some events without a newline before the next date
            for part in re.split(r"(?=\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: )", line.rstrip("\n")):
                m = ev.match(part)
                if not m:
                    continue
                msg = m.group(1)
                n += 1
                kind = re.sub(r"\d+", "N", msg)
                kind = re.sub(r"Call-ID [^ ,]+|call [^ ]+@[^ ]+", "call X", kind)
                kind = re.sub(r"received '.*", "received ...", kind)[:140]
                kinds[kind] = kinds.get(kind, 0) + 1
                if len(firsts) < first:
                    firsts.append(part[:300])
    print(f"{n} events")
    for k, v in sorted(kinds.items(), key=lambda x: -x[1])[:15]:
        print(f"{v:8d}  {k}")
    if firsts:
        print("first events:")
        for x in firsts:
            print("  " + x)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    c, a = argv[1], argv[2:]
    if c == "tree":
        print("\n".join(str(p) for p in tree(a)))
    elif c == "snap":
        cmd_snap(a[0], a[1:])
    elif c == "cpu":
        cmd_cpu(a[0], a[1])
    elif c == "mem":
        cmd_mem(a)
    elif c == "sipp":
        cmd_sipp(a[0], a[1] if len(a) > 1 else None)
    elif c == "udpdrops":
        cmd_udpdrops(a)
    elif c == "median":
        cmd_median(a)
    elif c == "portsbusy":
        cmd_portsbusy(a)
    elif c == "parleymetrics":
        cmd_parleymetrics(a[0])
    elif c == "errsummary":
        cmd_errsummary(a[0])
    elif c == "kamstats":
        cmd_kamstats(sys.stdin.read())
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
