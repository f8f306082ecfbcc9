#!/usr/bin/env python3
"""mxburst vs Postfix (and Haraka) on the same messages, the same mxburst-sink, loopback only.

Measures, never asserts. Run through bench/compare-postfix.sh (installs Postfix from Debian if
missing), or directly when Postfix is installed. See bench/README.md, "Peer comparison".

  bench/compare.py --messages 20000 --runs 3                       # mxburst, Postfix; TLS mode
  bench/compare.py --peers mxburst,postfix,haraka --modes tls,plain,onemsg

Peers (all start with every message already queued on local disk; only delivery is timed):
  mxburst  `mxburst --drain` on a hard-link copy of one mxburst-inject spool; wall and user+sys
           from spawn to exit (wait4).
  postfix  a private Postfix instance (postfix -c DIR); the messages are injected once over SMTP
           into its hold queue (check_client_access static:HOLD), the hold queue is copied aside
           and restored before every run (postsuper -s renames the files to their new inodes);
           timed from `postsuper -H ALL; postqueue -f` until the queue is empty. CPU = user+sys
           of the whole master tree (live processes + what they reaped), delta over the run.
  haraka   Haraka (npm, into a work directory under /tmp, never into the repository) with
           outbound delivery; injected once over SMTP with outbound disabled, its queue/
           directory is hard-link copied aside and restored before every run; timed from the
           spawn of a fresh Haraka until queue/ is empty; CPU minus that of a start on an empty
           queue (measured once). A plugin routes dI.example to the sink (get_mx hook).
Modes: tls (STARTTLS opportunistic, connection reuse), plain (no TLS), onemsg (STARTTLS, one
message per connection, TLS session resumption on). Runs alternate peer by peer, mode by mode.
Connections = what the sink counted (its --stats-file). Only 127.0.0.0/8 is used.
"""

import argparse
import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  the sink, injection, engine runner and rusage helpers
from proctree import free_port, tree_cpu  # noqa: E402  /proc CPU of process trees, ports

log = e2e.log
HARAKA_VERSION = "3.3.4"  # what the figures in bench/README.md were measured with


def sh(*cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"compare: {' '.join(cmd)} exited {r.returncode}: {r.stdout.strip()}")
    return r.stdout


def count_files(d):
    n = 0
    for _, _, fs in os.walk(d):
        n += sum(1 for f in fs if not f.startswith("."))
    return n


def empty_dir(d):
    """Removes what is inside d (Postfix needs the queue directories themselves)."""
    for e in os.listdir(d) if os.path.isdir(d) else []:
        p = os.path.join(d, e)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


def parse_pickup(path):
    """A pickup file: x-sender/x-receiver lines, then the RFC 5322 message."""
    with open(path, "rb") as f:
        data = f.read()
    sender, rcpts, off = None, [], 0
    while True:
        end = data.index(b"\n", off)
        key, _, val = data[off:end].rstrip(b"\r").partition(b":")
        k = key.strip().lower()
        if k not in (b"x-sender", b"x-receiver", b"x-job", b"x-envid"):
            break
        v = val.strip().decode().strip("<>")
        if k == b"x-sender":
            sender = v
        elif k == b"x-receiver":
            rcpts.append(v)
        off = end + 1
    return sender, rcpts, data[off:]


