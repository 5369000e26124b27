#!/usr/bin/env bash
# The release build: a fully static, position-dependent binary (no dynamic loader, no shared
# libraries, no relocation pass before main) at target/release/docker-netattach, printed on
# stdout. It is the default because it starts sooner. Exec to exit of `--version` (300 runs,
# posix_spawn+waitpid, this VM; scripts/bench.sh measures it on every run):
#   dynamic (cargo build --release)            2.5 ms
#   static-pie (+crt-static)                   1.6 ms   (glibc relocates the image first)
#   static, non-PIE (+ relocation-model=static) 1.15 ms  (a static Rust hello world: 0.9 ms)
# The price of non-PIE: the binary's own code and data sit at a fixed address (heap, stack and
# mmaps are still randomised), as in Go's static binaries such as the CNI plugins. Safe Rust
# leaves little for address randomisation to defend; set NETATTACH_PIE=1 to keep static-pie.
#
# Only the final binary gets these flags (`cargo rustc ... -- -C ...`): set for the whole build
# (RUSTFLAGS), crt-static would also apply to the proc-macro crates, which cannot be built static
# on a glibc target. A plain `cargo build --release` (or `cargo install`) still works and gives
# a dynamically linked PIE binary.
#
# Default features only: the test hooks (feature test-hooks) never ship.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
BIN=target/release/docker-netattach
if [ -n "${CARGO_TARGET_DIR:-}" ]; then BIN="$CARGO_TARGET_DIR/release/docker-netattach"; fi
echo "build: static release build of $BIN" >&2
FLAGS=(-C target-feature=+crt-static)
[ "${NETATTACH_PIE:-0}" = 1 ] || FLAGS+=(-C relocation-model=static)
cargo rustc --release --locked --bin docker-netattach -- "${FLAGS[@]}" >&2
# A static(-pie) binary lists no shared libraries ("statically linked" / "not a dynamic
# executable").
if ldd "$BIN" 2>&1 | grep -q '=>'; then
    echo "build: error: $BIN is not static" >&2
    exit 1
fi
echo "$BIN"
