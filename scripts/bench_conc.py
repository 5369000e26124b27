#!/usr/bin/env python3
"""50 concurrent detaches of docker-netattach binaries against 50 concurrent `ip link del`.

  sudo scripts/bench_conc.py [-n CONTAINERS] [-r ROUNDS] BIN [BIN ...]

N (default 50) --network=none containers (netattach-test:latest) and one ordinary keeper
container on docker0. Each round, for every binary: attach all N one after the other, then launch
N `BIN detach` at once (Python Popen) and time first start to last exit; then the same containers
get veths with the minimal `ip` form and N `ip link del` are launched at once the same way.
Prints each binary's median total and its ratio to `ip link del` in the same run: the A/B behind
the concurrency figures of issue 13's notes (scripts/bench.sh measures the same from bash).
Everything is named nacc-<random>, uses a private state directory and is removed at the end (8
containers at a time: Docker 20.10.24 can deadlock on larger concurrent removals), also on
failure. Root, Docker, iproute2.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

IMAGE = os.environ.get("NETATTACH_TEST_IMAGE", "netattach-test:latest")


def quiet(args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def at_once(argvs, env=None):
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in argvs]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"bench_conc: {sum(1 for c in codes if c)} of {len(argvs)} failed: {argvs[0][0]}")
    return (time.perf_counter() - t0) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--containers", type=int, default=50)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    tag = "nacc-" + os.urandom(3).hex()
    state = tempfile.mkdtemp(prefix=tag + ".")
    env = dict(os.environ, DOCKER_NETATTACH_STATE_DIR=state)
    names = [f"{tag}-{i}" for i in range(a.containers)]
    hosts = [f"nacc{tag[-6:]}{i}"[:15] for i in range(a.containers)]
    res = {b: [] for b in a.bins + ["ip link del"]}
    try:
        quiet(["docker", "run", "-d", "--network", "bridge", "--name", tag + "-keep", IMAGE, "sleep", "3600"])
        for n in names:
            quiet(["docker", "run", "-d", "--network", "none", "--name", n, IMAGE])
        pids = {n: subprocess.check_output(["docker", "inspect", "-f", "{{.State.Pid}}", n]).decode().strip()
                for n in names}
        for r in range(a.rounds):
            for b in a.bins:
                for n in names:
                    quiet([b, "attach", n], env=env)
                time.sleep(0.3)
                res[b].append(at_once([[b, "detach", n] for n in names], env))
                time.sleep(0.5)
            for n, h in zip(names, hosts):
                quiet(["ip", "link", "add", h, "type", "veth", "peer", "name", "eth0", "netns",
                       f"/proc/{pids[n]}/ns/net"])
                quiet(["ip", "link", "set", h, "master", "docker0", "up"])
            time.sleep(0.3)
            res["ip link del"].append(at_once([["ip", "link", "del", h] for h in hosts]))
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
        print(f"{k:40s} {statistics.median(v):7.0f}  x{statistics.median(v) / base:4.2f}")


if __name__ == "__main__":
    main()
