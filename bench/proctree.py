"""CPU of processes and process trees from /proc, and free loopback ports, for the benches in
bench/ (cluster.py, compare.py, dane_cpu.py, dead_destination.py). Linux only; standard library.

  cpu0 = tree_cpu(pid)            # user+sys seconds of pid, its live descendants, what they reaped
  ...
  cpu = tree_cpu(pid) - cpu0
  proc_cpu(pid)                   # utime + stime of one running process
"""

import os
import socket

HZ = os.sysconf("SC_CLK_TCK")


def free_port(ip="127.0.0.1"):
    """A TCP port nothing is bound to on ip right now."""
    s = socket.socket()
    s.bind((ip, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stat_fields(pid):
    """(comm, fields after comm) of /proc/PID/stat: fields[0] is the state, [1] the parent,
    [11:15] utime stime cutime cstime in clock ticks. Raises OSError when pid is gone."""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    return st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()


def proc_cpu(pid):
    """utime + stime of a running process, seconds."""
    fields = stat_fields(pid)[1]
    return (int(fields[11]) + int(fields[12])) / HZ


def tree_cpu(root, by_pid=None):
    """user+sys seconds of root and its live descendants, plus everything they reaped
    (utime stime cutime cstime of /proc/PID/stat). by_pid receives {pid: (comm, seconds)}."""
    parents, cpu, comm = {}, {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            name, fields = stat_fields(p)
        except OSError:
            continue
        comm[int(p)] = name
        parents[int(p)] = int(fields[1])
        cpu[int(p)] = sum(int(x) for x in fields[11:15]) / HZ
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
