#!/usr/bin/env python3
"""Blames each client-side stall of a run on what the CPUs did meanwhile (issue 14).

usage: bench/stalls.py --slow SLOW_CSV --perf PERF_SCRIPT_TXT --server-cpus 1 --client-cpus 0
                       [--server-tids 123,124] [--server-comm REGEX] [--client-comm ticket-bench]
                       [--connections 64] [--label NAME] [--period-us 100]
       bench/stalls.py --self-test

Inputs, from one run:
- SLOW_CSV: `ticket-bench run --slow-log 2ms`'s slow.csv (due and arrival times of every slow
  response on CLOCK_MONOTONIC).
- PERF_SCRIPT_TXT: `perf script -F comm,pid,tid,cpu,time,event,ip,sym --ns` of
  `perf record -a --clockid monotonic -e cpu-clock -F 10000`, recorded over the load: a sample
  every 100 us on every CPU, idle included, naming the thread it caught.

A stall window is a maximal stretch of time covered by slow responses (each from its due time to
its arrival). For each window and each side (the server's CPUs, the client's CPUs) it measures:
- dark: time the CPU took no cpu-clock sample: the samples missing from the window (its length
  less one period per sample), at least the gaps of over DARK_GAP. The sampling timer fires on
  every CPU, idle or not, while the CPU runs (on the VM, outside stalls, a window holds its
  expected count exactly); a CPU that misses samples was not running: in a VM the host
  descheduled the vCPU (steal), on bare metal an SMI or a firmware stall.
- others: time other tasks held the CPU (kernel threads such as kcompactd, kdamond, ksoftirqd,
  kworkers; other processes; perf itself); own: the server's threads (or the client's); idle:
  the idle task. Each sample stands for one period of the thread it caught. (Context switches
  would be finer, but `sched:sched_switch` records came out inconsistent with the samples on
  the VM: a kernel thread sampled for 12 ms before the switch that gave it the CPU.)
The window is blamed on the largest of dark and others of either side when it reaches
MIN_BLAME. Otherwise: "client busy" if the server's CPUs idled for half of it while the client
ran (the server waited for requests: a client-side stall), "server busy" if the server's threads
ran for half of it: "server busy, few connections" when under a quarter of --connections
waited (those requests waited for something of their own, such as a group commit, while the
server served the rest), else "server busy" (the server's own stall: its most sampled functions
are listed), else "unexplained" (listed too).

Prints a markdown report, and a last line `STALLS windows=N ...` with the totals per cause and
the longest window's length and cause (bench/tail.sh --attribute reads it).
"""

import argparse
import bisect
import collections
import csv
import re
import sys

# A CPU without any sample for this long was not running (ten periods of the 100 us sampling
# timer: one or two samples late is timer slack, ten is a lost millisecond).
DARK_GAP = 1e-3
# A cause must account for at least this much of a window to be blamed: the client sees a stall
# from 2 ms (the slow log's usual threshold), and 0.5 ms is a quarter of that.
MIN_BLAME = 0.5e-3
# ... and at least this share of it (on each side, a mean over its CPUs).
BLAME_SHARE = 0.1
# Functions listed for an unexplained window.
TOP_SYMBOLS = 5

LINE = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<time>\d+\.\d+):\s+(?:\d+\s+)?(?P<event>\S+):\s*(?P<rest>.*)$"
)

class Cpu:
    """One CPU's cpu-clock samples: (time, tid, comm, function), in time order."""

    def __init__(self):
        self.samples = []

    def finish(self):
        self.samples.sort()
        self.sample_times = [s[0] for s in self.samples]

    def within(self, a, b):
        lo = bisect.bisect_left(self.sample_times, a)
        hi = bisect.bisect_right(self.sample_times, b)
        return lo, hi

    def dark(self, a, b, period):
        """The parts of [a, b] inside sampling gaps longer than DARK_GAP (each gap less the one
        period a sample stands for), each with whether the CPU was idle when it went dark:
        [(start, end, idle)]. The trace's own edges count as gaps."""
        lo, hi = self.within(a, b)
        # The gaps around the window's first and last samples reach outside it: clipped.
        points = self.samples[max(lo - 1, 0):hi + 1]
        times = [p[0] for p in points]
        idle = [p[1] == 0 for p in points]
        if lo == 0:  # no sample before the window
            times.insert(0, a - period)
            idle.insert(0, False)
        if hi == len(self.samples):  # none after it
            times.append(b + period)
            idle.append(False)
        out = []
        for k in range(len(times) - 1):
            x, y = times[k] + period, times[k + 1]
            if y - times[k] > DARK_GAP and min(y, b) > max(x, a):
                out.append((max(x, a), min(y, b), idle[k]))
        return out


