#!/usr/bin/env bash
# The built-in example: build the tool and a local nginx image, start nginx with
# --network=none, attach it to docker0, curl it, detach. Needs root, Docker and Rust; installs
# the host tools it runs (curl, iproute2, ...) when missing (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (it creates interfaces): sudo $0"
bash scripts/install-deps.sh
command -v cargo >/dev/null || die "no cargo on PATH; install Rust >= 1.85 from https://rustup.rs"
docker info >/dev/null 2>&1 || die "Docker does not answer; start it (systemctl start docker, or dockerd &)"
BIN="$(bash scripts/build.sh)"
bash scripts/build-test-image.sh
BIN="$BIN" bash tests/e2e/nginx-curl.sh
