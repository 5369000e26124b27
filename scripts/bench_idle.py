#!/usr/bin/env python3
"""How an attach slows down after the machine (and dockerd) sat idle, against the minimal `ip` form.

  sudo scripts/bench_idle.py [-n ROUNDS] [--gaps 0,0.03,0.1,0.3] BIN [BIN ...]

Each round, for every idle gap (seconds) and every method, in a random order: sleep the gap,
then time one attach (`BIN attach C`, the tool picks the address), then undo it untimed. The
methods: each BIN; each BIN right after a `GET /_ping` to dockerd (dockerd awake, the rest of
the machine as idle as before); the minimal `ip` form of scripts/bench.sh (three `ip`
processes); `/bin/true` (a process start alone). Prints the median per gap and method.

Why: scripts/bench.sh's per-method phase puts the tool after the other methods, so dockerd has
been idle for ~0.1 s at each of the tool's attaches, while its scale phase (the tool and the
minimal form in turn) keeps it busier; the tool is the only method that waits for dockerd.
Everything it makes is named naidle-<random>, uses a private state directory, and is removed at
the end, also on failure (scripts/bench_lab.py). Root, Docker, iproute2, curl; the image of
scripts/build-test-image.sh.
"""

import argparse
import os
import random
import statistics
import time

from bench_lab import Lab, run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=20)
    ap.add_argument("--gaps", default="0,0.03,0.1,0.3")
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    gaps = [float(g) for g in a.gaps.split(",")]
    tag = "naidle-" + os.urandom(3).hex()
    with Lab(tag, "ni" + tag[-6:], a.bins) as lab:
        ping = ["curl", "-s", "-o", "/dev/null", "--unix-socket", "/var/run/docker.sock", "http://d/_ping"]
        methods = {}  # name: (untimed before, timed, untimed after)
        for b in a.bins:
            attach = lambda b=b: run([b, "attach", lab.ctr], lab.env)
            detach = lambda b=b: run([b, "detach", lab.ctr], lab.env)
            name = b if len(a.bins) > 1 else "tool"
            methods[name] = (None, attach, detach)
            methods[f"{name}, dockerd pinged first"] = (lambda: run(ping), attach, detach)
        methods["minimal ip"] = (None, lambda: lab.ipmin_up("172.17.152.2"), lab.ipmin_down)
        methods["/bin/true"] = (None, lambda: run(["/bin/true"]), lambda: None)
        cases = [(g, m) for g in gaps for m in methods]
        res = {c: [] for c in cases}
        for _ in range(a.rounds):
            for g, m in random.sample(cases, len(cases)):
                before, timed, undo = methods[m]
                time.sleep(g)
                if before:
                    before()
                res[(g, m)].append(timed())
                undo()
    print(f"{a.rounds} rounds; median ms of one attach after an idle gap")
    width = max(28, *(len(m) + 2 for m in methods))
    print(f"{'method':{width}s}" + "".join(f"{f'{g * 1000:.0f} ms idle':>14s}" for g in gaps))
    for m in methods:
        print(f"{m:{width}s}" + "".join(f"{statistics.median(res[(g, m)]):14.2f}" for g in gaps))


if __name__ == "__main__":
    main()
