#!/usr/bin/python3
"""Scaling-out bench (issue 15): CPU per message of the spool path vs the RabbitMQ path, and of
1 node vs 3 nodes sharing cluster rules in Redis — on one machine, so a ratio of CPU per message
(broker and Redis included), not a speed-up. Measured, never asserted. Loopback only.

Scenarios (same N messages, mxburst-inject --seed 42, one mxburst-sink on 127.0.0.2):
  spool-1     1 node, messages injected into its spool, mxburst --drain
  amqp-1      1 node consuming the messages from a private rabbitmq-server
  amqp-3      3 nodes (own spools, sources 127.0.0.31..33) consuming one queue
  amqp-3+rd   amqp-3 with a scope = "cluster" rule (rate 1,000,000/s, 30 connections) in a
              private redis-server: the lease traffic without the limit binding
  spool-1+out spool-1 with [output.amqp]: every accounting record published to the broker
              (amq.topic, a bound queue), the outcome stream's cost

Columns: wall s (first node start to the sink holding N), msgs/s, CPU ms per 1k messages of the
nodes (wait4 rusage), of the broker (/proc/PID/stat from before the publish to the end: taking
the messages in and handing them out) and of Redis (during the run), their total; extra = total
minus spool-1's total (what the broker path costs per 1k messages). The producers' own CPU
(mxburst-inject for the spool, the pika client for the broker) and the sink's are not counted.

Usage: bench/cluster.py [--messages N] [--rounds R] [--quick]   (python3-pika, rabbitmq-server,
       redis-server; ~2 min per round for 20,000 messages on the 2-core box)
Debian's /usr/bin/python3 (python3-pika from tools/setup.sh), not a pyenv/venv interpreter.
"""

import argparse
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proctree import free_port, proc_cpu  # noqa: E402  /proc CPU sampling, loopback ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("MXB_BUILD_DIR", "build/release"))
ENGINE = os.path.join(BUILD, "engine", "mxburst")
SINK = os.path.join(BUILD, "tools", "mxburst-sink")
INJECT = os.path.join(BUILD, "tools", "mxburst-inject")


