#!/usr/bin/env bash
# The release build: a fully static position-independent binary linked with musl (no dynamic
# loader, no shared libraries, no glibc start-up), printed on stdout:
# target/<arch>-unknown-linux-musl/release/docker-netattach. It is the default because it starts
# sooner. Exec to exit of `--version` (300-400 runs, posix_spawn+waitpid, this VM; the first three
# measured on 2026-12-02, on a slower host than the last three):
#   dynamic glibc (cargo build --release)             2.5 ms
#   static-pie glibc (+crt-static)                    1.6 ms   (glibc relocates the image first)
#   static glibc, non-PIE (+ relocation-model=static) 1.15 ms
#   static glibc, non-PIE, 2026-12-03                 0.83-0.95 ms
#   static-pie musl (this build)                      0.28-0.29 ms
#   static musl, non-PIE (NETATTACH_PIE=0)            0.21-0.24 ms
# What musl saves is glibc's start-up: it reads the CPU's cache sizes with 30-50 `cpuid`
# instructions, and on a VM each `cpuid` traps to the hypervisor (11.8 µs apiece here, measured
# with a C loop): an empty static glibc program takes 0.65-0.70 ms exec to exit here, the same
# without libc start-up 0.07-0.18 ms. Every glibc process pays it, `ip` too.
# In the musl build, Rust's own run-time CPU feature detection (more `cpuid`, first asked by
# httparse's SIMD parser on the first Docker response) is compiled out with
# --cfg httparse_disable_simd="1" (a Docker response is a few KiB: the scalar parser is as fast
# here), added to the target's rustflags through --config, after those of the cargo
# configuration. (An explicit RUSTFLAGS in the environment replaces all configured rustflags,
# this one too, as cargo always does.)
#
# Position-independent, so that the kernel places the image, and with it the one-shot commands'
# heap (src/arena.rs: an array in .bss), at a random address: a root tool's Docker answers and
# netlink buffers should not sit where an attacker can predict them. It costs ~65 µs a process
# here (musl applies ~7,000 relocations first). NETATTACH_PIE=0 builds position-dependent.
#
# The musl standard library is added with `rustup target add` when missing. Without it (no
# rustup, no network) or with NETATTACH_LIBC=glibc, the build is the static glibc one at
# target/release/docker-netattach (only the final binary gets -C flags there: set for the whole
# build, crt-static would also apply to the proc-macro crates, which cannot be built static on a
# glibc target). A plain `cargo build --release` (or `cargo install`) still works and gives a
# dynamically linked glibc binary.
#
# Default features only: the test hooks (feature test-hooks) never ship.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
MUSL="$(uname -m)-unknown-linux-musl"
LIBC="${NETATTACH_LIBC:-musl}"
case "$LIBC" in musl|glibc) ;; *) echo "build: NETATTACH_LIBC must be musl or glibc" >&2; exit 2 ;; esac

has_musl() { [ -d "$(rustc --print sysroot)/lib/rustlib/$MUSL/lib" ]; }
if [ "$LIBC" = musl ] && ! has_musl; then
    echo "build: adding the $MUSL standard library (rustup target add $MUSL)" >&2
    if ! { command -v rustup >/dev/null && rustup target add "$MUSL" >&2 && has_musl; }; then
        echo "build: warning: no $MUSL standard library; building with glibc instead (starts ~0.5 ms slower on a VM; install it with 'rustup target add $MUSL')" >&2
        LIBC=glibc
    fi
fi

FLAGS=(-C target-feature=+crt-static)
[ "${NETATTACH_PIE:-1}" = 1 ] || FLAGS+=(-C relocation-model=static)
if [ "$LIBC" = musl ]; then
    BIN="$TARGET_DIR/$MUSL/release/docker-netattach"
    echo "build: static musl release build of $BIN" >&2
    # Target rustflags reach the target's crates only (not build scripts or proc-macros);
    # httparse's build script wants the value "1".
    cargo rustc --release --locked --target "$MUSL" \
        --config "target.$MUSL.rustflags = [\"--cfg\", 'httparse_disable_simd=\"1\"']" \
        --bin docker-netattach -- "${FLAGS[@]}" >&2
else
    BIN="$TARGET_DIR/release/docker-netattach"
    echo "build: static glibc release build of $BIN" >&2
    cargo rustc --release --locked --bin docker-netattach -- "${FLAGS[@]}" >&2
fi
# A static(-pie) binary lists no shared libraries ("statically linked" / "not a dynamic
# executable").
# (ldd's output captured first: `grep -q` quitting early would make ldd's SIGPIPE the status.)
if grep -q '=>' <<<"$(ldd "$BIN" 2>&1 || true)"; then
    echo "build: error: $BIN is not static" >&2
    exit 1
fi
echo "$BIN"
