#!/usr/bin/env python3
"""A/B comparison of docker-netattach binaries against the minimal `ip` form, interleaved.

  sudo scripts/bench_ab.py [-n ROUNDS] [--pick] [--seed S] [--attached N] [--gap S] BIN [BIN ...]

One --network=none container (netattach-test:latest, scripts/build-test-image.sh) and one
ordinary keeper container on docker0; each round attaches and detaches that container once with
every binary (`BIN attach C --ip A`, or with --pick `BIN attach C` as scripts/bench.sh does,
the address chosen by the tool; then `BIN detach C`) and once with the minimal `ip` form (the
three `ip` processes of scripts/bench.sh), in a random order per round (seeded; the seed is
printed). Not a rotation: a rotation keeps each method after the same one, and an attach that
follows the minimal form's `ip link del` is 0.5-1 ms slower than one that follows a `detach`
(whose deletion goes on in the background), so the first binary named was always the slow one
(two copies of one binary measured 5.42 and 4.73 ms that way). Each BIN is copied afresh into a
private directory first and run from there: how a binary's pages sit in the page cache
moves its figure too (a binary copied an hour earlier measured 0.4-0.5 ms slower than a fresh
copy of itself, in three runs; after `drop_caches` the two were within 0.13 ms), so every binary
compared starts from the same state. Prints the
medians, p90s and the ratios to the minimal form: the figures issue 13's notes and the table in
docs/benchmarks.md ("What changed") come from. With --attached N, N more --network=none
containers stay attached (by the first BIN, in the same state directory) throughout: the A/B
at scale, as in scripts/bench.sh's scale phase. With --gap S, each timed attach follows S seconds
of idleness (scripts/bench.sh's methods sit 20-40 ms apart; see scripts/bench_idle.py). Everything it makes is named nabab-<random>, uses a
private state directory, and is removed at the end, also on failure (scripts/bench_lab.py). Root,
Docker, iproute2.
"""

import argparse
import os
import random
import shutil
import tempfile
import time

from bench_lab import Lab, run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=25)
    ap.add_argument("--pick", action="store_true", help="attach without --ip (the tool picks)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--gap", type=float, default=0.0, help="seconds of idleness before each attach")
    ap.add_argument("--attached", type=int, default=0,
                    help="more containers attached (by the first BIN) throughout, as in the scale phase")
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    tag = "nabab-" + os.urandom(3).hex()
    bindir = tempfile.mkdtemp(prefix=tag + "-bin.")
    try:
        copies = {}
        for i, b in enumerate(a.bins):
            copies[b] = os.path.join(bindir, f"bin{i}")
            shutil.copy2(b, copies[b])
        with Lab(tag, "nb" + tag[-6:] + "ab", a.bins, a.attached) as lab:
            methods = a.bins + ["ip"]
            res = {m: ([], []) for m in methods}
            seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
            order = random.Random(seed)
            for _ in range(a.rounds):
                for m in order.sample(methods, len(methods)):
                    time.sleep(a.gap)
                    if m == "ip":
                        up, down = lab.ipmin_up("172.17.151.2"), lab.ipmin_down()
                    else:
                        ip = f"172.17.150.{methods.index(m) + 2}"
                        up = run([copies[m], "attach", lab.ctr] + ([] if a.pick else ["--ip", ip]), lab.env)
                        down = run([copies[m], "detach", lab.ctr], lab.env)
                    res[m][0].append(up)
                    res[m][1].append(down)
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
    med = lambda v: sorted(v)[len(v) // 2]
    p90 = lambda v: sorted(v)[int(len(v) * 0.9)]
    ia, idl = med(res["ip"][0]), med(res["ip"][1])
    print(f"{a.rounds} rounds (order seed {seed}{', the tool picks the address' if a.pick else ''}"
          f"{f', {a.attached} more containers attached' if a.attached else ''}"
          f"{f', {a.gap * 1000:.0f} ms idle before each attach' if a.gap else ''});"
          " ms; ratio to the minimal ip form (its detach is `ip link del`)")
    for m in methods:
        up, down = res[m]
        print(f"{m:40s} attach {med(up):6.2f} p90 {p90(up):6.2f} x{med(up) / ia:4.2f}"
              f"   detach {med(down):6.2f} p90 {p90(down):6.2f} x{med(down) / idl:4.2f}")


if __name__ == "__main__":
    main()
