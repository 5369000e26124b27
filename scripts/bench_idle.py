#!/usr/bin/env python3
"""How an attach slows down after the machine (and dockerd) sat idle, against the minimal `ip` form.

  sudo scripts/bench_idle.py [-n ROUNDS] [--gaps 0,0.03,0.1,0.3] BIN

Each round, for every idle gap (seconds) and every method, in a random order: sleep the gap,
then time one attach (`BIN attach C`, the tool picks the address), then undo it untimed. The
methods: the tool; the tool right after a `GET /_ping` to dockerd (dockerd awake, the rest of
the machine as idle as before); the minimal `ip` form of scripts/bench.sh (three `ip`
processes); `/bin/true` (a process start alone). Prints the median per gap and method.

Why: scripts/bench.sh's per-method phase puts the tool after the other methods, so dockerd has
been idle for ~0.1 s at each of the tool's attaches, while its scale phase (the tool and the
minimal form in turn) keeps it busier; the tool is the only method that waits for dockerd.
Everything it makes is named naidle-<random>, uses a private state directory, and is removed at
the end, also on failure. Root, Docker, iproute2, curl; the image of
scripts/build-test-image.sh.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

IMAGE = os.environ.get("NETATTACH_TEST_IMAGE", "netattach-test:latest")


def run(args, env=None, data=None):
    r = subprocess.run(args, env=env, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode:
        sys.exit(f"bench_idle: {' '.join(args)} failed: {r.stderr.decode().strip()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=20)
    ap.add_argument("--gaps", default="0,0.03,0.1,0.3")
    ap.add_argument("bin")
    a = ap.parse_args()
    gaps = [float(g) for g in a.gaps.split(",")]
    tag = "naidle-" + os.urandom(3).hex()
    state = tempfile.mkdtemp(prefix=tag + ".")
    env = dict(os.environ, DOCKER_NETATTACH_STATE_DIR=state)
    ctr, keep, ns, host = tag + "-c", tag + "-keep", tag, "ni" + tag[-6:]
    link = "/var/run/netns/" + ns
    try:
        run(["docker", "run", "-d", "--network", "bridge", "--name", keep, IMAGE, "sleep", "3600"])
        run(["docker", "run", "-d", "--network", "none", "--name", ctr, IMAGE])
        pid = subprocess.check_output(["docker", "inspect", "-f", "{{.State.Pid}}", ctr]).decode().strip()
        os.makedirs("/var/run/netns", exist_ok=True)
        os.symlink(f"/proc/{pid}/ns/net", link)

        def tool():
            run([a.bin, "attach", ctr], env)

        def ipmin():
            run(["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", host, "master", "docker0", "up"])
            run(["ip", "-n", ns, "-batch", "-"], data=b"addr add 172.17.152.2/16 dev eth0\n"
                b"link set eth0 up\nlink set lo up\nroute add default via 172.17.0.1\n")

        ping = ["curl", "-s", "-o", "/dev/null", "--unix-socket", "/var/run/docker.sock", "http://d/_ping"]
        methods = {
            "tool": (None, tool, lambda: run([a.bin, "detach", ctr], env)),
            "tool, dockerd pinged first": (lambda: run(ping), tool, lambda: run([a.bin, "detach", ctr], env)),
            "minimal ip": (None, ipmin, lambda: run(["ip", "link", "del", host])),
            "/bin/true": (None, lambda: run(["/bin/true"]), lambda: None),
        }
        cases = [(g, m) for g in gaps for m in methods]
        res = {c: [] for c in cases}
        for _ in range(a.rounds):
            for g, m in random.sample(cases, len(cases)):
                before, timed, undo = methods[m]
                time.sleep(g)
                if before:
                    before()
                t = time.perf_counter_ns()
                timed()
                res[(g, m)].append((time.perf_counter_ns() - t) / 1e6)
                undo()
        print(f"{a.rounds} rounds; median ms of one attach after an idle gap")
        print(f"{'method':28s}" + "".join(f"{f'{g * 1000:.0f} ms idle':>14s}" for g in gaps))
        for m in methods:
            print(f"{m:28s}" + "".join(f"{statistics.median(res[(g, m)]):14.2f}" for g in gaps))
    finally:
        subprocess.run([a.bin, "detach", ctr], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", host], stderr=subprocess.DEVNULL)
        subprocess.run(["docker", "rm", "-f", ctr, keep], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.path.islink(link):
            os.unlink(link)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
