#!/usr/bin/env python3
"""End-to-end benchmark of mxburst against mxburst-sink on loopback (127.0.0.0/8 only).

One run prints one table (see bench/README.md, "Benchmarks"):

  a  many messages per connection over STARTTLS (throughput-bound)
  b  the same messages with --max-messages-per-connection 1 (handshake-bound)
  c  many concurrent slow sessions (sink --reply-delay-ms): RSS at 0 / 10k / 25k / 50k sessions
  d  the long tail (issue 17 item 6): --tail-messages plaintext messages of --tail-size B, one
     sink address by a static wildcard route, to 1,000 domains and to one domain per message
     (--tail-domains); deferred recipients by reason and the kernel's listen-queue overflows

Measured, never asserted. Every figure is the median of --runs runs (scenario c: one run per
session target). Definitions:

  msgs/s, MB/s   messages (and their body bytes) / wall time of the mxburst process, from spawn
                 to exit (spool scan, claim, delivery, final fsync of the log included)
  p50/p99 ms     per-recipient latency = queue_ms of the accounting log = time from the claim of
                 the spool file to its final outcome (claims run ahead of delivery up to
                 --max-in-flight, so this includes waiting inside the engine)
  peak RSS       ru_maxrss of mxburst (wait4), cross-checked against VmHWM sampled from /proc
  CPU s/1k msgs  user+sys CPU of mxburst per 1,000 messages (wait4 rusage); the sink's in sink CPU
  resumed        resumed / TLS sessions from the engine's summary line, "n/a" if it has no count

Usage:  bench/e2e.py [--quick] [--scenarios a,b,c,d] [--runs N] [--out FILE] [--chunking both]
        bench/e2e.py --scenarios d --tail-domains 1000,100000    # the long tail alone
        bench/e2e.py --scenarios c --sessions 50000      # the 50k-session run alone
Python 3 standard library only. MXB_BUILD_DIR selects the build (default build/release).
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("MXB_BUILD_DIR", "build/release"))
ENGINE = os.path.join(BUILD, "engine", "mxburst")
SINK = os.path.join(BUILD, "tools", "mxburst-sink")
INJECT = os.path.join(BUILD, "tools", "mxburst-inject")

SUMMARY_RE = re.compile(r"(\d+) messages finished in ([\d.]+) s")
CONN_RE = re.compile(r"(\d+) connections, (\d+) TLS sessions(?: \((\d+) resumed\))?")
DELIVERED_RE = re.compile(r"recipients: (\d+) delivered, (\d+) deferred, (\d+) bounced")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (1 << 20, 300000, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_status(pid):
    """VmRSS and VmHWM in KiB, or None once the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        return None
    return out