def smtp_inject(port, files, threads=8):
    """Untimed: the template messages over SMTP into a peer's listener on 127.0.0.1:port."""
    errors = []

    def one(chunk):
        for _ in range(30):
            try:
                s = smtplib.SMTP("127.0.0.1", port, local_hostname="inject.bench.example", timeout=120)
                break
            except OSError:
                time.sleep(1)
        else:
            errors.append("connect failed")
            return
        for path in chunk:
            sender, rcpts, body = parse_pickup(path)
            try:
                s.sendmail(sender, rcpts, body)
            except smtplib.SMTPException as e:
                errors.append(f"{path}: {e}")
        s.quit()

    ths = [threading.Thread(target=one, args=(files[k::threads],)) for k in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if errors:
        log(f"compare: {len(errors)} injection errors, first: {errors[0]}")
    return len(errors)


def sink_stats(sink):
    try:
        with open(sink.stats) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return {}


def hop_of(i, hostports):
    return hostports[(i - 1) % len(hostports)]


# ---------------------------------------------------------------------------------------------
class Mxburst:
    name = "mxburst"

    def __init__(self, a, work, template):
        self.a, self.work, self.template = a, os.path.join(work, "mxburst"), template
        r = subprocess.run(["git", "-C", e2e.ROOT, "rev-parse", "--short", "HEAD"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.version = r.stdout.strip()
        os.makedirs(self.work, exist_ok=True)

    def settings(self, mode):
        s = ["--max-connections", str(self.a.max_connections)]
        if mode == "plain":
            s += ["--tls", "disabled"]
        if mode == "onemsg":
            s += ["--max-messages-per-connection", "1"]
        return s

    def run(self, mode, sink):
        spool = os.path.join(self.work, "spool")
        e2e.clone_spool(self.template, spool)
        m = e2e.run_engine(self.work, spool, e2e.routes_for(self.a.domains, sink.hostports),
                           self.settings(mode))
        return {"wall": m["wall"], "cpu": m["cpu"], "delivered": m["delivered"],
                "busy": m["machine_busy"], "note": m["summary"]}


# ---------------------------------------------------------------------------------------------
class Postfix:
    name = "postfix"

    def __init__(self, a, work, files):
        self.a, self.pf = a, os.path.join(work, "postfix")
        self.etc, self.spool = os.path.join(self.pf, "etc"), os.path.join(self.pf, "spool")
        for d in ("etc", "spool", "data"):
            os.makedirs(os.path.join(self.pf, d), exist_ok=True)
        os.chown(os.path.join(self.pf, "data"), pwd.getpwnam("postfix").pw_uid, -1)
        self.env = dict(os.environ, MAIL_CONFIG=self.etc)
        self.port = free_port()
        self.conc = a.pf_concurrency
        self.write_master_cf()
        # Untimed: inject once into the hold queue, keep a copy of it for every run.
        self.write_main_cf("tls", ["127.0.0.2:25"])
        self.start()
        t0 = time.monotonic()
        errors = smtp_inject(self.port, files)
        for _ in range(3000):  # until cleanup has written every message to hold
            c = self.queue_count()
            if c["hold"] >= len(files) - errors and c["incoming"] == 0 and c["maildrop"] == 0:
                break
            time.sleep(0.2)
        self.stop()
        self.hold = os.path.join(work, "postfix-hold")
        shutil.rmtree(self.hold, ignore_errors=True)
        # cp -a: a copy, not links (qmgr and smtp update queue files in place), owners kept.
        subprocess.run(["cp", "-a", os.path.join(self.spool, "hold"), self.hold], check=True)
        log(f"compare: Postfix {self.version}: {count_files(self.hold)} messages in hold after "
            f"{time.monotonic() - t0:.1f} s of injection")

    def write_master_cf(self):
        # Debian's master.cf, smtpd on a free loopback port instead of 25, tlsproxy enabled
        # (smtp_tls_connection_reuse hands TLS to it), no chroot (nothing copied into the queue).
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                if line.startswith("smtp      inet"):
                    line = f"127.0.0.1:{self.port} inet  n       -       n       -       -       smtpd\n"
                elif line.startswith("#tlsproxy"):
                    line = line[1:]
                out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.writelines(out)
        sh("postconf", "-c", self.etc, "-F", "*/*/chroot = n")

    def settings(self, mode, nexthops):
        """(key, value) in main.cf order; bench/README.md explains each one."""
        n, hops = self.a.messages, len(nexthops)
        tls = mode != "plain"
        reuse = mode != "onemsg"
        s = [
            ("smtp_tls_security_level", "may" if tls else "none"),
            ("smtp_tls_connection_reuse", "yes" if tls and reuse else "no"),
            ("smtp_tls_session_cache_database", f"btree:{self.pf}/data/smtp_scache"),
            ("smtp_tls_loglevel", "0"),
            ("smtp_connection_cache_on_demand", "yes" if reuse else "no"),
            ("smtp_connection_cache_destinations", " ".join(nexthops) if reuse else ""),
            ("smtp_connection_cache_time_limit", "10s"),
            ("smtp_connection_reuse_time_limit", "300s"),
            ("smtp_connection_reuse_count_limit", "0"),
            ("default_process_limit", str(self.conc * hops + 20)),
            ("smtp_destination_concurrency_limit", str(self.conc)),
            ("initial_destination_concurrency", str(self.conc)),
            ("smtp_destination_recipient_limit", "100"),
            ("max_use", "10000"),
            ("qmgr_message_active_limit", str(max(20000, n))),
            ("qmgr_message_recipient_limit", str(max(20000, n))),
            ("smtp_dns_support_level", "disabled"),
            ("smtp_host_lookup", "native"),
        ]
        return s

    def write_main_cf(self, mode, hostports):
        with open(os.path.join(self.etc, "transport"), "w") as f:
            for i in range(1, self.a.domains + 1):
                h, p = hop_of(i, hostports).rsplit(":", 1)
                f.write(f"d{i}.example smtp:[{h}]:{p}\n")
        nexthops = [f"[{hp.rsplit(':', 1)[0]}]:{hp.rsplit(':', 1)[1]}" for hp in hostports]
        pf = self.pf
        base = f"""# Private Postfix instance for bench/compare.py (generated; mode {mode})
compatibility_level = 3.6
config_directory = {self.etc}
queue_directory = {self.spool}
data_directory = {pf}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.postfix.example
mydomain = postfix.example
mydestination =
local_transport = error:no local delivery in this bench
alias_maps =
alias_database =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = {pf}
maillog_file = {pf}/maillog
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject
smtpd_tls_security_level = none
transport_maps = texthash:{self.etc}/transport
"""
        body = "".join(f"{k} = {v}\n" for k, v in self.settings(mode, nexthops))
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(base + body)

    def start(self):
        sh("postfix", "-c", self.etc, "check", env=self.env)
        sh("postfix", "-c", self.etc, "start", env=self.env)
        pidf = os.path.join(self.spool, "pid", "master.pid")
        for _ in range(200):
            try:
                self.master = int(open(pidf).read().split()[0])
                os.kill(self.master, 0)
                break
            except (OSError, ValueError, IndexError):
                time.sleep(0.05)
        self.version = sh("postconf", "-c", self.etc, "-h", "mail_version").strip()

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):  # the master (ours, by PID) and its children are gone
            try:
                os.kill(self.master, 0)
            except OSError:
                break
            time.sleep(0.05)

    def queue_count(self):
        return {d: count_files(os.path.join(self.spool, d))
                for d in ("maildrop", "incoming", "active", "deferred", "hold")}

    def run(self, mode, sink):
        for d in ("deferred", "active", "incoming", "maildrop"):  # empty after a run, but
            empty_dir(os.path.join(self.spool, d))                 # a killed one leaves mail
        shutil.rmtree(os.path.join(self.spool, "hold"), ignore_errors=True)
        subprocess.run(["cp", "-a", self.hold, os.path.join(self.spool, "hold")], check=True)
        self.write_main_cf(mode, sink.hostports)
        # postfix start (postfix-script) recreates missing queue directories; -s renames the
        # copied files to their new inode numbers (queue IDs encode the inode).
        # A fresh maillog owned by mail_owner: postsuper, which runs as mail_owner and writes it
        # itself while postlogd is down, cannot open postlogd's root-owned one.
        maillog = os.path.join(self.pf, "maillog")
        if os.path.exists(maillog):
            os.unlink(maillog)
        open(maillog, "w").close()
        os.chown(maillog, pwd.getpwnam("postfix").pw_uid, -1)
        sh("postsuper", "-c", self.etc, "-s", env=self.env)
        self.start()
        time.sleep(0.5)  # qmgr and pickup up: not part of the delivery
        pids0, pids1 = {}, {}
        cpu0 = tree_cpu(self.master, pids0)
        t0, busy0 = time.monotonic(), e2e.machine_busy()
        sh("postsuper", "-c", self.etc, "-H", "ALL", env=self.env)
        sh("postqueue", "-c", self.etc, "-f", env=self.env)
        deadline = t0 + max(600, self.a.messages / 20)
        while time.monotonic() < deadline:
            c = self.queue_count()
            if sum(c.values()) == 0:
                break
            if c["deferred"] and c["active"] == 0 and c["incoming"] == 0:
                break  # only deferred mail left: it would wait for a retry
            time.sleep(0.05)
        wall, busy = time.monotonic() - t0, e2e.machine_busy() - busy0
        cpu = tree_cpu(self.master, pids1) - cpu0
        by = {}
        for pid, (name, sec) in pids1.items():
            by[name] = by.get(name, 0.0) + sec - pids0.get(pid, (name, 0.0))[1]
        left = self.queue_count()
        self.stop()
        note = "by process (master incl. reaped): " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(by.items(), key=lambda x: -x[1]) if v >= 0.05)
        if sum(left.values()):
            note += f"; left in queue {left}"
        return {"wall": wall, "cpu": cpu, "delivered": self.a.messages - sum(left.values()),
                "busy": busy, "note": note}


# ---------------------------------------------------------------------------------------------
class Haraka:
    name = "haraka"

    @staticmethod
    def available():
        return shutil.which("node") and shutil.which("npm")

    def __init__(self, a, work, files):
        self.a = a
        self.npm = a.haraka_dir
        self.bin = os.path.join(self.npm, "node_modules", "Haraka", "bin", "haraka")
        if not os.path.exists(self.bin):
            os.makedirs(self.npm, exist_ok=True)
            log(f"compare: npm install Haraka@{HARAKA_VERSION} into {self.npm}")
            sh("npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
               f"Haraka@{HARAKA_VERSION}", cwd=self.npm)
        with open(os.path.join(self.npm, "node_modules", "Haraka", "package.json")) as f:
            self.version = json.load(f)["version"]
        self.dir = os.path.join(work, "haraka")
        shutil.rmtree(self.dir, ignore_errors=True)
        sh("node", self.bin, "-i", self.dir)
        self.queue = os.path.join(self.dir, "queue")
        self.port = free_port()
        self.routes = os.path.join(self.dir, "routes.json")
        cfg = os.path.join(self.dir, "config")
        self.cfg = cfg
        with open(os.path.join(cfg, "plugins"), "w") as f:
            f.write("bench_route\n")  # nothing else: no inbound checks, no queue plugin
        with open(os.path.join(cfg, "smtp.ini"), "w") as f:
            f.write(f"listen=127.0.0.1:{self.port}\n")  # no nodes=: one process, no cluster
        with open(os.path.join(cfg, "me"), "w") as f:
            f.write("bench.haraka.example\n")
        with open(os.path.join(cfg, "log.ini"), "w") as f:
            f.write("[main]\nlevel=info\ntimestamps=false\nformat=default\n")  # Haraka's default
        os.makedirs(os.path.join(self.dir, "plugins"), exist_ok=True)
        with open(os.path.join(self.dir, "plugins", "bench_route.js"), "w") as f:
            f.write(HARAKA_PLUGIN)
        self.write_config("tls", ["127.0.0.2:25"], disabled=True)
        # Untimed: inject once with outbound disabled; keep a hard-link copy of queue/.
        shutil.rmtree(self.queue, ignore_errors=True)
        t0 = time.monotonic()
        self.start()
        errors = smtp_inject(self.port, files)
        for _ in range(600):
            if count_files(self.queue) >= len(files) - errors:
                break
            time.sleep(0.2)
        self.stop()
        self.template = os.path.join(work, "haraka-queue")
        shutil.rmtree(self.template, ignore_errors=True)
        subprocess.run(["cp", "-al", self.queue, self.template], check=True)
        log(f"compare: Haraka {self.version}: {count_files(self.template)} messages queued after "
            f"{time.monotonic() - t0:.1f} s of injection")
        # The start-up cost on an empty queue (subtracted from every run).
        shutil.rmtree(self.queue, ignore_errors=True)
        os.makedirs(self.queue)
        self.write_config("tls", ["127.0.0.2:25"], disabled=False)
        t0 = time.monotonic()
        self.start()
        self.boot_wall = time.monotonic() - t0
        self.boot_cpu = tree_cpu(self.proc.pid)
        self.stop()
        log(f"compare: Haraka start-up on an empty queue: {self.boot_wall:.2f} s wall, "
            f"{self.boot_cpu:.2f} s CPU")

    def settings(self, mode):
        return [("concurrency_max", str(self.a.haraka_concurrency)),
                ("enable_tls", "false" if mode == "plain" else "true"),
                ("local_mx_ok", "true")]

    def write_config(self, mode, hostports, disabled):
        routes = {f"d{i}.example": hop_of(i, hostports) for i in range(1, self.a.domains + 1)}
        with open(self.routes, "w") as f:
            json.dump(routes, f)
        with open(os.path.join(self.cfg, "outbound.ini"), "w") as f:
            f.write(f"disabled={'true' if disabled else 'false'}\n")
            f.write("".join(f"{k}={v}\n" for k, v in self.settings(mode)))
        with open(os.path.join(self.cfg, "tls.ini"), "w") as f:
            f.write("[outbound]\nrejectUnauthorized=false\n")  # opportunistic, as the others

    def start(self):
        env = dict(os.environ, MXB_HARAKA_ROUTES=self.routes)
        self.out = open(os.path.join(self.dir, "haraka.log"), "a")
        self.proc = subprocess.Popen(["node", self.bin, "-c", self.dir], stdout=self.out,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        for _ in range(600):  # listening = plugins loaded and the queue scanned
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"compare: Haraka exited: see {self.out.name}")
                time.sleep(0.05)
        raise SystemExit(f"compare: Haraka did not listen on 127.0.0.1:{self.port}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()

    def run(self, mode, sink):
        shutil.rmtree(self.queue, ignore_errors=True)
        subprocess.run(["cp", "-al", self.template, self.queue], check=True)
        self.write_config(mode, sink.hostports, disabled=False)
        t0, busy0 = time.monotonic(), e2e.machine_busy()
        self.start()
        deadline = t0 + max(600, self.a.messages / 20)
        while time.monotonic() < deadline and count_files(self.queue) > 0:
            time.sleep(0.05)
        busy = e2e.machine_busy() - busy0
        # Wall from the spawn, start-up included (subtracting boot_wall went negative on a loaded
        # box: a start's wall time is noise); CPU minus the start-up's, which is stable.
        wall = time.monotonic() - t0
        cpu = tree_cpu(self.proc.pid) - self.boot_cpu
        left = count_files(self.queue)
        self.stop()
        return {"wall": wall, "cpu": cpu, "delivered": self.a.messages - left,
                "busy": busy, "note": f"left in queue {left}" if left else ""}


HARAKA_PLUGIN = r"""// bench_route (generated by bench/compare.py): relay everything that was injected
// over loopback and send dI.example to the mxburst-sink address of the bench, never to DNS.
'use strict'
const fs = require('node:fs')
let routes = {}
exports.register = function () {
    routes = JSON.parse(fs.readFileSync(process.env.MXB_HARAKA_ROUTES, 'utf8'))
}
exports.hook_connect = function (next, connection) {
    connection.relaying = true
    next()
}
exports.hook_get_mx = function (next, hmail, domain) {
    const hp = routes[domain]
    if (!hp) return next(DENY, `no bench route for ${domain}`)
    const i = hp.lastIndexOf(':')
    next(OK, { exchange: hp.slice(0, i), port: Number(hp.slice(i + 1)), priority: 0 })
}
"""


# ---------------------------------------------------------------------------------------------
def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peers", default="mxburst,postfix", help="mxburst,postfix,haraka")
    p.add_argument("--peer", action="append", default=[], help="add one peer (e.g. haraka)")
    p.add_argument("--modes", default="tls", help="tls,plain,onemsg")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--domains", type=int, default=1000)
    p.add_argument("--addresses", type=int, default=4)
    p.add_argument("--max-connections", type=int, default=2, help="mxburst, per domain")
    p.add_argument("--pf-concurrency", type=int, default=25, help="Postfix, per next hop")
    p.add_argument("--haraka-concurrency", type=int, default=100)
    p.add_argument("--haraka-dir", default="/tmp/mxb-haraka-npm", help="npm work dir for Haraka")
    p.add_argument("--sink-threads", type=int, default=1)
    p.add_argument("--workdir", help="default: a fresh /tmp/mxb-compare.* (removed afterwards)")
    p.add_argument("--out", help="append the table to this file")
    p.add_argument("--runs-log", help="append each run's figures to this file (JSON lines)")
    a = p.parse_args()
    peers = [x for x in a.peers.split(",") if x] + a.peer
    peers = list(dict.fromkeys(peers))
    modes = [x for x in a.modes.split(",") if x]
    for x in peers:
        if x not in ("mxburst", "postfix", "haraka"):
            raise SystemExit(f"compare: unknown peer {x} (mxburst, postfix, haraka)")
    for x in modes:
        if x not in ("tls", "plain", "onemsg"):
            raise SystemExit(f"compare: unknown mode {x} (tls, plain, onemsg)")
    if "haraka" in peers and not Haraka.available():
        log("compare: node/npm not found: Haraka skipped")
        peers.remove("haraka")
    if "postfix" in peers and not shutil.which("postfix"):
        raise SystemExit("compare: postfix not installed (bench/compare-postfix.sh installs it)")
    e2e.raise_nofile()
    work = a.workdir or __import__("tempfile").mkdtemp(prefix="mxb-compare.", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    objs = {}
    try:
        template = os.path.join(work, "template")
        log(f"compare: injecting {a.messages} x {a.size} B for {a.domains} domains")
        e2e.inject(template, a.messages, a.size, a.domains)
        inc = os.path.join(template, "incoming")
        files = sorted(os.path.join(inc, f) for f in os.listdir(inc))
        for x in peers:
            objs[x] = {"mxburst": lambda: Mxburst(a, work, template),
                       "postfix": lambda: Postfix(a, work, files),
                       "haraka": lambda: Haraka(a, work, files)}[x]()
        addresses = [f"127.0.0.{2 + i}" for i in range(a.addresses)]
        results = {}  # (mode, peer) -> [run dicts]
        for r in range(a.runs):
            for mode in modes:
                for x in peers:
                    if x == "haraka" and mode == "onemsg":
                        continue  # Haraka 3.x never reuses a connection: its tls row is this row
                    sink_dir = os.path.join(work, f"sink-{x}")
                    sink = e2e.Sink(sink_dir, addresses, a.sink_threads, 0)
                    load0 = loadavg()
                    try:
                        m = objs[x].run(mode, sink)
                    finally:
                        sru = sink.stop()
                    st = sink_stats(sink)
                    m.update(sink_cpu=sru.ru_utime + sru.ru_stime, conns=st.get("connections", -1),
                             tls=st.get("tls_connections", -1), received=st.get("messages", -1),
                             load=f"{load0} → {loadavg()}",
                             # CPU of everything else on the box during the timed part (the
                             # sink's whole life is a little longer: an approximation)
                             others=max(0.0, m["busy"] - m["cpu"] - sru.ru_utime - sru.ru_stime))
                    results.setdefault((mode, x), []).append(m)
                    if a.runs_log:
                        with open(a.runs_log, "a") as f:
                            f.write(json.dumps(dict(m, run=r + 1, mode=mode, peer=x,
                                                    time=time.strftime("%H:%M:%S"))) + "\n")
                    log(f"compare: run {r + 1} {mode} {x}: {m['received']} received by the sink, "
                        f"{m['wall']:.1f} s, CPU {m['cpu']:.1f} s "
                        f"({m['cpu'] / max(1, m['received']) * 1e3:.3f} ms/msg), "
                        f"{m['conns']} connections ({m['tls']} TLS), sink CPU {m['sink_cpu']:.1f} s, "
                        f"others {m['others']:.0f} core-s, load {m['load']}; {m['note']}")
        report(a, peers, modes, results, objs)
    finally:
        for x in ("postfix", "haraka"):
            o = objs.get(x)
            if o is not None and x == "postfix":
                o.stop()
        if not a.workdir and not os.environ.get("KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)


def report(a, peers, modes, results, objs):
    med = statistics.median
    lines = [
        f"# peer comparison {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; machine: {e2e.machine()}; "
        f"load at the end {loadavg()}",
        f"# {a.messages} messages x {a.size} B, {a.domains} domains, sink --threads "
        f"{a.sink_threads} on {a.addresses} addresses; {a.runs} run(s) each, alternated, medians "
        f"(min-max); CPU = user+sys of the MTA's whole process tree; connections = sink count",
        "mode | peer | msgs/s | CPU ms/msg | connections | sink CPU ms/msg | others core-s | runs",
        "--- | --- | --- | --- | --- | --- | --- | ---",
    ]
    # A run in which the sink did not receive every message (a peer that deferred most of them)
    # says nothing about CPU per delivered message: it is left out of every figure, and said so.
    complete = {k: [r for r in rs if r["received"] >= a.messages] for k, rs in results.items()}
    for mode in modes:
        for x in peers:
            every = results.get((mode, x))
            if not every:
                continue
            rs = complete[(mode, x)]
            left_out = [r["received"] for r in every if r["received"] < a.messages]
            note = (f"; {len(left_out)} incomplete run(s) left out (received "
                    f"{', '.join(str(n) for n in left_out)} of {a.messages})" if left_out else "")
            if not rs:
                lines.append(f"{mode} | {x} | no complete run | | | | | {note.lstrip('; ')}")
                continue
            rate = [r["received"] / r["wall"] for r in rs]
            cpk = [r["cpu"] / max(1, r["received"]) * 1e3 for r in rs]
            sck = [r["sink_cpu"] / max(1, r["received"]) * 1e3 for r in rs]
            conns = [r["conns"] for r in rs]
            ver = getattr(objs[x], "version", "")
            lines.append(
                f"{mode} | {x} {ver} | {med(rate):.0f} ({min(rate):.0f}-{max(rate):.0f}) | "
                f"{med(cpk):.3f} ({min(cpk):.3f}-{max(cpk):.3f}) | {med(conns):.0f} "
                f"({min(conns)}-{max(conns)}) | {med(sck):.3f} | "
                f"{med([r['others'] for r in rs]):.0f} | "
                f"{', '.join(str(r['received']) for r in rs)} received{note}")
        base = complete.get((mode, "mxburst"))
        if base:
            mx = med([r["cpu"] / max(1, r["received"]) for r in base])
            for x in peers:
                if x != "mxburst" and complete.get((mode, x)):
                    o = med([r["cpu"] / max(1, r["received"]) for r in complete[(mode, x)]])
                    lines.append(f"# {mode}: {x} uses {o / mx:.1f}x mxburst's CPU per message")
    print("\n".join(lines))
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
