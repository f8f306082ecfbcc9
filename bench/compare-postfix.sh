#!/usr/bin/env bash
# Postfix vs mxburst on the same message set, the same mxburst-sink, the same destinations, TLS
# on both sides (STARTTLS, opportunistic). Measures, never asserts. Only 127.0.0.0/8 is used.
#
#   bench/compare-postfix.sh                    # 100,000 x 20 KB messages, 1,000 domains
#   bench/compare-postfix.sh --messages 20000   # scaled down
#
# Options: --messages N (100000) --size BYTES (20000) --domains N (1000) --addresses K (4 sink
# addresses 127.0.0.2..) --max-connections C (mxburst per destination, 2) --pf-processes P
# (Postfix default_process_limit, 200) --sink-threads T (1) --out FILE (append the table there).
#
# What is timed (both sides start with every message already queued on local disk):
#   Postfix: messages are injected over SMTP into a private instance and put on hold
#     (check_client_access static:HOLD); the clock starts at `postsuper -H ALL; postqueue -f`
#     and stops when the queue directories are empty. CPU = user+sys of the whole master tree
#     (master + reaped children from /proc/<master>/stat cutime/cstime + live descendants),
#     delta between those two instants.
#   mxburst: the same messages (same files, hard-linked) in its spool; wall and user+sys of the
#     `mxburst --drain` process from spawn to exit (wait4).
# Settings of the Postfix instance are written to WORK/postfix/etc/main.cf and listed in
# bench/README.md ("Postfix comparison").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B="${MXB_BUILD_DIR:-build/release}"
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac

MESSAGES=100000 SIZE=20000 DOMAINS=1000 ADDRESSES=4 MAXCONN=2 PFPROC=200 SINK_THREADS=1 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --messages) MESSAGES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --domains) DOMAINS=$2; shift 2 ;;
    --addresses) ADDRESSES=$2; shift 2 ;;
    --max-connections) MAXCONN=$2; shift 2 ;;
    --pf-processes) PFPROC=$2; shift 2 ;;
    --sink-threads) SINK_THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "compare-postfix: unknown option $1" >&2; exit 2 ;;
  esac
done

for x in "$B/engine/mxburst" "$B/tools/mxburst-sink" "$B/tools/mxburst-inject"; do
  [ -x "$x" ] || { echo "compare-postfix: $x missing: run tools/build.sh release" >&2; exit 1; }
done

# --- Postfix from Debian, without a system instance --------------------------------------------
if ! command -v postfix >/dev/null 2>&1; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postfix >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q postfix >/dev/null; }
fi
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/mxb-pf-bench.XXXXXX)
chmod 755 "$WORK"
PF="$WORK/postfix"
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
cleanup() {
  postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port for the instance's smtpd (injection only).
SMTPD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

export ROOT B WORK PF MESSAGES SIZE DOMAINS ADDRESSES MAXCONN PFPROC SINK_THREADS OUT SMTPD_PORT
python3 - <<'PY'
import os, socket, smtplib, statistics, subprocess, sys, threading, time, math
sys.path.insert(0, os.path.join(os.environ["ROOT"], "bench"))
import e2e  # the sink, injection, engine runner and rusage helpers

E = os.environ
work, pf = E["WORK"], E["PF"]
n, size, domains = int(E["MESSAGES"]), int(E["SIZE"]), int(E["DOMAINS"])
addresses = [f"127.0.0.{2 + i}" for i in range(int(E["ADDRESSES"]))]
maxconn, pfproc, sink_threads = int(E["MAXCONN"]), int(E["PFPROC"]), int(E["SINK_THREADS"])
port = E["SMTPD_PORT"]
etc, spool = os.path.join(pf, "etc"), os.path.join(pf, "spool")
e2e.raise_nofile()
log = e2e.log

def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw).stdout

template = os.path.join(work, "template")
log(f"compare: injecting {n} x {size} B for {domains} domains into the template spool")
e2e.inject(template, n, size, domains)
files = sorted(os.path.join(template, "incoming", f) for f in os.listdir(os.path.join(template, "incoming")))

def parse(path):
    """A pickup file: x-sender/x-receiver lines, then the RFC 5322 message."""
    with open(path, "rb") as f:
        data = f.read()
    sender, rcpts, off = None, [], 0
    while True:
        end = data.index(b"\n", off)
        line = data[off:end].rstrip(b"\r")
        key, _, val = line.partition(b":")
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

# ---- one sink for Postfix ------------------------------------------------------------------
rows = []
sink = e2e.Sink(os.path.join(work, "sink-pf"), addresses, sink_threads, 0)
hostports = sink.hostports
def hop(i):
    return hostports[(i - 1) % len(hostports)]

