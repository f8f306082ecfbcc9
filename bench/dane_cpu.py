#!/usr/bin/env python3
"""CPU per message when every destination is DANE-protected, against PKIX and opportunistic TLS.

Issue 12's bench: scenario a of bench/e2e.py (many messages per connection over STARTTLS), but
MX-routed through a validating unbound on loopback serving one DNSSEC-signed zone, in three
flavours that differ only in how the certificate is authenticated:

  dane   d<i>.dane.bench   MX mx<k>.dane.bench, TLSA 3 1 1 of the sink's key; no CA file given
  pkix   d<i>.pkix.bench   MX starttls-mx<k>.pkix.bench (the prefix: required + verified), --ca-file
  opp    d<i>.opp.bench    MX mx<k>.opp.bench, no TLSA (authenticated denial): opportunistic

The same sink (one certificate naming every MX host, issued by a CA made here), the same
messages, the same engine options. Runs alternate dane / pkix / opp, --runs times, and the table
gives medians of CPU per message (user+sys of mxburst from wait4) and of the sink's CPU.
Measured, never asserted. Needs openssl, ldnsutils and unbound (tools/setup.sh installs them).
Loopback only: the zone's MX hosts are 127.0.0.2.., unbound never leaves 127.0.0.1.

Usage: bench/dane_cpu.py [--messages 20000] [--size 20000] [--domains 1000] [--runs 3]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (the engine/sink/inject runners of the end-to-end bench)
from proctree import free_port  # noqa: E402

FLAVOURS = ("dane", "pkix", "opp")


def sh(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, shell=True, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_certs(d, mx_names):
    """A CA and one ECDSA P-256 leaf naming every MX host; returns the leaf's SPKI SHA-256."""
    san = ",".join(f"DNS:{n}" for n in mx_names)
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
       "-out ca.pem -days 2 -subj /CN=mxburst-bench-ca", d)
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key "
       "-out leaf.csr -subj /CN=" + mx_names[0], d)
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    sh("openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
       "-extfile leaf.ext -out leaf.pem", d)
    spki = subprocess.run("openssl x509 -in leaf.pem -pubkey -noout | openssl pkey -pubin "
                          "-outform DER | sha256sum", cwd=d, shell=True, check=True,
                          stdout=subprocess.PIPE, text=True).stdout.split()[0]
    return spki


