#!/usr/bin/env bash
# The release build: a fully static, position-dependent binary linked with musl (no dynamic
# loader, no shared libraries, no relocation pass before main, no glibc start-up), printed on
# stdout: target/<arch>-unknown-linux-musl/release/docker-netattach. It is the default because
# it starts sooner. Exec to exit of `--version` (300 runs, posix_spawn+waitpid, this VM):
#   dynamic glibc (cargo build --release)             2.5 ms
#   static-pie glibc (+crt-static)                    1.6 ms   (glibc relocates the image first)
#   static glibc, non-PIE (+ relocation-model=static) 0.83-0.88 ms
#   static musl, non-PIE (this build)                 0.30 ms
# What musl saves is glibc's start-up: it reads the CPU's cache sizes with 30-50 `cpuid`
# instructions, and on a VM each `cpuid` traps to the hypervisor (11.8 µs apiece here, measured
# with a C loop): an empty static glibc program takes 0.65-0.70 ms exec to exit here, the same
# without libc start-up 0.07-0.18 ms. Every glibc process pays it, `ip` too.
# Rust's own run-time CPU feature detection (more `cpuid`, first asked by httparse's SIMD parser)
# is compiled out with --cfg httparse_disable_simd="1" (a Docker response is a few KiB: the scalar
# parser is as fast here).
#
# The price of non-PIE: the binary's own code and data sit at a fixed address (heap, stack and
# mmaps are still randomised), as in Go's static binaries such as the CNI plugins. Safe Rust
# leaves little for address randomisation to defend; set NETATTACH_PIE=1 to keep static-pie.
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
[ "${NETATTACH_PIE:-0}" = 1 ] || FLAGS+=(-C relocation-model=static)
if [ "$LIBC" = musl ]; then
    BIN="$TARGET_DIR/$MUSL/release/docker-netattach"
    echo "build: static musl release build of $BIN" >&2
    # With --target, RUSTFLAGS reach the target's crates only (not build scripts or proc-macros).
    # (httparse's build script wants the value "1".)
    RUSTFLAGS="${RUSTFLAGS:-} --cfg httparse_disable_simd=\"1\"" \
        cargo rustc --release --locked --target "$MUSL" --bin docker-netattach -- "${FLAGS[@]}" >&2
else
    BIN="$TARGET_DIR/release/docker-netattach"
    echo "build: static glibc release build of $BIN" >&2
    cargo rustc --release --locked --bin docker-netattach -- "${FLAGS[@]}" >&2
fi
# A static(-pie) binary lists no shared libraries ("statically linked" / "not a dynamic
# executable").
if ldd "$BIN" 2>&1 | grep -q '=>'; then
    echo "build: error: $BIN is not static" >&2
    exit 1
fi
echo "$BIN"