per_hop = max(1, math.ceil(maxconn * domains / len(hostports)))
pf_conc = min(per_hop, max(1, pfproc // len(hostports)))
with open(os.path.join(etc, "transport"), "w") as f:
    for i in range(1, domains + 1):
        h, p = hop(i).rsplit(":", 1)
        f.write(f"d{i}.example smtp:[{h}]:{p}\n")
nexthops = " ".join(f"[{hp.rsplit(':', 1)[0]}]:{hp.rsplit(':', 1)[1]}" for hp in hostports)
main_cf = f"""# Private Postfix instance for bench/compare-postfix.sh (generated)
compatibility_level = 3.6
config_directory = {etc}
queue_directory = {spool}
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
# Injection: everything goes to the hold queue; the timed part starts at its release.
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject
smtpd_tls_security_level = none
# Delivery: the same sink addresses and domains as mxburst's --route.
transport_maps = texthash:{etc}/transport
smtp_tls_security_level = may
smtp_tls_loglevel = 0
smtp_tls_connection_reuse = yes
smtp_tls_session_cache_database = btree:{pf}/data/smtp_scache
smtp_connection_cache_on_demand = yes
smtp_connection_cache_destinations = {nexthops}
smtp_connection_reuse_time_limit = 300s
smtp_destination_recipient_limit = 100
default_process_limit = {pfproc}
default_destination_concurrency_limit = {pf_conc}
smtp_destination_concurrency_limit = {pf_conc}
initial_destination_concurrency = {pf_conc}
smtp_dns_support_level = disabled
smtp_host_lookup = native
"""
with open(os.path.join(etc, "main.cf"), "w") as f:
    f.write(main_cf)
# master.cf: Debian's, with no chroot (nothing copied into the queue directory) and the smtpd
# listener on a free loopback port instead of port 25.
out = []
for line in open("/etc/postfix/master.cf"):
    if line.startswith("smtp      inet"):
        line = f"127.0.0.1:{port} inet  n       -       n       -       -       smtpd\n"
    elif line.startswith("#tlsproxy"):
        line = line[1:]  # TLS connection reuse (smtp_tls_connection_reuse) goes through tlsproxy
    out.append(line)
with open(os.path.join(etc, "master.cf"), "w") as f:
    f.writelines(out)
sh("postconf", "-c", etc, "-F", "*/*/chroot = n")
os.chown(os.path.join(pf, "data"), __import__("pwd").getpwnam("postfix").pw_uid, -1)
env = dict(os.environ, MAIL_CONFIG=etc)
sh("postfix", "-c", etc, "check", env=env)
sh("postfix", "-c", etc, "start", env=env)
for _ in range(100):
    if os.path.exists(os.path.join(spool, "pid", "master.pid")):
        break
    time.sleep(0.1)
master = int(open(os.path.join(spool, "pid", "master.pid")).read().split()[0])
log(f"compare: Postfix {sh('postconf', '-c', etc, '-h', 'mail_version').strip()} master pid "
    f"{master}, smtpd 127.0.0.1:{port}, {len(hostports)} next hops x concurrency {pf_conc}, "
    f"process limit {pfproc}")

# ---- inject into Postfix (untimed) ----------------------------------------------------------
def injector(chunk, errors):
    for attempt in range(3):
        try:
            s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="inject.bench.example", timeout=60)
            break
        except OSError as e:
            time.sleep(1)
    else:
        errors.append("connect failed")
        return
    for path in chunk:
        sender, rcpts, body = parse(path)
        try:
            s.sendmail(sender, rcpts, body)
        except smtplib.SMTPException as e:
            errors.append(f"{path}: {e}")
    s.quit()

t0 = time.monotonic()
nthreads = 8
errors, threads = [], []
for k in range(nthreads):
    th = threading.Thread(target=injector, args=(files[k::nthreads], errors))
    th.start()
    threads.append(th)
for th in threads:
    th.join()
if errors:
    log(f"compare: {len(errors)} injection errors, first: {errors[0]}")

def queue_count(dirs=("maildrop", "incoming", "active", "deferred", "hold")):
    c = {}
    for d in dirs:
        k = 0
        for _, _, fs in os.walk(os.path.join(spool, d)):
            k += len(fs)
        c[d] = k
    return c

for _ in range(600):  # until cleanup has written every message to hold
    c = queue_count()
    if c["hold"] >= n - len(errors) and c["incoming"] == 0 and c["maildrop"] == 0:
        break
    time.sleep(0.2)
log(f"compare: injected into Postfix in {time.monotonic() - t0:.1f} s; queue {queue_count()}")

# ---- Postfix delivery (timed) ---------------------------------------------------------------
HZ = os.sysconf("SC_CLK_TCK")
def tree_cpu(root, by_pid=None):
    """user+sys seconds of root and its live descendants, plus everything they reaped.
    by_pid, when given, receives {pid: (comm, seconds)} of the live tree."""
    parents, cpu, comm = {}, {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            st = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        comm[int(p)] = st[st.index("(") + 1:st.rindex(")")]
        parents[int(p)] = int(f[1])
        cpu[int(p)] = sum(int(x) for x in f[11:15]) / HZ  # utime stime cutime cstime
    total = 0.0
    for pid in cpu:
        q = pid
        for _ in range(64):
            if q == root:
                total += cpu[pid]
                if by_pid is not None:
                    by_pid[pid] = (comm[pid], cpu[pid])
                break
            q = parents.get(q, 0)
            if q <= 1:
                break
    return total

pids0, pids1 = {}, {}
cpu0 = tree_cpu(master, pids0)
t0 = time.monotonic()
sh("postsuper", "-c", etc, "-H", "ALL", env=env)
sh("postqueue", "-c", etc, "-f", env=env)
deadline = t0 + max(600, n / 20)
last = None
while time.monotonic() < deadline:
    c = queue_count()
    if sum(c.values()) == 0:
        break
    if c["deferred"] and c["active"] == 0 and c["incoming"] == 0:
        break  # only deferred mail left: it would wait for a retry
    time.sleep(0.05)
pf_wall = time.monotonic() - t0
pf_cpu = tree_cpu(master, pids1) - cpu0
# Where Postfix's CPU went: live processes by name (the master line includes what it reaped,
# i.e. processes that exited during the run).
by_comm = {}
for pid, (name, sec) in pids1.items():
    by_comm[name] = by_comm.get(name, 0.0) + sec - pids0.get(pid, (name, 0.0))[1]
breakdown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_comm.items(), key=lambda x: -x[1]) if v >= 0.05)
left = queue_count()
sh("postfix", "-c", etc, "stop", env=env)
sru = sink.stop()
pf_sink_cpu = sru.ru_utime + sru.ru_stime
stats = open(sink.stats).read().strip() if os.path.exists(sink.stats) else ""
log(f"compare: Postfix delivered in {pf_wall:.1f} s, CPU {pf_cpu:.1f} s, sink CPU "
    f"{pf_sink_cpu:.1f} s, left {left}; sink stats {stats[:300]}")
