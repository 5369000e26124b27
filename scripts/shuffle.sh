# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/bench_port_order.sh (not run).
#
# shuffle WORD...: sets the array SHUFFLED to the words in a random order (Fisher-Yates on
# $RANDOM). In the calling shell, not in a `$(...)`: bash (5.1 on) reseeds $RANDOM in every
# subshell from the clock, so a shuffle printed from one would not follow `RANDOM=SEED` and a
# seed given again would not repeat the order. Seed once with RANDOM=SEED; after that the
# sequence of SHUFFLED is the seed's, as long as nothing else draws from $RANDOM in between
# differently from one run to another.
shuffle() {
    SHUFFLED=("$@")
    local i j t
    for ((i = ${#SHUFFLED[@]} - 1; i > 0; i--)); do
        j=$((RANDOM % (i + 1)))
        t="${SHUFFLED[i]}" SHUFFLED[i]="${SHUFFLED[j]}" SHUFFLED[j]="$t"
    done
}
