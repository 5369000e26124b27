#!/usr/bin/env bash
# The built-in example: build the tool and a local nginx image, start nginx with
# --network=none, attach it to docker0, curl it, detach. Needs root and Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bash scripts/build-test-image.sh
BIN=target/release/docker-netattach bash tests/e2e/nginx-curl.sh
