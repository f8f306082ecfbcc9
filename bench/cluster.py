#!/usr/bin/env python3
"""Scaling-out bench (issue 15): CPU per message of the spool path vs the RabbitMQ path, and of
1 node vs 3 nodes sharing cluster rules in Redis — on one machine, so a ratio of CPU per message
(broker and Redis included), not a speed-up. Measured, never asserted. Loopback only.

Scenarios (same N messages, mxburst-inject --seed 42, one mxburst-sink on 127.0.0.2):
  spool-1     1 node, messages injected into its spool, mxburst --drain
  amqp-1      1 node consuming the messages from a private rabbitmq-server
  amqp-3      3 nodes (own spools, sources 127.0.0.31..33) consuming one queue
  amqp-3+rd   amqp-3 with a scope = "cluster" rule (rate 1,000,000/s, 30 connections) in a
              private redis-server: the lease traffic without the limit binding

Columns: wall s (first node start to the sink holding N), msgs/s, CPU ms per 1k messages of the
nodes (wait4 rusage), of the broker and of Redis (/proc/PID/stat during the run), their total;
extra = total minus spool-1's total (what the broker path costs per 1k messages).

Usage: bench/cluster.py [--messages N] [--quick]      (python3-pika, rabbitmq-server, redis-server)
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("MXB_BUILD_DIR", "build/release"))
ENGINE = os.path.join(BUILD, "engine", "mxburst")
SINK = os.path.join(BUILD, "tools", "mxburst-sink")
INJECT = os.path.join(BUILD, "tools", "mxburst-inject")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def proc_cpu(pid):
    """utime + stime of a running process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


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


def run(args, scenario, template, bodies, broker, redis_port, sink_port, work):
    nodes = 1 if scenario.endswith("-1") else 3
    out = f"{work}/{scenario}/received"
    os.makedirs(out)
    sink = subprocess.Popen([SINK, "--listen", f"127.0.0.2:{sink_port}", "--out-dir", out,
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    queue = f"bench.{scenario}"
    if broker:
        broker.publish(queue, bodies)
    procs = []
    for i in range(nodes):
        d = f"{work}/{scenario}/node{i}"
        os.makedirs(d)
        spool = f"{d}/spool"
        if scenario == "spool-1":
            shutil.copytree(template, spool, copy_function=os.link)
        cfg = f'spool = "{spool}"\ndefault_source_pool = "own"\n[source_pools.own]\naddresses = ["127.0.0.{31 + i}"]\n'
        if broker:
            cfg += f'[input.amqp]\nurl = "{broker.url()}"\nqueue = "{queue}"\nprefetch = 256\n'
        if redis_port:
            cfg += (f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}"\nnode = "n{i}"\nexpected_nodes = 3\n')
            for k in range(1, 21):
                cfg += (f'[[shaping]]\ndomain = "d{k}.example"\nscope = "cluster"\n'
                        'max_message_rate = "1000000/second"\nmax_connections = 30\n')
        with open(f"{d}/mxburst.toml", "w") as f:
            f.write(cfg)
        argv = [ENGINE, "--allow-root", "--quiet", "--config", f"{d}/mxburst.toml", "--route",
                f"*=127.0.0.2:{sink_port}", "--workers", "1", "--log", f"{d}/log.jsonl"]
        if scenario == "spool-1":
            argv.append("--drain")
        procs.append(subprocess.Popen(argv, stderr=open(f"{d}/stderr", "w")))
    start = time.time()
    b0 = proc_cpu(broker.proc.pid) if broker else 0
    r0 = proc_cpu(redis_pid[0]) if redis_port else 0
    while sum(1 for n in os.listdir(out) if n.endswith(".env")) < args.messages:
        time.sleep(0.05)
        if time.time() - start > 600:
            raise SystemExit(f"{scenario}: timeout")
    wall = time.time() - start
    b1 = proc_cpu(broker.proc.pid) if broker else 0
    r1 = proc_cpu(redis_pid[0]) if redis_port else 0
    node_cpu = 0.0
    for p in procs:
        if scenario != "spool-1":
            p.send_signal(signal.SIGTERM)
        _, _, ru = os.wait4(p.pid, 0)
        node_cpu += ru.ru_utime + ru.ru_stime
    sink.send_signal(signal.SIGTERM)
    sink.wait()
    k = args.messages / 1000.0
    return dict(scenario=scenario, wall=wall, rate=args.messages / wall, node=node_cpu * 1000 / k,
                broker=(b1 - b0) * 1000 / k, redis=(r1 - r0) * 1000 / k)


redis_pid = [0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--quick", action="store_true")
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
    time.sleep(0.5)
    rows = []
    try:
        for sc in ("spool-1", "amqp-1", "amqp-3", "amqp-3+rd"):
            rows.append(run(args, sc, template, bodies, None if sc == "spool-1" else broker,
                            redis_port if sc.endswith("+rd") else 0, free_port(), work))
    finally:
        broker.stop()
        redis.kill()
        redis.wait()
    base = rows[0]["node"] + rows[0]["broker"] + rows[0]["redis"]
    print(f"cluster bench: {args.messages} messages x 2000 B, 20 domains, 1 worker per node, "
          f"{os.cpu_count()} cores (CPU ms per 1k messages)")
    print(f"{'scenario':<11} {'wall s':>7} {'msgs/s':>7} {'nodes':>7} {'broker':>7} {'redis':>6} "
          f"{'total':>7} {'extra':>7}")
    for r in rows:
        total = r["node"] + r["broker"] + r["redis"]
        print(f"{r['scenario']:<11} {r['wall']:>7.2f} {r['rate']:>7.0f} {r['node']:>7.0f} "
              f"{r['broker']:>7.0f} {r['redis']:>6.0f} {total:>7.0f} {total - base:>+7.0f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
