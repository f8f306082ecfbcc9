#!/usr/bin/env python3
"""A/B of two mxburst builds on scenario a's work (bench/e2e.py), for the scanner's CPU.

One injected spool (--messages x --size for --domains domains, mxburst-inject --seed 42
--no-fsync), one mxburst-sink on 127.0.0.2-5 (--threads 1) kept running, and per run a fresh
`cp -al` of the spool whose files are read once first (this VM drops cold page-cache pages
within seconds: a run must not measure the disk). Runs alternate A B A B ... after one warm-up
run of each; every run is `mxburst --drain --max-connections 2` (STARTTLS, reuse) and reports

  total us/msg    user+sys of mxburst from wait4() (every thread: workers, io-wq) / messages
  scanner us/msg  the scanner thread's CPU from the summary line
  wall s

and the medians per build. The `cp` and the page-cache read are not counted. With --copy every
run gets real copies (cp -a + sync), so the unlinks free blocks as in production (on a file
system mounted with `discard` they wait for it).

  bench/scanner_ab.py --a /work/main/build/release --b build/release --pairs 3
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402

SCANNER_RE = re.compile(r"scanner thread ([\d.]+)")


def run(build, template, work, routes, env_extra, copy):
    spool = os.path.join(work, "spool")
    if copy:  # real files: the engine's unlinks free blocks (and wait for the discard)
        shutil.rmtree(spool, ignore_errors=True)
        subprocess.run(["cp", "-a", template, spool], check=True)
        subprocess.run(["sync"], check=True)
    else:
        e2e.clone_spool(template, spool)
    subprocess.run(f"find {spool}/incoming -type f -print0 | xargs -0 cat >/dev/null",
                   shell=True, check=True)
    e2e.ENGINE = os.path.join(build, "engine", "mxburst")
    old = {k: os.environ.get(k) for k in env_extra}
    os.environ.update(env_extra)
    try:
        m = e2e.run_engine(work, spool, routes, ["--max-connections", "2"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    shutil.rmtree(spool, ignore_errors=True)
    s = SCANNER_RE.search(m["summary"])
    n = max(1, m["messages"])
    return {"total": m["cpu"] / n * 1e6, "user": m["utime"] / n * 1e6, "sys": m["stime"] / n * 1e6,
            "scanner": float(s.group(1)) if s else float("nan"), "wall": m["wall"],
            "ok": m["rc"] == 0 and m["delivered"] == m["messages"], "summary": m["summary"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--a", required=True, help="build directory A (before)")
    p.add_argument("--b", required=True, help="build directory B (after)")
    p.add_argument("--b-env", default="", help="VAR=VALUE,... set for B's runs only")
    p.add_argument("--c", help="build directory C (optional third build, alternated too)")
    p.add_argument("--c-env", default="", help="VAR=VALUE,... set for C's runs only")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--copy", action="store_true",
                   help="a full copy of the spool per run (cp -a, then sync), not hard links")
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--domains", type=int, default=1000)
    p.add_argument("--workdir", default=os.path.join(e2e.ROOT, "build", "bench-scanner-ab"))
    a = p.parse_args()
    e2e.raise_nofile()
    os.makedirs(a.workdir, exist_ok=True)
    e2e.SINK = os.path.join(a.a, "tools", "mxburst-sink")
    e2e.INJECT = os.path.join(a.a, "tools", "mxburst-inject")
    template = os.path.join(a.workdir, "template")
    e2e.inject(template, a.messages, a.size, a.domains)
    sink = e2e.Sink(a.workdir, [f"127.0.0.{i}" for i in range(2, 6)], 1, 0)
    routes = e2e.routes_for(a.domains, sink.hostports)
    env = lambda text: dict(kv.split("=", 1) for kv in text.split(",") if kv)
    builds = {"A": (a.a, {}), "B": (a.b, env(a.b_env))}
    if a.c:
        builds["C"] = (a.c, env(a.c_env))
    results = {name: [] for name in builds}
    e2e.log(f"scanner_ab: load {os.getloadavg()}; " +
            "; ".join(f"{k}={v[0]} {v[1] or ''}" for k, v in builds.items()))
    try:
        for i in range(a.pairs + 1):
            for name, (build, extra_env) in builds.items():
                r = run(build, template, a.workdir, routes, extra_env, a.copy)
                tag = "warm-up" if i == 0 else f"pair {i}"
                e2e.log(f"scanner_ab: {tag} {name}: total {r['total']:.1f} us/msg (user "
                        f"{r['user']:.1f}, sys {r['sys']:.1f}), scanner thread "
                        f"{r['scanner']:.1f} us/msg, wall {r['wall']:.2f} s"
                        f"{'' if r['ok'] else ' NOT ALL DELIVERED: ' + r['summary']}")
                if i > 0:
                    results[name].append(r)
    finally:
        sink.stop()
    e2e.log(f"scanner_ab: load {os.getloadavg()}")
    for name, rs in results.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        print(f"{name}: total {med('total'):.1f} us/msg (user {med('user'):.1f}, sys "
              f"{med('sys'):.1f}), scanner thread {med('scanner'):.1f} us/msg, wall "
              f"{med('wall'):.2f} s; totals " + ", ".join("%.1f" % r["total"] for r in rs))


if __name__ == "__main__":
    main()