def port_free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port(host, port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {host}:{port} after {timeout} s")


class Broker:
    """rabbitmq-server + its own epmd on 127.0.0.1 (as tests/integration/cluster_fixture.cc)."""

    def __init__(self, d):
        self.d = d
        while True:
            self.port = free_port()
            if port_free(self.port + 1) and port_free(self.port + 2):
                break
        with open(f"{d}/enabled_plugins", "w") as f:
            f.write("[].\n")
        with open(f"{d}/rabbitmq.conf", "w") as f:
            f.write(f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n")
        open(f"{d}/env.conf", "w").close()
        self.epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", str(self.port + 2)])
        env = dict(os.environ, HOME=d, RABBITMQ_NODENAME=f"mxbbench{self.port}@localhost",
                   RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(self.port),
                   RABBITMQ_DIST_PORT=str(self.port + 1), ERL_EPMD_ADDRESS="127.0.0.1",
                   ERL_EPMD_PORT=str(self.port + 2), RABBITMQ_MNESIA_BASE=f"{d}/mnesia",
                   RABBITMQ_LOG_BASE=f"{d}/log", RABBITMQ_CONFIG_FILE=f"{d}/rabbitmq.conf",
                   RABBITMQ_CONF_ENV_FILE=f"{d}/env.conf",
                   RABBITMQ_ADVANCED_CONFIG_FILE=f"{d}/advanced.config",
                   RABBITMQ_ENABLED_PLUGINS_FILE=f"{d}/enabled_plugins", RUNNING_UNDER_SYSTEMD="true",
                   RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false")
        self.proc = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env,
                                     stdout=open(f"{d}/broker.log", "w"), stderr=subprocess.STDOUT)
        import pika
        self.params = pika.ConnectionParameters("127.0.0.1", self.port)
        for _ in range(400):
            try:
                pika.BlockingConnection(self.params).close()
                return
            except Exception:
                time.sleep(0.25)
        raise SystemExit("rabbitmq-server did not start: " + d)

    def url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}"

    def bind(self, queue, key):
        import pika
        conn = pika.BlockingConnection(self.params)
        ch = conn.channel()
        ch.queue_declare(queue=queue, durable=True)
        ch.queue_bind(queue=queue, exchange="amq.topic", routing_key=key)
        conn.close()

    def ready(self, queue):
        import pika
        conn = pika.BlockingConnection(self.params)
        n = conn.channel().queue_declare(queue=queue, durable=True, passive=True).method.message_count
        conn.close()
        return n

    def publish(self, queue, bodies):
        import pika
        conn = pika.BlockingConnection(self.params)
        ch = conn.channel()
        ch.queue_declare(queue=queue, durable=True)
        props = pika.BasicProperties(delivery_mode=2)
        for b in bodies:
            ch.basic_publish(exchange="", routing_key=queue, body=b, properties=props)
        while ch.queue_declare(queue=queue, durable=True, passive=True).method.message_count < len(bodies):
            time.sleep(0.1)
        conn.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.epmd.kill()
        self.epmd.wait()


def run(args, scenario, rnd, template, bodies, broker, redis_port, sink_port, work):
    nodes = 3 if scenario.startswith("amqp-3") else 1
    spool_input = scenario.startswith("spool-1")
    outcomes = scenario.endswith("+out")
    tag = f"{scenario}-r{rnd}"
    out = f"{work}/{tag}/received"
    os.makedirs(out)
    sink = subprocess.Popen([SINK, "--listen", f"127.0.0.2:{sink_port}", "--out-dir", out,
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port("127.0.0.2", sink_port)
    queue = f"bench.{tag}"
    b0 = proc_cpu(broker.proc.pid) if broker else 0
    if outcomes:
        broker.bind(queue + ".outcomes", queue + ".outcome")
    elif broker:
        broker.publish(queue, bodies)
    procs = []
    for i in range(nodes):
        d = f"{work}/{tag}/node{i}"
        os.makedirs(d)
        spool = f"{d}/spool"
        if spool_input:
            shutil.copytree(template, spool, copy_function=os.link)
        cfg = f'spool = "{spool}"\ndefault_source_pool = "own"\n[source_pools.own]\naddresses = ["127.0.0.{31 + i}"]\n'
        if broker and not spool_input:
            cfg += f'[input.amqp]\nurl = "{broker.url()}"\nqueue = "{queue}"\nprefetch = 256\n'
        if outcomes:
            cfg += f'[output.amqp]\nurl = "{broker.url()}"\nrouting_key = "{queue}.outcome"\n'
        if redis_port:
            cfg += (f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}"\nnode = "n{i}"\nexpected_nodes = 3\n')
            for k in range(1, 21):
                cfg += (f'[[shaping]]\ndomain = "d{k}.example"\nscope = "cluster"\n'
                        'max_message_rate = "1000000/second"\nmax_connections = 30\n')
        with open(f"{d}/mxburst.toml", "w") as f:
            f.write(cfg)
        argv = [ENGINE, "--allow-root", "--quiet", "--config", f"{d}/mxburst.toml", "--route",
                f"*=127.0.0.2:{sink_port}", "--workers", "1", "--log", f"{d}/log.jsonl"]
        if spool_input:
            argv.append("--drain")
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                      stderr=open(f"{d}/stderr", "w")))
    start = time.time()
    r0 = proc_cpu(redis_pid[0]) if redis_port else 0
    while sum(1 for n in os.listdir(out) if n.endswith(".env")) < args.messages:
        time.sleep(0.05)
        if time.time() - start > 600:
            raise SystemExit(f"{scenario}: timeout")
    wall = time.time() - start
    r1 = proc_cpu(redis_pid[0]) if redis_port else 0
    node_cpu = 0.0
    for p in procs:
        if not spool_input:
            p.send_signal(signal.SIGTERM)
        _, _, ru = os.wait4(p.pid, 0)
        node_cpu += ru.ru_utime + ru.ru_stime
    streamed = None
    if outcomes:  # every record confirmed before the node exited (it waits up to 2 s)
        streamed = broker.ready(queue + ".outcomes")
    b1 = proc_cpu(broker.proc.pid) if broker else 0
    sink.send_signal(signal.SIGTERM)
    sink.wait()
    k = args.messages / 1000.0
    received = sum(1 for n in os.listdir(out) if n.endswith(".env"))
    return dict(scenario=scenario, wall=wall, rate=args.messages / wall, node=node_cpu * 1000 / k,
                broker=(b1 - b0) * 1000 / k, redis=(r1 - r0) * 1000 / k, received=received,
                streamed=streamed)


redis_pid = [0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3,
                    help="run every scenario this many times; the table shows the median round "
                         "(by total CPU; the lower middle one for an even count)")
    args = ap.parse_args()
    if args.quick:
        args.messages = 2000
    work = tempfile.mkdtemp(prefix="mxb-cluster-bench-")
    template = f"{work}/template"
    subprocess.run([INJECT, "--spool", template, "--count", str(args.messages), "--size", "2000",
                    "--domains", "20", "--seed", "42", "--no-fsync"], check=True,
                   stdout=subprocess.DEVNULL)
    inc = f"{template}/incoming"
    bodies = [open(f"{inc}/{n}", "rb").read() for n in sorted(os.listdir(inc))]
    bdir = f"{work}/broker"
    os.makedirs(bdir)
    broker = Broker(bdir)
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                              "--save", "", "--appendonly", "no", "--dir", work],
                             stdout=subprocess.DEVNULL)
    redis_pid[0] = redis.pid
    wait_port("127.0.0.1", redis_port)
    load0 = os.getloadavg()
    scenarios = ("spool-1", "amqp-1", "amqp-3", "amqp-3+rd", "spool-1+out")
    runs = {sc: [] for sc in scenarios}
    try:
        for rnd in range(args.rounds):
            for sc in scenarios:
                runs[sc].append(run(args, sc, rnd, template, bodies,
                                    None if sc == "spool-1" else broker,
                                    redis_port if sc.endswith("+rd") else 0, free_port(), work))
    finally:
        broker.stop()
        redis.kill()
        redis.wait()
    load1 = os.getloadavg()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    # The median round by total CPU (a shared, loaded machine: one round can be far off).
    rows = []
    for sc in scenarios:
        rs = sorted(runs[sc], key=lambda r: r["node"] + r["broker"] + r["redis"])
        r = dict(rs[(len(rs) - 1) // 2])
        r["scenario"] = sc
        r["spread"] = [round((x["node"] + x["broker"] + x["redis"])) for x in runs[sc]]
        rows.append(r)
    base = rows[0]["node"] + rows[0]["broker"] + rows[0]["redis"]
    print(f"cluster bench {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit {commit}: "
          f"{args.messages} messages x 2000 B, 20 domains, 1 worker per node, {os.cpu_count()} "
          f"cores, median of {args.rounds} rounds; load average {load0[0]:.1f} before, "
          f"{load1[0]:.1f} after (CPU ms per 1k messages)")
    print(f"{'scenario':<11} {'wall s':>7} {'msgs/s':>7} {'nodes':>7} {'broker':>7} {'redis':>6} "
          f"{'total':>7} {'extra':>7} {'at sink':>8}")
    for r in rows:
        total = r["node"] + r["broker"] + r["redis"]
        extra = "" if r["streamed"] is None else f"  ({r['streamed']} records streamed)"
        print(f"{r['scenario']:<11} {r['wall']:>7.2f} {r['rate']:>7.0f} {r['node']:>7.0f} "
              f"{r['broker']:>7.0f} {r['redis']:>6.0f} {total:>7.0f} {total - base:>+7.0f} "
              f"{r['received']:>8}  rounds {r['spread']}{extra}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