delivered_pf = n - sum(left.values())
import json
def sink_conns(path):
    try:
        j = json.loads(open(path).read())
        return f"{j.get('connections')} connections, {j.get('tls_connections')} TLS"
    except (OSError, ValueError):
        return "?"
pf_conns = sink_conns(sink.stats)
try:
    maillog = open(os.path.join(pf, "maillog")).read()
    sent = maillog.count("status=sent")
except OSError:
    sent = -1

# ---- mxburst on the same files (timed) ------------------------------------------------------
sink = e2e.Sink(os.path.join(work, "sink-mx"), addresses, sink_threads, 0)
mx_spool = os.path.join(work, "mx-spool")
e2e.clone_spool(template, mx_spool)
m = e2e.run_engine(os.path.join(work, "sink-mx"), mx_spool, e2e.routes_for(domains, sink.hostports),
                   ["--max-connections", str(maxconn)])
sru = sink.stop()
mx_sink_cpu = sru.ru_utime + sru.ru_stime
mx_conns = sink_conns(sink.stats)
log(f"compare: mxburst: {m['summary']}")

pf_rate, mx_rate = delivered_pf / pf_wall, m["messages"] / m["wall"]
pf_cpk, mx_cpk = pf_cpu / max(1, delivered_pf) * 1000, m["cpu"] / max(1, m["messages"]) * 1000
lines = [
    f"Postfix vs mxburst, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; machine: {e2e.machine()}",
    f"{n} messages x {size} B, {domains} domains, sink {len(hostports)} addresses, STARTTLS (may)",
    f"{'':10} | {'delivered':>9} | {'wall s':>7} | {'msgs/s':>7} | {'CPU s':>6} | "
    f"{'CPU s/1k':>8} | {'sink CPU s':>10} | connections",
    f"{'Postfix':10} | {delivered_pf:>9} | {pf_wall:>7.1f} | {pf_rate:>7.0f} | {pf_cpu:>6.1f} | "
    f"{pf_cpk:>8.3f} | {pf_sink_cpu:>10.1f} | sink saw {pf_conns}; {len(hostports)} next hops "
    f"x concurrency {pf_conc}; maillog: {sent} status=sent",
    f"{'mxburst':10} | {m['delivered']:>9} | {m['wall']:>7.1f} | {mx_rate:>7.0f} | "
    f"{m['cpu']:>6.1f} | {mx_cpk:>8.3f} | {mx_sink_cpu:>10.1f} | sink saw {mx_conns}; "
    f"{maxconn} per domain",
    f"Postfix CPU s by process (live at the end; master includes reaped children): {breakdown}",
    f"ratio mxburst/Postfix: {mx_rate / pf_rate:.1f}x msgs/s; Postfix uses "
    f"{pf_cpk / mx_cpk:.1f}x the CPU per message",
]
print("\n".join(lines))
if E.get("OUT"):
    with open(E["OUT"], "a") as f:
        f.write("\n".join(lines) + "\n")
PY
