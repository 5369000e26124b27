#!/usr/bin/env bash
# The host tools the demo and the tests run, installed from Debian/Ubuntu packages when missing:
# one list shared by scripts/demo.sh, scripts/test and .ci/run. Installs only what is missing (and
# a Docker engine only when none answers and none is installed); does nothing when all is there.
#
#   scripts/install-deps.sh           install what is missing (needs root and apt-get)
#   scripts/install-deps.sh --check   print the missing packages and exit 1 if any; install nothing
#
# Not installed here: a Rust toolchain (>= 1.85, from https://rustup.rs; Debian's is too old).
set -euo pipefail

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

log() { printf 'install-deps: %s\n' "$*" >&2; }

# command:package, for every command the scripts and tests run.
#   ip (ip netns, ip link ...)           iproute2
#   ping                                 iputils-ping   (docs/how-it-works.md, tests)
#   curl                                 curl           (demo, tests)
#   setpriv unshare nsenter flock        util-linux     (tests; flock: build-test-image.sh)
#   mount umount                         mount          (tests/faults.rs: a read-only tmpfs)
#   dpkg apt-get                         dpkg           (build-test-image.sh: apt-get download, dpkg -x)
#   ldd                                  libc-bin       (build-test-image.sh, build-image.sh)
#   sha256sum mktemp install             coreutils
#   cc                                   gcc            (the linker cargo uses)
#   strace                               strace         (tests/kill.rs: a kill at each store write)
#   docker-compose                       docker-compose (tests/deploy.rs: deploy/compose.yaml)
#   systemd-analyze                      systemd        (tests/deploy.rs: the unit file)
missing=()
declare -A listed=()
add() { # package: once, in order
    [ -n "${listed[$1]:-}" ] || { listed[$1]=1; missing+=("$1"); }
}
need() { # command package
    command -v "$1" >/dev/null 2>&1 || add "$2"
}
for pair in ip:iproute2 ping:iputils-ping curl:curl \
            setpriv:util-linux unshare:util-linux nsenter:util-linux flock:util-linux \
            mount:mount umount:mount dpkg:dpkg ldd:libc-bin \
            sha256sum:coreutils mktemp:coreutils install:coreutils cc:gcc strace:strace \
            docker-compose:docker-compose systemd-analyze:systemd; do
    need "${pair%%:*}" "${pair#*:}"
done
# The static build of scripts/build-image.sh links against libc.a.
if ! compgen -G '/usr/lib/*/libc.a' >/dev/null && [ ! -e /usr/lib/libc.a ]; then
    add libc6-dev
fi
# A Docker engine: only when none answers and none is installed (.ci/run starts dockerd).
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
    add docker.io
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "warning: no cargo on PATH; install Rust >= 1.85 from https://rustup.rs"
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$check_only" = 1 ]; then
    log "missing: ${missing[*]}"
    printf '%s\n' "${missing[@]}"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "error: missing ${missing[*]}, and no apt-get to install them (a Debian/Ubuntu host is needed); install them by hand"
    exit 1
fi
if [ "${EUID:-$(id -u)}" -ne 0 ]; then
    if [ "${NETATTACH_REQUIRE_PRIVILEGED:-1}" = 0 ]; then
        log "warning: missing ${missing[*]}; not root, so not installing them (tests that need them will be skipped)"
        exit 0
    fi
    log "error: missing ${missing[*]}; install them as root: sudo $0"
    exit 1
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