def start_unbound(d, zone_text, smtp_port):
    """Signs bench. (ldns) and serves it from a validating unbound; returns (proc, port)."""
    with open(os.path.join(d, "bench.zone"), "w") as f:
        f.write(zone_text)
    sh("ksk=$(ldns-keygen -a ECDSAP256SHA256 -k bench.) && zsk=$(ldns-keygen -a "
       "ECDSAP256SHA256 bench.) && ldns-signzone -n bench.zone $ksk $zsk && echo $ksk > ksk",
       d)
    ksk = open(os.path.join(d, "ksk")).read().strip()
    port = free_port()
    with open(os.path.join(d, "root.hints"), "w") as f:
        f.write(". 3600000 NS root.invalid.\nroot.invalid. 3600000 A 127.0.0.254\n")
    conf = f"""server:
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: ""
  use-syslog: no
  logfile: "{d}/unbound.log"
  interface: 127.0.0.1@{port}
  port: {port}
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  num-threads: 1
  module-config: "validator iterator"
  root-hints: "{d}/root.hints"
  trust-anchor-file: "{d}/{ksk}.key"
remote-control:
  control-enable: no
auth-zone:
  name: "bench."
  zonefile: "{d}/bench.zone.signed"
  for-upstream: yes
  for-downstream: no
"""
    with open(os.path.join(d, "unbound.conf"), "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["unbound", "-d", "-c", os.path.join(d, "unbound.conf")],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "unbound.err"),
                                                                   "w"))
    for _ in range(100):
        r = subprocess.run(["drill", "-p", str(port), "d1.dane.bench", "MX", "@127.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if r.returncode == 0 and "mx0.dane.bench" in r.stdout:
            return proc, port
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"dane_cpu: unbound did not answer: {open(d + '/unbound.err').read()}")


def zone(domains, hosts, smtp_port, spki):
    z = ["$TTL 3600", "bench. IN SOA ns.bench. host.bench. 1 3600 600 86400 60",
         "bench. IN NS ns.bench.", "ns.bench. IN A 127.0.0.1"]
    for k in range(hosts):
        addr = f"127.0.0.{2 + k}"
        z += [f"mx{k}.dane.bench. IN A {addr}",
              f"_{smtp_port}._tcp.mx{k}.dane.bench. IN TLSA 3 1 1 {spki}",
              f"starttls-mx{k}.pkix.bench. IN A {addr}",
              f"mx{k}.opp.bench. IN A {addr}"]
    for i in range(1, domains + 1):
        k = (i - 1) % hosts
        z += [f"d{i}.dane.bench. IN MX 10 mx{k}.dane.bench.",
              f"d{i}.pkix.bench. IN MX 10 starttls-mx{k}.pkix.bench.",
              f"d{i}.opp.bench. IN MX 10 mx{k}.opp.bench."]
    return "\n".join(z) + "\n"


def policy_sources(acct):
    out = {}
    with open(acct) as f:
        for line in f:
            j = json.loads(line)
            key = (j.get("status"), j.get("policy_source"))
            out[key] = out.get(key, 0) + 1
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--domains", type=int, default=1000)
    p.add_argument("--hosts", type=int, default=4, help="MX hosts / sink addresses (4)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-connections", type=int, default=2)
    p.add_argument("--workdir", default=os.path.join(e2e.ROOT, "build", "bench-dane"))
    a = p.parse_args()
    for tool in ("openssl", "ldns-keygen", "ldns-signzone", "unbound", "drill"):
        if shutil.which(tool) is None:
            raise SystemExit(f"dane_cpu: {tool} missing (tools/setup.sh)")
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    e2e.raise_nofile()
    d = a.workdir
    mx_names = []
    for k in range(a.hosts):
        mx_names += [f"mx{k}.dane.bench", f"starttls-mx{k}.pkix.bench", f"mx{k}.opp.bench"]
    spki = make_certs(d, mx_names)
    smtp_port = free_port()
    unbound, dns_port = start_unbound(d, zone(a.domains, a.hosts, smtp_port, spki), smtp_port)
    addresses = [f"127.0.0.{2 + k}" for k in range(a.hosts)]
    try:
        templates = {}
        for fl in FLAVOURS:
            templates[fl] = os.path.join(d, f"template-{fl}")
            r = subprocess.run([e2e.INJECT, "--spool", templates[fl], "--count",
                                str(a.messages), "--size", str(a.size), "--domain-list",
                                ",".join(f"d{i}.{fl}.bench" for i in range(1, a.domains + 1)),
                                "--no-fsync", "--seed", "42"],
                               stdout=subprocess.PIPE, text=True, check=True)
            e2e.log(f"dane_cpu: {fl}: {r.stdout.strip()}")
        runs = {fl: [] for fl in FLAVOURS}
        e2e.log(f"dane_cpu: load before: {os.getloadavg()[0]:.2f}")
        for i in range(a.runs):
            for fl in FLAVOURS:
                work = os.path.join(d, fl)
                sink = e2e.Sink(work, addresses, 1, 0,
                                ["--cert", os.path.join(d, "leaf.pem"), "--key",
                                 os.path.join(d, "leaf.key")], port=smtp_port)
                spool = os.path.join(work, "spool")
                e2e.clone_spool(templates[fl], spool)
                extra = ["--dns", f"127.0.0.1:{dns_port}", "--allow-private-mx",
                         "--smtp-port", str(smtp_port), "--max-connections",
                         str(a.max_connections), "--dnssec-probe", "bench."]
                if fl == "pkix":
                    extra += ["--ca-file", os.path.join(d, "ca.pem")]
                m = e2e.run_engine(work, spool, [], extra)
                sru = sink.stop()
                m["sink_cpu"] = sru.ru_utime + sru.ru_stime
                m["others"] = max(0.0, m["machine_busy"] - m["cpu"] - m["sink_cpu"])
                m["sources"] = policy_sources(os.path.join(work, "accounting.jsonl"))
                runs[fl].append(m)
                e2e.log(f"dane_cpu: run {i + 1}/{a.runs} {fl}: {m['messages']} msgs, "
                        f"cpu {m['cpu']:.2f} s ({m['cpu'] / max(1, m['messages']) * 1e6:.0f} "
                        f"us/msg), sink {m['sink_cpu']:.2f} s, others {m['others']:.1f} s, "
                        f"{m['connections']} conns | {dict(m['sources'])}")
                shutil.rmtree(spool, ignore_errors=True)
        print(f"\nmxburst DANE vs PKIX vs opportunistic, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
              f"{a.messages} x {a.size} B, {a.domains} domains on {a.hosts} MX hosts, "
              f"median of {a.runs}; load {os.getloadavg()[0]:.2f}")
        print(f"{'flavour':8} {'us CPU/msg':>11} {'range':>11} {'sink us/msg':>12} "
              f"{'conns':>6} {'msgs/s':>7}  outcomes")
        base = None
        for fl in FLAVOURS:
            rs = runs[fl]
            per = [r["cpu"] / max(1, r["messages"]) * 1e6 for r in rs]
            med = statistics.median(per)
            if fl == "pkix":
                base = med
            print(f"{fl:8} {med:11.0f} {min(per):5.0f}-{max(per):<5.0f} "
                  f"{statistics.median(r['sink_cpu'] / max(1, r['messages']) * 1e6 for r in rs):12.0f} "
                  f"{statistics.median(r['connections'] for r in rs):6.0f} "
                  f"{statistics.median(r['messages'] / r['wall'] for r in rs):7.0f}  "
                  f"{dict(rs[-1]['sources'])}")
        dane = statistics.median(r["cpu"] / max(1, r["messages"]) * 1e6 for r in runs["dane"])
        if base:
            print(f"dane / pkix CPU per message: {dane / base:.3f}")
    finally:
        unbound.send_signal(signal.SIGTERM)
        unbound.wait(10)


if __name__ == "__main__":
    main()
