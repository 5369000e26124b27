#!/usr/bin/env bash
# Build the docker-netattach image without a registry: the fully static release build of the
# tool (scripts/build.sh), then `docker build` of the top-level Dockerfile (FROM scratch).
#
# Environment:
#   NETATTACH_IMAGE  tag to build (default: docker-netattach:latest)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

IMAGE="${NETATTACH_IMAGE:-docker-netattach:latest}"
# The one release build (static; see scripts/build.sh), copied into the build context.
BIN="$(bash scripts/build.sh)"
mkdir -p target/image
cp "$BIN" target/image/docker-netattach
echo "build-image: docker build -t $IMAGE" >&2
docker build -q -t "$IMAGE" . >&2
echo "$IMAGE"
