#!/usr/bin/env bash
# Build the local Docker image used by the docker-netattach end-to-end tests.
#
# No container registry is needed: the image is assembled from Debian
# packages (nginx + busybox-static) that are downloaded with `apt-get
# download` and unpacked with `dpkg -x` (nothing is installed on the host),
# then packed with `docker import`.
#
# The image carries the label netattach.test.hash=<sha256 of this script>;
# if an image with the same tag and hash already exists, nothing is rebuilt.
#
# Environment:
#   NETATTACH_TEST_IMAGE  image tag to build (default: netattach-test:latest)
set -euo pipefail

IMAGE="${NETATTACH_TEST_IMAGE:-netattach-test:latest}"
LABEL_KEY="netattach.test.hash"
SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
HASH="$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)"

log() { printf 'build-test-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

current_hash() {
    docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$IMAGE" 2>/dev/null || true
}

up_to_date() {
    [ "$(current_hash)" = "$HASH" ]
}

# Fast path: nothing to do.
if up_to_date; then
    log "$IMAGE is up to date"
    exit 0
fi

command -v docker >/dev/null || die "docker not found"
command -v apt-get >/dev/null || die "apt-get not found (Debian/Ubuntu host required)"
command -v dpkg >/dev/null || die "dpkg not found"

WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/build-test-image.XXXXXX")"
cleanup() { rm -rf "$WORKDIR"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Serialise concurrent builds (e.g. several test binaries starting at once).
# The lock is taken on this script file itself, so no lock file is left behind.
if command -v flock >/dev/null; then
    exec 9<"$SCRIPT_PATH"
    flock 9
    if up_to_date; then
        log "$IMAGE is up to date (built by a concurrent run)"
        exit 0
    fi
fi

DEBDIR="$WORKDIR/debs"
EXTRACT="$WORKDIR/extract"
ROOTFS="$WORKDIR/rootfs"
mkdir -p "$DEBDIR" "$EXTRACT" "$ROOTFS"

# --- 1. fetch and unpack packages -----------------------------------------
PACKAGES=(nginx busybox-static)
APT_OPTS=()
if [ "$(id -u)" -eq 0 ]; then
    # _apt cannot write into our private temp dir; avoid the sandbox warning.
    APT_OPTS+=(-o APT::Sandbox::User=root)
fi

download() {
    (cd "$DEBDIR" && apt-get "${APT_OPTS[@]}" -q download "${PACKAGES[@]}") >&2
}

log "downloading ${PACKAGES[*]}"
if ! download; then
    log "apt-get download failed; running apt-get update and retrying"
    apt-get -q update >&2 || die "apt-get update failed"
    download || die "apt-get download ${PACKAGES[*]} failed"
fi

for deb in "$DEBDIR"/*.deb; do
    log "extracting $(basename "$deb")"
    dpkg -x "$deb" "$EXTRACT"
done

NGINX_BIN="$EXTRACT/usr/sbin/nginx"
BUSYBOX_BIN="$EXTRACT/bin/busybox"
[ -x "$NGINX_BIN" ] || die "nginx binary not found in package"
[ -x "$BUSYBOX_BIN" ] || die "busybox binary not found in busybox-static package"

# --- 2. assemble rootfs ----------------------------------------------------
log "assembling rootfs"
mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,etc/nginx,var/www/html,var/log/nginx,var/lib/nginx,run,tmp,root,proc,sys,dev}
chmod 1777 "$ROOTFS/tmp"
chmod 0700 "$ROOTFS/root"

# busybox + applet symlinks (all of them, in /bin)
install -m 0755 "$BUSYBOX_BIN" "$ROOTFS/bin/busybox"
while read -r applet; do
    [ -n "$applet" ] && [ "$applet" != busybox ] || continue
    ln -sf busybox "$ROOTFS/bin/$applet"
done < <("$BUSYBOX_BIN" --list)
for applet in sh ip ping wget sleep cat ls ifconfig hostname true echo route arp nc; do
    [ -L "$ROOTFS/bin/$applet" ] || die "busybox lacks applet '$applet'"
done

# nginx + shared libraries + dynamic loader
install -m 0755 "$NGINX_BIN" "$ROOTFS/usr/sbin/nginx"
copy_lib() {
    local src="$1"
    [ -e "$src" ] || die "library $src (needed by nginx) not found on host"
    mkdir -p "$ROOTFS$(dirname "$src")"
    cp -L "$src" "$ROOTFS$src"
}
ldd_out="$(ldd "$NGINX_BIN")" || die "ldd failed on nginx"
if grep -q 'not found' <<<"$ldd_out"; then
    die "nginx needs libraries missing on the host:
$(grep 'not found' <<<"$ldd_out")"
fi
while read -r line; do
    case "$line" in
        *'=>'*/*) lib="$(sed -E 's/.*=> *([^ ]+).*/\1/' <<<"$line")" ;; # libfoo.so => /path (addr)
        /*)       lib="${line%% *}" ;;                                   # loader: /lib64/ld-...so.2 (addr)
        *)        continue ;;                                            # linux-vdso etc.
    esac
    copy_lib "$lib"
done <<<"$ldd_out"

# configuration and content
cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
www-data:x:33:
nogroup:x:65534:
EOF
cat >"$ROOTFS/etc/nsswitch.conf" <<'EOF'
passwd: files
group:  files
hosts:  files dns
EOF

# NB: no "daemon" directive here; the image CMD passes -g 'daemon off;'.
cat >"$ROOTFS/etc/nginx/nginx.conf" <<'EOF'
user root root;
worker_processes 1;
error_log stderr;
pid /tmp/nginx.pid;

events {
    worker_connections 64;
}

http {
    access_log off;
    sendfile on;
    types {
        text/html  html htm;
        text/plain txt;
    }
    default_type text/plain;

    client_body_temp_path /tmp/nginx-client-body;
    proxy_temp_path       /tmp/nginx-proxy;
    fastcgi_temp_path     /tmp/nginx-fastcgi;
    uwsgi_temp_path       /tmp/nginx-uwsgi;
    scgi_temp_path        /tmp/nginx-scgi;

    server {
        listen 80 default_server;
        listen [::]:80 default_server;
        server_name _;
        root /var/www/html;
        index index.html;
    }
}
EOF
printf 'netattach-test ok\n' >"$ROOTFS/var/www/html/index.html"

# sanity check: the assembled nginx accepts its config (run in a chroot when
# we can, so the copied libraries and the rootfs config are what is tested)
if [ "$(id -u)" -eq 0 ] && command -v chroot >/dev/null; then
    chroot "$ROOTFS" /usr/sbin/nginx -t -q || die "nginx -t failed inside the rootfs"
    # nginx -t creates its temp dirs / pid file; keep /tmp empty in the image
    find "$ROOTFS/tmp" -mindepth 1 -delete
fi

# --- 3. pack and import ------------------------------------------------------
old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
log "importing $IMAGE (hash ${HASH:0:12})"
tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
        --change 'CMD ["/usr/sbin/nginx","-g","daemon off;"]' \
        --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL $LABEL_KEY=$HASH" \
        - "$IMAGE" >/dev/null

up_to_date || die "import finished but $IMAGE does not carry the expected label"

# drop the superseded image, if nothing else uses it
new_id="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi

log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
