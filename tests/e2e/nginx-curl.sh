#!/usr/bin/env bash
# The nginx curl test, readable as a tutorial: give a --network=none nginx container a real
# interface on docker0, reach it, then take it away again. Every step is checked.
#
#   BIN="$(scripts/build.sh)" tests/e2e/nginx-curl.sh
#
# Needs root, Docker and the test image (scripts/build-test-image.sh builds it). NA_DEMO_IP, when
# set, is the address to attach with (the test suite sets one no other test can take: after the
# detach, step 7 checks that nothing answers on it).
set -euo pipefail

BIN=${BIN:-target/debug/docker-netattach}
IMAGE=${NETATTACH_TEST_IMAGE:-netattach-test:latest}
SUFFIX="$$-$RANDOM"
WEB=na-demo-web-$SUFFIX         # the container we attach
PEER=na-demo-peer-$SUFFIX       # an ordinary container on Docker's bridge
: "${DOCKER_NETATTACH_STATE_DIR:=$(mktemp -d /tmp/na-demo-state.XXXXXX)}"
export DOCKER_NETATTACH_STATE_DIR

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
cleanup() {
    "$BIN" detach "$WEB" >/dev/null 2>&1 || true
    docker rm -f "$WEB" "$PEER" >/dev/null 2>&1 || true
    rm -f "/var/run/netns/$WEB"
    case "$DOCKER_NETATTACH_STATE_DIR" in /tmp/na-demo-state.*) rm -rf "$DOCKER_NETATTACH_STATE_DIR" ;; esac
}
trap cleanup EXIT

step "1. Start nginx with no network at all: it has only lo"
docker run -d --name "$WEB" --network=none "$IMAGE" >/dev/null
docker exec "$WEB" ip -o link | grep -q eth0 && fail "a --network=none container has eth0"
docker network connect bridge "$WEB" 2>&1 | sed 's/^/   docker says: /' || true

step "2. Attach it to docker0: the address is the only thing on stdout"
IP=$("$BIN" "$WEB" ${NA_DEMO_IP:+--ip "$NA_DEMO_IP"})
echo "   $WEB got $IP"
[[ $IP =~ ^172\.17\.[0-9]+\.[0-9]+$ ]] || fail "unexpected address '$IP'"

step "3. curl it from the host"
body=$(curl -s -m 5 "http://$IP/") || fail "curl http://$IP/ failed"
echo "   $body"
[ "$body" = "netattach-test ok" ] || fail "unexpected body '$body'"

step "4. ip netns exec works through /var/run/netns/$WEB"
ip netns exec "$WEB" ip addr show eth0 | sed 's/^/   /'
ip netns exec "$WEB" ip -o addr show eth0 | grep -q "inet $IP/16" || fail "eth0 lacks $IP/16"
routes=$(ip netns exec "$WEB" ip route)
grep -q '^default via 172.17.0.1 dev eth0' <<<"$routes" || fail "no default route in: $routes"

step "5. An ordinary container on Docker's bridge reaches it too"
docker run -d --name "$PEER" --network bridge "$IMAGE" >/dev/null
# (busybox's static wget crashes in this image; nc speaks the HTTP just as well)
docker exec "$PEER" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 $IP 80" | grep -q 'netattach-test ok' \
    || fail "peer cannot reach $IP"
echo "   $PEER fetched http://$IP/"

step "6. list shows it attached"
"$BIN" list | sed 's/^/   /'
"$BIN" list | grep "$WEB" | grep -q attached || fail "list does not show $WEB attached"

step "7. Detach: curl fails, nothing is left behind"
"$BIN" detach "$WEB"
curl -s -m 2 "http://$IP/" >/dev/null && fail "still answering after detach"
[ -e "/var/run/netns/$WEB" ] && fail "netns link left behind"
WEB_ID=$(docker inspect -f '{{.Id}}' "$WEB")
ls /sys/class/net | grep -q "^vna${WEB_ID:0:8}" && fail "veth left behind"
grep -rqs "$WEB_ID" "$DOCKER_NETATTACH_STATE_DIR/leases" && fail "lease left behind"
echo "   no veth, no netns link, no lease"

echo
echo "PASS: nginx-curl"
