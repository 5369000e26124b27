"""What scripts/bench_ab.py and scripts/bench_idle.py share (imported, not run).

`Lab(tag, host, bins, attached)`: one --network=none container (netattach-test:latest,
scripts/build-test-image.sh) with a /var/run/netns link for the minimal `ip` form, one ordinary
keeper container on docker0 (an empty bridge flushes its neighbour cache), a private state
directory for the tool, and `attached` more --network=none containers attached by the first of
`bins` throughout (as in scripts/bench.sh's scale phase). Everything
is named <tag>-..., and a `with` block removes it at its end, also on failure: the tool binaries
given detach the container, the minimal form's veth is deleted. Root, Docker, iproute2.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

IMAGE = os.environ.get("NETATTACH_TEST_IMAGE", "netattach-test:latest")


def run(args, env=None, data=None):
    """Runs a command (its output discarded) and returns the milliseconds it took; exits with its
    error when it fails."""
    t = time.perf_counter_ns()
    r = subprocess.run(args, env=env, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode:
        name = os.path.basename(sys.argv[0])
        sys.exit(f"{name}: {' '.join(args)} failed: {r.stderr.decode().strip()}")
    return (time.perf_counter_ns() - t) / 1e6


class Lab:
    def __init__(self, tag, host, bins=(), attached=0):
        self.state = tempfile.mkdtemp(prefix=tag + ".")
        self.env = dict(os.environ, DOCKER_NETATTACH_STATE_DIR=self.state)
        self.ctr, self.keep, self.ns, self.host = tag + "-c", tag + "-keep", tag, host
        self.link = "/var/run/netns/" + tag
        self.bins = list(bins)
        self.attached = [f"{tag}-s{k}" for k in range(attached if bins else 0)]

    def __enter__(self):
        try:
            run(["docker", "run", "-d", "--network", "bridge", "--name", self.keep, IMAGE, "sleep", "3600"])
            run(["docker", "run", "-d", "--network", "none", "--name", self.ctr, IMAGE])
            pid = subprocess.check_output(["docker", "inspect", "-f", "{{.State.Pid}}", self.ctr]).decode().strip()
            os.makedirs("/var/run/netns", exist_ok=True)
            os.symlink(f"/proc/{pid}/ns/net", self.link)
            for name in self.attached:
                run(["docker", "run", "-d", "--network", "none", "--name", name, IMAGE, "sleep", "3600"])
            for name in self.attached:
                run([self.bins[0], "attach", name], self.env)
        except BaseException:
            self.__exit__()
            raise
        return self

    def ipmin_up(self, addr):
        """The minimal `ip` form of scripts/bench.sh (three `ip` processes); milliseconds."""
        t = time.perf_counter_ns()
        run(["ip", "link", "add", self.host, "type", "veth", "peer", "name", "eth0", "netns", self.ns])
        run(["ip", "link", "set", self.host, "master", "docker0", "up"])
        run(["ip", "-n", self.ns, "-batch", "-"], data=f"addr add {addr}/16 dev eth0\n"
            "link set eth0 up\nlink set lo up\nroute add default via 172.17.0.1\n".encode())
        return (time.perf_counter_ns() - t) / 1e6

    def ipmin_down(self):
        """`ip link del` of the minimal form's veth; milliseconds."""
        return run(["ip", "link", "del", self.host])

    def __exit__(self, *_):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        for b in self.bins:
            subprocess.run([b, "detach", self.ctr], env=self.env, **quiet)
        for name in self.attached:
            subprocess.run([self.bins[0], "detach", name], env=self.env, **quiet)
        subprocess.run(["ip", "link", "del", self.host], **quiet)
        # 8 at a time: Docker 20.10.24 can deadlock on larger concurrent removals.
        names = [self.ctr, self.keep] + self.attached
        for i in range(0, len(names), 8):
            subprocess.run(["docker", "rm", "-f"] + names[i:i + 8], **quiet)
        if os.path.islink(self.link):
            os.unlink(self.link)
        shutil.rmtree(self.state, ignore_errors=True)