def read_perf(path):
    cpus = collections.defaultdict(Cpu)
    for line in open(path, errors="replace"):
        m = LINE.match(line)
        if not m or not m["event"].startswith("cpu-clock"):
            continue
        parts = m["rest"].split(None, 1)  # the address, then the symbol (which may hold spaces)
        symbol = parts[1].strip() if len(parts) > 1 else (parts[0] if parts else "?")
        sample = (float(m["time"]), int(m["tid"]), m["comm"], symbol, int(m["pid"]))
        cpus[int(m["cpu"])].samples.append(sample)
    for c in cpus.values():
        c.finish()
    return cpus


def read_slow(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            rows.append((int(r["intended_mono_ns"]) / 1e9, int(r["arrival_mono_ns"]) / 1e9,
                         int(r["connection"])))
    return rows


def windows(rows):
    """Merges the slow responses' [due, arrival] spans into maximal windows."""
    out = []
    for due, arrival, conn in sorted(rows):
        if out and due <= out[-1]["end"]:
            w = out[-1]
            w["end"] = max(w["end"], arrival)
        else:
            w = {"start": due, "end": arrival, "requests": 0, "conns": set()}
            out.append(w)
        w["requests"] += 1
        w["conns"].add(conn)
    return out


def cpu_list(text):
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def side(cpus, ids, a, b, own, period):
    """Seconds over the CPUs `ids` in [a, b], each a mean over those CPUs: dark (and of it, dark
    after an idle sample: a halted CPU that was not woken in time), then, from the samples (each
    stands for one period of the thread it caught), others (by comm), own and idle."""
    gaps = missing = dark_idle = own_t = idle = 0.0
    others = collections.Counter()
    present = [cpus[i] for i in ids if i in cpus]
    for c in present:
        for s, e, was_idle in c.dark(a, b, period):
            gaps += e - s
            dark_idle += (e - s) if was_idle else 0.0
        lo, hi = c.within(a, b)
        # Samples missing from the window: the long gaps, and the CPU's shorter absences too
        # (a host that takes it away for 0.5 ms at a time leaves no gap over DARK_GAP). Signed,
        # summed over the CPUs before it is compared: one CPU's count is off by up to one.
        missing += (b - a) - (hi - lo) * period
        for _, tid, comm, _, pid in c.samples[lo:hi]:
            if tid == 0:
                idle += period
            elif own(tid, comm, pid):
                own_t += period
            else:
                others[re.sub(r"/\d+$|:\d+(-.*)?$", "", comm) or comm] += period
    n = max(len(present), 1)
    dark = max(gaps, missing, 0.0)
    others = collections.Counter({k: v / n for k, v in others.items()})
    return dark / n, dark_idle / n, others, own_t / n, idle / n


def analyse(args):
    cpus = read_perf(args.perf)
    rows = read_slow(args.slow)
    server_cpus, client_cpus = cpu_list(args.server_cpus), cpu_list(args.client_cpus)
    tids = {int(t) for t in args.server_tids.split(",") if t} if args.server_tids else set()
    server_re = re.compile(args.server_comm) if args.server_comm else None
    period = args.period_us * 1e-6
    # perf lowers -F to the kernel's perf_event_max_sample_rate (which it lowers itself when
    # sampling costs too much): every window would read as dark. The trace's own period is the
    # median gap between a CPU's samples.
    gaps = sorted(y - x for c in cpus.values() for x, y in zip(c.sample_times, c.sample_times[1:]))
    measured = gaps[len(gaps) // 2] if gaps else period
    warning = None
    if abs(measured - period) > 0.2 * period:
        warning = (f"the trace samples every {measured * 1e6:.0f} us, not every "
                   f"{period * 1e6:.0f} us (perf lowered the rate?): that period is used")
        period = measured

    def is_server(tid, comm, pid):
        return tid in tids or pid == args.server_pid or bool(server_re and server_re.match(comm))

    def is_client(tid, comm, pid):
        return comm.startswith(args.client_comm)

    out = []
    ws = windows(rows)
    covered = (min((s.sample_times[0] for s in cpus.values() if s.sample_times), default=0),
               max((s.sample_times[-1] for s in cpus.values() if s.sample_times), default=0))
    out.append(f"# Stalls: {args.label}\n")
    out.append(f"{len(rows)} slow responses in {len(ws)} windows; server CPUs "
               f"{args.server_cpus}, client CPUs {args.client_cpus}; trace "
               f"{covered[0]:.3f}-{covered[1]:.3f} s (CLOCK_MONOTONIC).\n")
    if warning:
        out.append(f"Warning: {warning}.\n")
    out.append("Per side, ms: dark (of it, while idle) / other tasks / its own threads / idle.\n")
    out.append("| # | at s | length ms | requests | conns | server CPUs | client CPUs | blamed on |")
    out.append("|---:|---:|---:|---:|---:|---|---|---|")
    totals = collections.Counter()
    time_by = collections.Counter()
    unexplained = []
    t0 = ws[0]["start"] if ws else 0
    longest = (0.0, "none")
    for n, w in enumerate(ws, 1):
        a, b = w["start"], w["end"]
        if not (covered[0] <= a and b <= covered[1]):
            cause = "outside the trace"
            sd = sdi = cd = cdi = 0.0
            so = co = collections.Counter()
            sown = sidle = cown = cidle = 0.0
        else:
            sd, sdi, so, sown, sidle = side(cpus, server_cpus, a, b, is_server, period)
            cd, cdi, co, cown, cidle = side(cpus, client_cpus, a, b, is_client, period)
            candidates = [(sd, "server CPU not running (host)"),
                          (cd, "client CPU not running (host)")]
            if so:
                name, t = so.most_common(1)[0]
                candidates.append((sum(so.values()), f"server CPU taken: {name}"))
            if co:
                name, t = co.most_common(1)[0]
                candidates.append((sum(co.values()), f"client CPU taken: {name}"))
            blame, cause = max(candidates)
            # A cause must take a tenth of a long window, too: perf's own samples and
            # ksoftirqd's slivers add up over tens of milliseconds.
            if blame < max(MIN_BLAME, BLAME_SHARE * (b - a)):
                length = b - a
                if sidle >= length / 2 and cown >= length / 2:
                    cause = "client busy: the server idled, waiting for requests"
                elif sown >= length / 2 and len(w["conns"]) * 4 < args.connections:
                    cause = "server busy, few connections: those requests waited (a group commit)"
                elif sown >= length / 2:
                    cause = "server busy"
                    unexplained.append((n, a, b))
                else:
                    cause = "unexplained"
                    unexplained.append((n, a, b))
        key = cause.split(":")[0]
        totals[key] += 1
        time_by[key] += b - a
        longest = max(longest, (b - a, key))

        def fmt(counter):
            return ", ".join(f"{k} {v * 1e3:.2f}" for k, v in counter.most_common(3)) or "0"

        out.append(
            f"| {n} | {a - t0:.3f} | {(b - a) * 1e3:.2f} | {w['requests']} | {len(w['conns'])} | "
            f"{sd * 1e3:.2f} ({sdi * 1e3:.2f}) / {fmt(so)} / {sown * 1e3:.2f} / {sidle * 1e3:.2f} | "
            f"{cd * 1e3:.2f} ({cdi * 1e3:.2f}) / {fmt(co)} / {cown * 1e3:.2f} / {cidle * 1e3:.2f} | "
            f"{cause} |")
    out.append("\n## By cause\n")
    out.append("| cause | windows | ms |")
    out.append("|---|---:|---:|")
    for key, count in totals.most_common():
        out.append(f"| {key} | {count} | {time_by[key] * 1e3:.1f} |")
    if unexplained:
        out.append("\n## The server's most sampled functions in server-busy and unexplained windows\n")
        for n, a, b in unexplained:
            syms = collections.Counter()
            for i in server_cpus:
                c = cpus.get(i)
                if c is None:
                    continue
                lo, hi = c.within(a, b)
                for _, tid, comm, sym, pid in c.samples[lo:hi]:
                    if is_server(tid, comm, pid):
                        syms[sym] += 1
            top = ", ".join(f"{s} {k}" for s, k in syms.most_common(TOP_SYMBOLS)) or "no samples"
            out.append(f"- window {n}: {top}")
    short = {"server CPU not running (host)": "host_server",
             "client CPU not running (host)": "host_client",
             "server CPU taken": "taken_server", "client CPU taken": "taken_client",
             "client busy": "client_busy", "server busy, few connections": "server_few",
             "server busy": "server_busy",
             "unexplained": "unexplained", "outside the trace": "outside"}
    line = " ".join(f"{short[k]}={totals.get(k, 0)}" for k in short)
    out.append(f"\nThe longest window: {longest[0] * 1e3:.1f} ms, {longest[1]}.")
    longest_key = next((v for k, v in short.items() if k == longest[1]), "none")
    out.append(f"\nSTALLS windows={len(ws)} {line} longest_ms={longest[0] * 1e3:.1f} "
               f"longest={longest_key}")
    return "\n".join(out)


def self_test():
    """A synthetic run: a stall for each cause, and one the CPUs do not explain."""
    import os
    import tempfile
    perf, slow = [], ["intended_mono_ns,arrival_mono_ns,latency_us,connection,thread,status"]

    def sample(cpu, t, comm, tid, sym="x"):
        perf.append(f"{comm:>16} {tid}/{tid} [{cpu:03d}] {t:.9f}:      10101 cpu-clock:  "
                    f"ffffffff81000000 {sym}")

    server, client, kthread = (100, "shard-0-1"), (200, "ticket-bench-0"), (38, "kcompactd0")
    idle1, idle0 = (0, "swapper"), (0, "swapper")
    dark_server = (1.0, 1.004)   # no samples on CPU 1
    dark_client = (2.0, 2.003)   # none on CPU 0
    taken = (3.0, 3.006)         # kcompactd holds CPU 1
    busy = (4.0, 4.003)          # the server runs `serve`: nothing else explains it
    few = (4.3, 4.303)           # the server runs, one request of 64 waits
    server_idles = (4.5, 4.503)  # the server waits, the client runs
    both_idle = (4.7, 4.703)     # nobody runs: nothing on the CPUs explains it

    def inside(t, span):
        return span[0] <= t <= span[1]

    for k in range(1, 50000):
        t = k * 1e-4
        if not inside(t, dark_server):
            who = server
            if inside(t, taken):
                who = kthread
            elif inside(t, server_idles) or inside(t, both_idle):
                who = idle1
            sample(1, t, who[1], who[0], "<T as Serve>::serve" if inside(t, busy) else "x")
        if not inside(t, dark_client):
            who = idle0 if inside(t, both_idle) else client
            sample(0, t, who[1], who[0])
    for a, b in (dark_server, dark_client, taken, busy, few, server_idles, both_idle):
        for conn in range(1 if (a, b) == few else 16):
            slow.append(f"{int(a * 1e9)},{int(b * 1e9)},{int((b - a) * 1e6)},{conn},0,200")
    with tempfile.TemporaryDirectory() as d:
        p, s = os.path.join(d, "perf.txt"), os.path.join(d, "slow.csv")
        open(p, "w").write("\n".join(sorted(perf, key=lambda x: float(x.split("]")[1].split(":")[0]))) + "\n")
        open(s, "w").write("\n".join(slow) + "\n")
        args = argparse.Namespace(perf=p, slow=s, server_cpus="1", client_cpus="0",
                                  server_tids="100", server_comm=None, server_pid=-1,
                                  client_comm="ticket-bench", label="self-test",
                                  period_us=100.0, connections=64)
        report = analyse(args)
    last = report.splitlines()[-1]
    want = ("STALLS windows=7 host_server=1 host_client=1 taken_server=1 taken_client=0 "
            "client_busy=1 server_few=1 server_busy=1 unexplained=1 outside=0 "
            "longest_ms=6.0 longest=taken_server")
    assert last == want, f"{last}\n{report}"
    # 3 ms of 100 us samples, all in one function (its name has spaces): 30 or 31.
    assert "kcompactd0" in report, report
    assert re.search(r"window 4: <T as Serve>::serve 3[01]$", report, re.M), report
    print("self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slow")
    ap.add_argument("--perf")
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")
    ap.add_argument("--server-tids", default="")
    ap.add_argument("--server-pid", type=int, default=-1,
                    help="the server's process: every thread of it is the server's")
    ap.add_argument("--server-comm", default=None)
    ap.add_argument("--client-comm", default="ticket-bench")
    ap.add_argument("--label", default="run")
    ap.add_argument("--connections", type=int, default=64,
                    help="the run's connections: a stall of under a quarter of them is not the server's")
    ap.add_argument("--period-us", type=float, default=100.0,
                    help="the sampling period (perf record -F 10000: 100 us)")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return
    if not (args.slow and args.perf):
        ap.error("--slow and --perf are required")
    print(analyse(args))


if __name__ == "__main__":
    main()
