#!/usr/bin/env python3
"""50 concurrent detaches of docker-netattach binaries against 50 concurrent `ip link del`.

  sudo scripts/bench_conc.py [-n CONTAINERS] [-r ROUNDS] [--by-id] BIN [BIN ...]

N (default 50) --network=none containers (netattach-test:latest) and one ordinary keeper
container on docker0. Each round, for every binary: attach all N one after the other, then launch
N `BIN detach` at once (Python Popen) and time first start to last exit; then the same containers
get veths with the minimal `ip` form and N `ip link del` are launched at once the same way.
Prints each binary's median total and its ratio to `ip link del` in the same run: the A/B behind
the concurrency figures of issue 13's notes (scripts/bench.sh measures the same from bash).
With --by-id each binary also detaches by full container ID (a lease answers that without asking
Docker), which shows what Docker's lookup of a name costs. Also printed per round: dockerd's CPU
time (/proc/<pid>/stat) and the launched processes' (getrusage of the children).
Everything is named nacc-<random>, uses a private state directory and is removed at the end (8
containers at a time: Docker 20.10.24 can deadlock on larger concurrent removals), also on
failure. Root, Docker, iproute2.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

IMAGE = os.environ.get("NETATTACH_TEST_IMAGE", "netattach-test:latest")


def quiet(args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def dockerd_cpu_ms():
    try:
        pid = subprocess.check_output(["pidof", "dockerd"]).decode().split()[0]
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (subprocess.CalledProcessError, OSError, IndexError):
        return 0.0


def children_cpu_ms():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def at_once(argvs, env=None, cpu=None):
    d0, c0 = dockerd_cpu_ms(), children_cpu_ms()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in argvs]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"bench_conc: {sum(1 for c in codes if c)} of {len(argvs)} failed: {argvs[0][0]}")
    took = (time.perf_counter() - t0) * 1000
    if cpu is not None:
        cpu.append((dockerd_cpu_ms() - d0, children_cpu_ms() - c0))
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--containers", type=int, default=50)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("--by-id", action="store_true", help="also detach each container by its full ID")
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    tag = "nacc-" + os.urandom(3).hex()
    state = tempfile.mkdtemp(prefix=tag + ".")
    env = dict(os.environ, DOCKER_NETATTACH_STATE_DIR=state)
    names = [f"{tag}-{i}" for i in range(a.containers)]
    hosts = [f"nacc{tag[-6:]}{i}"[:15] for i in range(a.containers)]
    # (label, binary, by ID)
    runs = [(b, b, False) for b in a.bins] + ([(b + " (by ID)", b, True) for b in a.bins] if a.by_id else [])
    res = {label: [] for label, _, _ in runs}
    res["ip link del"] = []
    cpu = {label: [] for label in res}
    try:
        quiet(["docker", "run", "-d", "--network", "bridge", "--name", tag + "-keep", IMAGE, "sleep", "3600"])
        for n in names:
            quiet(["docker", "run", "-d", "--network", "none", "--name", n, IMAGE])
        pids = {n: subprocess.check_output(["docker", "inspect", "-f", "{{.State.Pid}}", n]).decode().strip()
                for n in names}
        ids = {n: subprocess.check_output(["docker", "inspect", "-f", "{{.Id}}", n]).decode().strip()
               for n in names}
        for r in range(a.rounds):
            for label, b, by_id in runs:
                for n in names:
                    quiet([b, "attach", n], env=env)
                time.sleep(0.3)
                argvs = [[b, "detach", ids[n] if by_id else n] for n in names]
                res[label].append(at_once(argvs, env, cpu[label]))
                time.sleep(0.5)
            for n, h in zip(names, hosts):
                quiet(["ip", "link", "add", h, "type", "veth", "peer", "name", "eth0", "netns",
                       f"/proc/{pids[n]}/ns/net"])
                quiet(["ip", "link", "set", h, "master", "docker0", "up"])
            time.sleep(0.3)
            res["ip link del"].append(at_once([["ip", "link", "del", h] for h in hosts], cpu=cpu["ip link del"]))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in res.items()), flush=True)
            time.sleep(0.5)
    finally:
        for h in hosts:
            subprocess.run(["ip", "link", "del", h], stderr=subprocess.DEVNULL)
        for i in range(0, len(names), 8):
            subprocess.run(["docker", "rm", "-f"] + names[i:i + 8], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["docker", "rm", "-f", tag + "-keep"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(state, ignore_errors=True)
    base = statistics.median(res["ip link del"])
    print(f"{a.containers} at once, {a.rounds} rounds; median total ms, ratio to `ip link del`")
    for k, v in res.items():
        d = statistics.median(c[0] for c in cpu[k])
        p = statistics.median(c[1] for c in cpu[k])
        print(f"{k:40s} {statistics.median(v):7.0f}  x{statistics.median(v) / base:4.2f}"
              f"   CPU per round: dockerd {d:4.0f} ms, processes {p:4.0f} ms")


if __name__ == "__main__":
    main()
