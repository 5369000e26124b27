#!/usr/bin/env bash
# Build the docker-netattach image without a registry: a fully static release build of the tool,
# then `docker build` of the top-level Dockerfile (FROM scratch).
#
# Environment:
#   NETATTACH_IMAGE  tag to build (default: docker-netattach:latest)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

IMAGE="${NETATTACH_IMAGE:-docker-netattach:latest}"
TARGET=x86_64-unknown-linux-gnu
BIN="target/$TARGET/release/docker-netattach"

# Default features only: the test hooks (feature test-hooks) never ship.
echo "build-image: static build of $BIN" >&2
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$TARGET" >&2
# A static(-pie) binary lists no shared libraries ("statically linked" / "not a dynamic
# executable"); one that does would not run FROM scratch.
if ldd "$BIN" 2>&1 | grep -q '=>'; then
    echo "build-image: error: $BIN is not static" >&2
    exit 1
fi
echo "build-image: docker build -t $IMAGE" >&2
docker build -q -t "$IMAGE" . >&2
echo "$IMAGE"
