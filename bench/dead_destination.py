#!/usr/bin/env python3
"""Dead-destination isolation bench (issue 10 item 4), loopback only (127.0.0.0/8).

Healthy-domain completion time with and without a dead destination's backlog next to it:

  healthy   --healthy messages (default 2,000 x --size 20,000 bytes) for d1..d10.example,
            routed to mxburst-sink (STARTTLS offered: opportunistic TLS)
  + dead    the same, plus --dead messages (default 10,000) for dead.example, routed to a closed
            port on 127.0.0.3 (every connection is refused, so the destination goes dead and its
            backlog is deferred "not tried")

"healthy done" = time from spawning `mxburst --drain` to the last `delivered` record of a
healthy domain in the accounting log; "all done" = until the process exits. Each figure is the
median of --runs runs. Measured, never asserted; the goal is ratio <= 1.5.

Usage:  bench/dead_destination.py [--runs 3] [--healthy 2000] [--dead 10000]
MXB_BUILD_DIR selects the build (default build/release); --bin-dir an explicit one (e.g. an old
build, for before/after). Python 3 standard library only.
"""

import argparse
import calendar
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proctree import free_port  # noqa: E402  a free loopback port

SIZE = 20000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log_time(t):
    # "2026-12-01T22:50:01.123Z"
    base, ms = t.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000.0


def inject(bins, spool, count, domain_args, seed):
    subprocess.run([os.path.join(bins, "tools", "mxburst-inject"), "--spool", spool, "--count",
                    str(count), "--size", str(SIZE), "--no-fsync", "--seed", str(seed)] + domain_args,
                   check=True, stdout=subprocess.DEVNULL)


def one_run(bins, work, healthy, dead, sink_hostport, dead_port, workers):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    spool, acct = os.path.join(work, "spool"), os.path.join(work, "acct.jsonl")
    if dead:
        inject(bins, spool, dead, ["--domain-list", "dead.example", "--rcpt-local-prefix", "x"], 1)
    inject(bins, spool, healthy, ["--domains", "10"], 2)
    cmd = [os.path.join(bins, "engine", "mxburst"), "--spool", spool, "--drain", "--log", acct,
           "--route", f"dead.example=127.0.0.3:{dead_port}", "--route", f"*={sink_hostport}",
           "--workers", str(workers)]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # a bench box run as root; production sets `user`
    err = open(os.path.join(work, "engine.err"), "w")
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=err)
    t_all = time.time() - t0
    last_healthy, delivered, deferred = 0.0, 0, 0
    with open(acct) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("status") == "delivered" and r.get("domain") != "dead.example":
                delivered += 1
                last_healthy = max(last_healthy, log_time(r["time"]))
            elif r.get("status") == "deferred":
                deferred += 1
    if delivered != healthy:
        raise SystemExit(f"dead_destination: {delivered} of {healthy} healthy messages delivered")
    return max(0.0, last_healthy - t0), t_all, deferred


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--healthy", type=int, default=2000)
    p.add_argument("--dead", type=int, default=10000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=int, default=20000, help="body bytes (default 20000)")
    p.add_argument("--bin-dir", default=os.path.join(ROOT, os.environ.get("MXB_BUILD_DIR",
                                                                          "build/release")))
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-dead"))
    a = p.parse_args()
    global SIZE
    SIZE = a.size
    sink_port, dead_port = free_port("127.0.0.2"), free_port("127.0.0.3")  # nothing on dead_port
    os.makedirs(a.workdir, exist_ok=True)
    sink = subprocess.Popen([os.path.join(a.bin_dir, "tools", "mxburst-sink"), "--listen",
                             f"127.0.0.2:{sink_port}", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        rows = []
        for label, dead in (("healthy only", 0), (f"healthy + dead backlog of {a.dead}", a.dead)):
            runs = [one_run(a.bin_dir, os.path.join(a.workdir, "run"), a.healthy, dead,
                            f"127.0.0.2:{sink_port}", dead_port, a.workers)
                    for _ in range(a.runs)]
            rows.append((label, statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs), runs[0][2]))
    finally:
        sink.terminate()
        sink.wait()
    print(f"{'scenario':40} {'healthy done s':>15} {'all done s':>11} {'deferred':>9}")
    for label, h, t, d in rows:
        print(f"{label:40} {h:15.2f} {t:11.2f} {d:9d}")
    print(f"ratio (healthy done, with / without backlog): {rows[1][1] / rows[0][1]:.2f}  "
          f"(goal <= 1.5; {a.runs} runs each, median; bins {a.bin_dir})")


if __name__ == "__main__":
    main()
