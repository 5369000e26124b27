#!/usr/bin/env python3
"""A/B comparison of docker-netattach binaries against the minimal `ip` form, interleaved.

  sudo scripts/bench_ab.py [-n ROUNDS] BIN [BIN ...]

One --network=none container (netattach-test:latest, scripts/build-test-image.sh) and one
ordinary keeper container on docker0; each round attaches and detaches that container once with
every binary (`BIN attach C --ip A`, `BIN detach C`) and once with the minimal `ip` form (the
three `ip` processes of scripts/bench.sh), the order rotating from round to round. Prints the
medians, p90s and the ratios to the minimal form: the figures issue 13's notes and the table in
docs/benchmarks.md ("What changed") come from. Everything it makes is named nabab-<random>, uses a
private state directory, and is removed at the end, also on failure. Root, Docker, iproute2.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

IMAGE = os.environ.get("NETATTACH_TEST_IMAGE", "netattach-test:latest")


def run(args, env=None, data=None):
    t = time.perf_counter_ns()
    r = subprocess.run(args, env=env, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode:
        sys.exit(f"bench_ab: {' '.join(args)} failed: {r.stderr.decode().strip()}")
    return (time.perf_counter_ns() - t) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=25)
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    tag = "nabab-" + os.urandom(3).hex()
    state = tempfile.mkdtemp(prefix=tag + ".")
    env = dict(os.environ, DOCKER_NETATTACH_STATE_DIR=state)
    ctr, keep, ns, host = tag + "-c", tag + "-keep", tag, "nb" + tag[-6:] + "ab"
    link = "/var/run/netns/" + ns
    try:
        run(["docker", "run", "-d", "--network", "bridge", "--name", keep, IMAGE, "sleep", "3600"])
        run(["docker", "run", "-d", "--network", "none", "--name", ctr, IMAGE])
        pid = subprocess.check_output(["docker", "inspect", "-f", "{{.State.Pid}}", ctr]).decode().strip()
        os.makedirs("/var/run/netns", exist_ok=True)
        os.symlink(f"/proc/{pid}/ns/net", link)

        def ipmin():
            t = time.perf_counter_ns()
            run(["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", host, "master", "docker0", "up"])
            run(["ip", "-n", ns, "-batch", "-"], data=b"addr add 172.17.151.2/16 dev eth0\n"
                b"link set eth0 up\nlink set lo up\nroute add default via 172.17.0.1\n")
            return (time.perf_counter_ns() - t) / 1e6, run(["ip", "link", "del", host])

        methods = a.bins + ["ip"]
        res = {m: ([], []) for m in methods}
        for i in range(a.rounds):
            for m in methods[i % len(methods):] + methods[:i % len(methods)]:
                if m == "ip":
                    up, down = ipmin()
                else:
                    ip = f"172.17.150.{methods.index(m) + 2}"
                    up = run([m, "attach", ctr, "--ip", ip], env)
                    down = run([m, "detach", ctr], env)
                res[m][0].append(up)
                res[m][1].append(down)
        med = lambda v: sorted(v)[len(v) // 2]
        p90 = lambda v: sorted(v)[int(len(v) * 0.9)]
        ia, idl = med(res["ip"][0]), med(res["ip"][1])
        print(f"{a.rounds} rounds; ms; ratio to the minimal ip form (its detach is `ip link del`)")
        for m in methods:
            up, down = res[m]
            print(f"{m:40s} attach {med(up):6.2f} p90 {p90(up):6.2f} x{med(up) / ia:4.2f}"
                  f"   detach {med(down):6.2f} p90 {p90(down):6.2f} x{med(down) / idl:4.2f}")
    finally:
        for b in a.bins:
            subprocess.run([b, "detach", ctr], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", host], stderr=subprocess.DEVNULL)
        subprocess.run(["docker", "rm", "-f", ctr, keep], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.path.islink(link):
            os.unlink(link)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