def count_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def count_established(ports):
    """ESTABLISHED TCP connections to the given (sink) ports: mxburst's sessions. Its sockets are
    io_uring direct descriptors, invisible in /proc/PID/fd; netlink (ss) sees every socket."""
    if not ports:
        return None
    flt = " or ".join(f"dport = :{p}" for p in sorted(ports))
    try:
        r = subprocess.run(["ss", "-Htn", "state", "established", f"( {flt} )"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    except OSError:
        return None
    return r.stdout.count(b"\n")


class Sampler(threading.Thread):
    """Samples RSS (and optionally the open descriptor count) of one process until it exits."""

    def __init__(self, pid, interval, fds, ports=None):
        super().__init__(daemon=True)
        self.pid, self.interval, self.fds, self.ports = pid, interval, fds, ports
        self.samples = []  # (t, rss_kib, hwm_kib, fds or established sessions)
        self.stop = threading.Event()

    def run(self):
        t0 = time.monotonic()
        while not self.stop.is_set():
            st = proc_status(self.pid)
            if st is None:
                break
            if self.ports:
                n = count_established(self.ports)
            else:
                n = count_fds(self.pid) if self.fds else None
            self.samples.append((time.monotonic() - t0, st.get("VmRSS", 0), st.get("VmHWM", 0), n))
            self.stop.wait(self.interval)


def machine_busy():
    """CPU seconds the whole machine (every process, ours or not) spent not idle, so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def wait_rusage(proc, timeout):
    """wait4() the child: returns (status, rusage). Kills it after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru
        if time.monotonic() > deadline:
            log(f"e2e: pid {proc.pid} still running after {timeout} s, killing it")
            proc.kill()
            deadline = time.monotonic() + 30
        time.sleep(0.02)


class Sink:
    """One mxburst-sink listening on several 127.0.0.x addresses, free ports."""

    def __init__(self, workdir, addresses, threads, reply_delay_ms, extra=None, port=0):
        os.makedirs(workdir, exist_ok=True)
        self.ready = os.path.join(workdir, "sink.ready")
        self.stats = os.path.join(workdir, "sink-stats.json")
        for p in (self.ready, self.stats):
            if os.path.exists(p):
                os.unlink(p)
        listen = ",".join(f"{a}:{port}" for a in addresses)  # 0: a free port per address
        cmd = [SINK, "--listen", listen, "--quiet", "--threads", str(threads),
               "--ready-file", self.ready, "--stats-file", self.stats]
        if reply_delay_ms:
            cmd += ["--reply-delay-ms", str(reply_delay_ms)]
        cmd += extra or []
        self.err = open(os.path.join(workdir, "sink.err"), "w")
        self.out = open(os.path.join(workdir, "sink.out"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err)
        self.sampler = Sampler(self.proc.pid, 0.25, False)
        for _ in range(200):
            if os.path.exists(self.ready) or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(self.ready):
            self.proc.kill()
            raise SystemExit(f"e2e: mxburst-sink did not start: {open(self.err.name).read()}")
        with open(self.ready) as f:
            self.hostports = [line.split()[0] for line in f if line.strip()]
        self.sampler.start()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        _, ru = wait_rusage(self.proc, 60)
        self.sampler.stop.set()
        self.err.close()
        self.out.close()
        return ru


def inject(spool, count, size, domains, seed=42):
    shutil.rmtree(spool, ignore_errors=True)
    t0 = time.monotonic()
    r = subprocess.run([INJECT, "--spool", spool, "--count", str(count), "--size", str(size),
                        "--domains", str(domains), "--no-fsync", "--seed", str(seed)],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
    log(f"e2e:   {r.stdout.strip()} ({time.monotonic() - t0:.1f} s)")


def clone_spool(template, spool):
    """Hard-link copy of an injected spool (the engine only unlinks or renames its files)."""
    shutil.rmtree(spool, ignore_errors=True)
    subprocess.run(["cp", "-al", template, spool], check=True)


def routes_for(domains, hostports):
    """d1.example .. dN.example spread round-robin over the sink's addresses."""
    out = []
    for i in range(1, domains + 1):
        out += ["--route", f"d{i}.example={hostports[(i - 1) % len(hostports)]}"]
    return out


def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def json_lines(path):
    """The records of a JSON-lines file (torn or missing lines skipped, a missing file empty)."""
    try:
        with open(path) as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
    except OSError:
        return


def read_latencies(path):
    lat, status = [], {}
    for j in json_lines(path):
        s = j.get("status", "?")
        status[s] = status.get(s, 0) + 1
        if s == "delivered" and "queue_ms" in j:
            lat.append(j["queue_ms"])
    lat.sort()
    return lat, status


def run_engine(workdir, spool, routes, extra, sample_fds=False, timeout=1800,
               stop_after=None, session_ports=None):
    """Runs mxburst once; returns a dict of measurements."""
    acct = os.path.join(workdir, "accounting.jsonl")
    if os.path.exists(acct):
        os.unlink(acct)
    cmd = [ENGINE, "--spool", spool, "--log", acct, "--helo", "bench.mxburst.example",
           "--quiet"] + routes + extra
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # a bench box run as root (CI); production sets `user`
    if stop_after is None:
        cmd.append("--drain")
    out = open(os.path.join(workdir, "engine.out"), "w+")
    err = open(os.path.join(workdir, "engine.err"), "w")
    t0 = time.monotonic()
    busy0 = machine_busy()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err)
    sampler = Sampler(proc.pid, 0.1 if sample_fds else 0.05, sample_fds, session_ports)
    sampler.start()
    if stop_after is not None:
        time.sleep(stop_after)
        proc.send_signal(signal.SIGTERM)
    rc, ru = wait_rusage(proc, timeout)
    wall = time.monotonic() - t0
    busy = machine_busy() - busy0
    sampler.stop.set()
    sampler.join()
    out.seek(0)
    text = out.read()
    out.close()
    err.close()
    m = {"wall": wall, "rc": rc, "machine_busy": busy, "cpu": ru.ru_utime + ru.ru_stime, "utime": ru.ru_utime,
         "stime": ru.ru_stime, "maxrss_kib": ru.ru_maxrss, "samples": sampler.samples,
         "summary": text.strip().splitlines()[-1] if text.strip() else "",
         "hwm_kib": max((s[2] for s in sampler.samples), default=0)}
    s = SUMMARY_RE.search(text)
    m["messages"] = int(s.group(1)) if s else 0
    m["engine_secs"] = float(s.group(2)) if s else float("nan")
    c = CONN_RE.search(text)
    m["connections"] = int(c.group(1)) if c else 0
    m["tls_sessions"] = int(c.group(2)) if c else 0
    m["resumed"] = int(c.group(3)) if c and c.group(3) is not None else None
    d = DELIVERED_RE.search(text)
    m["delivered"] = int(d.group(1)) if d else 0
    m["deferred"] = int(d.group(2)) if d else 0
    m["latencies"], m["status"] = read_latencies(acct)
    if rc != 0:
        log(f"e2e:   mxburst exited {rc}: {open(err.name).read()[-2000:]}")
    return m


def fmt_kib(kib):
    return f"{kib / 1024:.0f} MiB" if kib >= 10 * 1024 else f"{kib / 1024:.1f} MiB"


def throughput_scenario(name, label, a, template, extra, sink_extra=None):
    """Scenarios a and b: --runs runs over hard-link copies of one injected spool."""
    work = os.path.join(a.workdir, name)
    runs = []
    for i in range(a.runs):
        sink = Sink(work, a.addresses, a.sink_threads, 0, sink_extra)
        spool = os.path.join(work, "spool")
        clone_spool(template, spool)
        m = run_engine(work, spool, routes_for(a.domains, sink.hostports), extra)
        sru = sink.stop()
        m["sink_cpu"] = sru.ru_utime + sru.ru_stime
        m["sink_maxrss_kib"] = sru.ru_maxrss
        # CPU the machine spent on anything but mxburst and the sink during the run (other
        # users of a shared box, this script): a noisy run shows here, not in our numbers.
        m["others"] = max(0.0, m["machine_busy"] - m["cpu"] - m["sink_cpu"])
        shutil.rmtree(spool, ignore_errors=True)
        log(f"e2e:   {name} run {i + 1}/{a.runs}: {m['messages'] / m['wall']:.0f} msgs/s, "
            f"cpu {m['cpu']:.1f} s, sink cpu {m['sink_cpu']:.1f} s, others {m['others']:.1f} s "
            f"of {(os.cpu_count() or 1) * m['wall']:.1f} core-s | {m['summary']}")
        runs.append(m)
    med = lambda f: statistics.median(f(r) for r in runs)
    msgs = med(lambda r: r["messages"])
    row = {
        "scenario": label,
        "messages": f"{int(msgs)}",
        "size": f"{a.size // 1000} KB",
        "conns": f"{int(med(lambda r: r['connections']))}",
        "msgs/s": f"{med(lambda r: r['messages'] / r['wall']):.0f}",
        "range": "-".join(f"{f(r['messages'] / r['wall'] for r in runs):.0f}" for f in (min, max)),
        "MB/s": f"{med(lambda r: r['messages'] * a.size / r['wall'] / 1e6):.1f}",
        "p50 ms": f"{med(lambda r: percentile(r['latencies'], 50)):.0f}",
        "p99 ms": f"{med(lambda r: percentile(r['latencies'], 99)):.0f}",
        "peak RSS": fmt_kib(med(lambda r: r["maxrss_kib"])),
        "RSS/session": "",
        "CPU s/1k": f"{med(lambda r: r['cpu'] / max(1, r['messages']) * 1000):.3f}",
        "sink CPU s/1k": f"{med(lambda r: r['sink_cpu'] / max(1, r['messages']) * 1000):.3f}",
        "resumed": resumed_text(runs),
        "others CPU": f"{med(lambda r: r['others'] / (r['wall'] * (os.cpu_count() or 1))) * 100:.0f}%",
        "runs": f"{len(runs)}",
    }
    bad = [r for r in runs if r["delivered"] != r["messages"] or r["rc"] != 0]
    if bad:
        row["note"] = f"{len(bad)} run(s) not fully delivered: {bad[0]['summary']}"
    return row


def resumed_text(runs):
    if any(r["resumed"] is None for r in runs):
        return "n/a"
    share = statistics.median(r["resumed"] / max(1, r["tls_sessions"]) for r in runs)
    return f"{share * 100:.0f}%"


def c_sizing(a, target, nofile):
    """(engine workers, sink threads, sink addresses, domains) for `target` sessions at once,
    unless given.

    Each engine worker and each sink thread has one direct-descriptor table of
    min(RLIMIT_NOFILE, 65,536) slots (10% spare: domains hash unevenly over the workers). The
    engine paces connects at ConnectGate::kMaxUnready = 512 not-yet-ready sessions per worker and
    sink address (engine/connect_gate.h), and a session is not ready until greeting, EHLO,
    STARTTLS, handshake and EHLO are through (4 delayed replies). Every session of c starts in one
    burst, so each (worker, address) pair must be able to hold all of its sessions unready at
    once: a pair's share beyond 512 waits for the first ones to become ready (4 replies later)
    and reaches TLS when they are already finishing — at 100k on 21 addresses only the first
    126 x 512 = 64.5k sessions ever overlapped in TLS. Domains hash to workers at random, so a
    pair's share is per-domain sessions x Binomial(domains per address, 1 / workers): keep its
    mean at 60% of 512, and at most 10 sessions per domain so that the largest of the
    workers x addresses shares stays under 512 (at 100k, 6 x 55 pairs: mean 303, sd ~50)."""
    table = int(min(nofile, 65536) * 0.9)
    workers = a.c_workers or max(3, -(-target // table))
    threads = a.c_sink_threads or max(3, -(-target // table))
    addresses = a.c_addresses or max(8, -(-target // int(512 * 0.6 * workers)))
    domains = a.c_domains or max(1000, -(-target // 10))
    return workers, threads, addresses, domains


def sessions_scenario(a):
    """Scenario c: RSS of mxburst while T sessions wait on a slow sink, for each target T.

    Sessions are io_uring direct descriptors (one registered file table per worker, each capped
    at RLIMIT_NOFILE), so capacity is workers x table, not the process's descriptor limit. They
    are counted with ss (ESTABLISHED connections to the sink's ports) and, on the sink side, by
    its exact peak_tls_sessions gauge."""
    rows = []
    work = os.path.join(a.workdir, "c")
    spool = os.path.join(work, "spool")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # (engine workers, routed domains) -> idle RSS (KiB): more workers, more fixed memory; more
    # routes, a bigger configuration.
    baselines = {}

    def idle(nworkers, addresses, threads, ndomains):
        """An idle engine on an empty spool: the 0-session baseline for this many workers and
        routes."""
        if (nworkers, ndomains) in baselines:
            return baselines[(nworkers, ndomains)]
        shutil.rmtree(spool, ignore_errors=True)
        os.makedirs(os.path.join(spool, "incoming"), exist_ok=True)
        sink = Sink(work, addresses, threads, 0)
        m = run_engine(work, spool, routes_for(ndomains, sink.hostports),
                       ["--workers", str(nworkers)], sample_fds=True, stop_after=2.0)
        sink.stop()
        rss = statistics.median(s[1] for s in m["samples"][len(m["samples"]) // 2:])
        baselines[(nworkers, ndomains)] = rss
        rows.append({"scenario": f"c: 0 sessions (idle engine, {nworkers} workers, "
                                 f"{ndomains} routes)",
                     "messages": "0", "size": "-", "conns": "0", "msgs/s": "-", "MB/s": "-",
                     "p50 ms": "-", "p99 ms": "-", "peak RSS": fmt_kib(m["maxrss_kib"]),
                     "RSS/session": "-", "CPU s/1k": "-", "sink CPU s/1k": "-",
                     "resumed": "-", "runs": "1"})
        log(f"e2e:   c: idle engine RSS {rss / 1024:.1f} MiB ({nworkers} workers, {ndomains} "
            f"routes)")
        return rss

    for target in a.session_targets:
        nworkers, threads, naddr, ndomains = c_sizing(a, target, nofile)
        addresses = [f"127.0.0.{2 + i}" for i in range(naddr)]
        workers = ["--workers", str(nworkers)]
        baseline = idle(nworkers, addresses, threads, ndomains)
        if target == 0:
            continue
        # 10% below workers x table: domains hash unevenly over the workers.
        cap = int(nworkers * min(nofile, 65536) * 0.9)
        eff = min(target, cap)
        per_dest = max(1, -(-eff // ndomains))
        domains = min(ndomains, eff)
        msgs = per_dest * domains if per_dest * domains <= cap else eff
        # Every session must still be open when the last handshake is done: ~7 delayed replies
        # per session, handshakes after the third.
        delay = a.reply_delay_ms if a.reply_delay_ms is not None else max(5000, target // 5)
        inject(spool, msgs, a.c_size, domains, seed=7)
        sink = Sink(work, addresses, threads, delay)
        ports = {int(hp.rsplit(":", 1)[1]) for hp in sink.hostports}
        # The sessions all go to c_addresses MX hosts: lift the MX pool's cap (engine/mx_pool.h).
        extra = workers + ["--max-connections-per-mx", "100000",
                           "--max-connections", str(per_dest), "--max-messages-per-connection",
                           "1", "--max-in-flight", str(msgs + 1000), "--connect-timeout", "120"]
        m = run_engine(work, spool, routes_for(domains, sink.hostports), extra, sample_fds=True,
                       session_ports=ports)
        sru = sink.stop()
        try:
            with open(sink.stats) as f:
                sink_stats = json.load(f)
        except (OSError, ValueError):
            sink_stats = {}
        sink_samples = sink.sampler.samples
        sink_base = sink_samples[0][1] if sink_samples else 0
        sink_peak_rss = max((s_[1] for s_ in sink_samples), default=0)
        sink_peak_tls = sink_stats.get("peak_tls_sessions", 0)
        # The highest RSS while (nearly) every session is open: then they are connected and
        # through TLS. RSS alone peaks later (freed memory stays in malloc's arenas), the session
        # count alone earlier (connected, not yet through the handshake).
        most_open = max((s_[3] or 0 for s_ in m["samples"]), default=0)
        full = [s_ for s_ in m["samples"] if (s_[3] or 0) >= 0.98 * most_open]
        peak = max(full, key=lambda s_: s_[1], default=(0, 0, 0, 0))
        sessions = peak[3] or 0
        rss_at_peak = peak[1]
        per = (rss_at_peak - (baseline or 0)) / sessions if sessions else float("nan")
        sink_per = (sink_peak_rss - sink_base) / sink_peak_tls if sink_peak_tls else float("nan")
        label = f"c: {target // 1000}k sessions" if target >= 1000 else f"c: {target} sessions"
        if eff < target:
            label += (f" (capped at {eff}: {nworkers} workers x RLIMIT_NOFILE {nofile})")
        lat = m["latencies"]
        rows.append({
            "scenario": label,
            "messages": f"{m['messages']}",
            "size": f"{a.c_size / 1000:g} KB",
            "conns": (f"{m['connections']} ({sessions} open at peak RSS, max {most_open}; "
                      f"sink peak {sink_peak_tls} TLS)"),
            "msgs/s": f"{m['messages'] / m['wall']:.0f}",
            "MB/s": f"{m['messages'] * a.c_size / m['wall'] / 1e6:.2f}",
            "p50 ms": f"{percentile(lat, 50):.0f}",
            "p99 ms": f"{percentile(lat, 99):.0f}",
            "peak RSS": fmt_kib(m["maxrss_kib"]),
            "RSS/session": f"{per:.1f} KiB" if sessions else "-",
            "sink RSS/session": f"{sink_per:.1f} KiB" if sink_peak_tls else "-",
            "CPU s/1k": f"{m['cpu'] / max(1, m['messages']) * 1000:.3f}",
            "sink CPU s/1k": f"{(sru.ru_utime + sru.ru_stime) / max(1, m['messages']) * 1000:.3f}",
            "resumed": resumed_text([m]),
            "runs": "1",
        })
        log(f"e2e:   c: target {target} (reply delay {delay} ms, engine --workers {nworkers}, sink "
            f"--threads {threads} on {naddr} addresses): {sessions} open sessions at peak "
            f"RSS (max {most_open}), RSS there {rss_at_peak / 1024:.0f} MiB, peak RSS "
            f"{m['maxrss_kib'] / 1024:.0f} MiB; sink: peak {sink_peak_tls} TLS sessions, peak RSS "
            f"{sru.ru_maxrss / 1024:.0f} MiB | {m['summary']}")
        if m["delivered"] != m["messages"] or m["rc"] != 0:
            rows[-1]["note"] = f"not fully delivered: {m['summary']}"
        shutil.rmtree(spool, ignore_errors=True)
    return rows


def listen_overflows():
    """TcpExt ListenOverflows + ListenDrops of the whole machine (/proc/net/netstat)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            kv = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:])))
            return kv.get("ListenOverflows", 0) + kv.get("ListenDrops", 0)
    return 0


def deferred_reasons(path):
    """Not-delivered records of an accounting log, by reason (numbers and addresses elided)."""
    out = {}
    for j in json_lines(path):
        if j.get("status") != "delivered":
            why = re.sub(r"\[[^]]*\]|\d+", "N", j.get("text", "?"))[:60]
            out[why] = out.get(why, 0) + 1
    return out


def long_tail_scenario(a):
    """Scenario d: the same messages to 1,000 domains and to one domain each (issue 17)."""
    rows = []
    work = os.path.join(a.workdir, "d")
    os.makedirs(work, exist_ok=True)
    for domains in a.tail_domains:
        template = os.path.join(work, f"template-{domains}")
        log(f"e2e: d: injecting {a.tail_messages} x {a.tail_size} B for {domains} domains")
        inject(template, a.tail_messages, a.tail_size, domains)
        sink = Sink(work, [a.addresses[0]], a.sink_threads, 0, None)
        spool = os.path.join(work, "spool")
        clone_spool(template, spool)
        shutil.rmtree(template, ignore_errors=True)
        over0 = listen_overflows()
        m = run_engine(work, spool, ["--route", f"*={sink.hostports[0]}"],
                       ["--workers", str(a.workers or 2), "--tls", "disabled"])
        over = listen_overflows() - over0
        sru = sink.stop()
        reasons = deferred_reasons(os.path.join(work, "accounting.jsonl"))
        others = max(0.0, m["machine_busy"] - m["cpu"] - (sru.ru_utime + sru.ru_stime))
        rows.append({
            "scenario": f"d: long tail, {domains} domains, plaintext",
            "messages": f"{m['messages']}",
            "size": f"{a.tail_size / 1000:g} KB",
            "conns": f"{m['connections']}",
            "msgs/s": f"{m['messages'] / m['wall']:.0f}",
            "MB/s": f"{m['messages'] * a.tail_size / m['wall'] / 1e6:.1f}",
            "p50 ms": f"{percentile(m['latencies'], 50):.0f}",
            "p99 ms": f"{percentile(m['latencies'], 99):.0f}",
            "peak RSS": fmt_kib(m["maxrss_kib"]),
            "CPU s/1k": f"{m['cpu'] / max(1, m['messages']) * 1000:.3f}",
            "sink CPU s/1k": f"{(sru.ru_utime + sru.ru_stime) / max(1, m['messages']) * 1000:.3f}",
            "resumed": "n/a",
            "others CPU": f"{others / (m['wall'] * (os.cpu_count() or 1)) * 100:.0f}%",
            "runs": "1",
            "note": (f"deferred {m['deferred']}, user {m['utime']:.1f} s, sys {m['stime']:.1f} s, "
                     f"listen overflows+drops (machine-wide) {over}; not delivered by reason: "
                     f"{json.dumps(reasons) if reasons else 'none'} | {m['summary'][-160:]}"),
        })
        log(f"e2e:   d: {domains} domains: {m['messages'] / m['wall']:.0f} msgs/s, "
            f"cpu {m['cpu']:.1f} s, peak RSS {m['maxrss_kib'] / 1024:.0f} MiB, deferred "
            f"{m['deferred']}, listen overflows {over} | {m['summary']}")
        shutil.rmtree(spool, ignore_errors=True)
    return rows


COLUMNS = ["scenario", "messages", "size", "conns", "msgs/s", "range", "MB/s", "p50 ms", "p99 ms",
           "peak RSS", "RSS/session", "sink RSS/session", "CPU s/1k", "sink CPU s/1k", "resumed",
           "others CPU", "runs"]


def print_table(rows, out):
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in COLUMNS}
    line = " | ".join(c.ljust(widths[c]) for c in COLUMNS)
    print(line, file=out)
    print("-|-".join("-" * widths[c] for c in COLUMNS), file=out)
    for r in rows:
        print(" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in COLUMNS), file=out)
    for r in rows:
        if "note" in r:
            print(f"note: {r['scenario']}: {r['note']}", file=out)


def machine():
    model, cores, mem = "?", os.cpu_count(), 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 1024 / 1024
    except OSError:
        pass
    return f"{cores} cores {model}, {mem:.0f} GiB, kernel {os.uname().release}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI-sized smoke run (~1 minute)")
    p.add_argument("--scenarios", default="a,b,c")
    p.add_argument("--runs", type=int, help="runs per scenario a/b, median reported (default 3)")
    p.add_argument("--messages", type=int, help="messages for a and b (default 100000)")
    p.add_argument("--size", type=int, default=20000, help="body bytes (default 20000)")
    p.add_argument("--domains", type=int, help="domains for a and b (default 1000)")
    p.add_argument("--max-connections", type=int, default=2,
                   help="engine connections per destination in a and b (default 2)")
    p.add_argument("--workers", type=int, help="engine worker threads (default: engine's own)")
    p.add_argument("--addresses", type=int, default=4, help="sink addresses 127.0.0.2.. (4)")
    p.add_argument("--sink-threads", type=int, default=1)
    p.add_argument("--sessions",
                   help="scenario c session targets (default 0,10000,25000,50000)")
    p.add_argument("--c-domains", type=int,
                   help="domains in c (default: max(1000, T/10): at most 10 sessions each)")
    p.add_argument("--c-workers", type=int,
                   help="engine workers in c: each holds up to RLIMIT_NOFILE sessions "
                        "(default: enough for the target, at least 3)")
    p.add_argument("--c-sink-threads", type=int,
                   help="sink workers in c (default: like the engine's)")
    p.add_argument("--c-addresses", type=int,
                   help="sink addresses in c, 127.0.0.2.. (default: enough for the engine's "
                        "connect pacing at the target, at least 8)")
    p.add_argument("--c-size", type=int, default=1000, help="message size in c (default 1000)")
    p.add_argument("--reply-delay-ms", type=int,
                   help="sink reply delay in c (default max(5000, T/5) ms; --quick 500)")
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-e2e"))
    p.add_argument("--out", help="also write the table here")
    p.add_argument("--tail-domains", default="1000,100000",
                   help="scenario d: domain counts, compared in one table (default 1000,100000)")
    p.add_argument("--tail-messages", type=int, default=100000, help="scenario d messages")
    p.add_argument("--tail-size", type=int, default=2000, help="scenario d body bytes (2000)")
    p.add_argument("--chunking", choices=["off", "on", "both"], default="off",
                   help="a/b: the sink offers CHUNKING (RFC 3030), so mxburst sends BDAT; "
                        "'both' runs each scenario with DATA and with BDAT (default off)")
    a = p.parse_args()

    q = a.quick
    a.runs = a.runs or (1 if q else 3)
    a.messages = a.messages or (5000 if q else 100000)
    a.domains = a.domains or (100 if q else 1000)
    a.session_targets = [int(x) for x in (a.sessions or
                                          ("0,500,1000" if q else "0,10000,25000,50000"))
                         .split(",")]
    if a.reply_delay_ms is None and q:
        a.reply_delay_ms = 500
    if q and a.c_domains is None:
        a.c_domains = 100
    a.addresses = [f"127.0.0.{2 + i}" for i in range(a.addresses)]
    a.tail_domains = [int(x) for x in a.tail_domains.split(",")]
    scen = set(a.scenarios.split(","))

    for b in (ENGINE, SINK, INJECT):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"e2e: {b} missing: run tools/build.sh release (or set MXB_BUILD_DIR)")
    nofile = raise_nofile()
    os.makedirs(a.workdir, exist_ok=True)

    header = [f"mxburst e2e bench, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
              f"machine: {machine()}; load before: {os.getloadavg()[0]:.2f}",
              f"build: {BUILD}; RLIMIT_NOFILE {nofile}; sink: {len(a.addresses)} addresses "
              f"({a.addresses[0]}..), --threads {a.sink_threads}; "
              f"engine workers: {a.workers or 'default'}"]
    for h in header:
        log("e2e: " + h)
    rows = []
    extra_common = ["--workers", str(a.workers)] if a.workers else []
    if scen & {"a", "b"}:
        template = os.path.join(a.workdir, "template")
        log(f"e2e: injecting {a.messages} x {a.size} B for {a.domains} domains (once, reused)")
        inject(template, a.messages, a.size, a.domains)
        # (work dir suffix, label suffix, sink options) per body transfer to measure.
        transfers = {"off": [("", "", None)], "on": [("-bdat", ", BDAT", ["--chunking"])],
                     "both": [("", ", DATA", None), ("-bdat", ", BDAT", ["--chunking"])]}
        for suffix, label, sink_extra in transfers[a.chunking]:
            if "a" in scen:
                log(f"e2e: scenario a{label}: many messages per connection")
                rows.append(throughput_scenario(
                    "a" + suffix, f"a: STARTTLS, {a.max_connections} conn/dest, reuse{label}", a,
                    template, extra_common + ["--max-connections", str(a.max_connections)],
                    sink_extra))
            if "b" in scen:
                log(f"e2e: scenario b{label}: one message per connection")
                rows.append(throughput_scenario(
                    "b" + suffix, f"b: STARTTLS, 1 msg/conn{label}", a, template,
                    extra_common + ["--max-connections", str(a.max_connections),
                                    "--max-messages-per-connection", "1"], sink_extra))
    if "c" in scen:
        delay = a.reply_delay_ms if a.reply_delay_ms is not None else "max(5000, T/5)"
        log(f"e2e: scenario c: slow sink ({delay} ms per reply), targets {a.session_targets}, "
            f"engine workers {a.c_workers or 'auto'}, sink workers {a.c_sink_threads or 'auto'}, "
            f"sink addresses {a.c_addresses or 'auto'}")
        rows += sessions_scenario(a)
    if "d" in scen:
        log(f"e2e: scenario d: long tail, {a.tail_messages} messages to {a.tail_domains} domains")
        rows += long_tail_scenario(a)

    outs = [sys.stdout]
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        outs.append(open(a.out, "a"))
    for o in outs:
        print("\n".join(header), file=o)
        if scen & {"a", "b"}:
            print(f"a/b: {a.messages} messages x {a.size} B to {a.domains} domains, medians of "
                  f"{a.runs} run(s) (msgs/s range: min-max)", file=o)
        if "c" in scen:
            delay = a.reply_delay_ms if a.reply_delay_ms is not None else "max(5000, T/5)"
            sizing = "; ".join("%d: %d/%d/%d/%d" % ((t,) + c_sizing(a, t, nofile))
                               for t in a.session_targets)
            print(f"c: {a.c_size} B messages, sink reply delay {delay} ms, one message per "
                  f"connection, engine --workers / sink --threads / sink addresses / domains per "
                  f"target: {sizing}; sessions counted with ss (ESTABLISHED to the sink ports)",
                  file=o)
        if "d" in scen:
            print(f"d: {a.tail_messages} x {a.tail_size} B plaintext to one sink address by "
                  f"--route '*=...', engine --workers {a.workers or 2}, one run each", file=o)
        print_table(rows, o)
        print("latency = claim of the spool file -> final outcome (accounting log queue_ms); "
              "msgs/s over the mxburst process wall time; CPU = user+sys (wait4); others CPU = "
              "share of the machine's cores busy with anything but mxburst and the sink", file=o)
        if o is not sys.stdout:
            o.close()
    # Last: unlinking 100k files is slow on a filesystem mounted with online discard.
    shutil.rmtree(os.path.join(a.workdir, "template"), ignore_errors=True)


if __name__ == "__main__":
    main()
