#!/usr/bin/env bash
# Renders results/claims.md from every published record folder there is: results/runs (results/make.sh),
# results/protocols (results/protocols.sh) and results/pretrained (results/pretrained.sh). Each of those
# scripts calls it last, so regenerating any results regenerates the claims; it trains nothing.
#
#   bash results/claims.sh
set -uo pipefail
cd "$(dirname "$0")/.."
VLBENCH="${VLBENCH:-vlbench}"  # a command, words split: "python -m vlbench" works
dirs=()
for folder in "${RUNS:-results/runs}" "${PROTOCOLS_OUT:-results/protocols}" "${PRETRAINED_OUT:-results/pretrained}"; do
    [ -d "$folder" ] && dirs+=("$folder")
done
if [ ${#dirs[@]} -eq 0 ]; then
    echo "error: no record folder (results/runs, results/protocols, results/pretrained) to test the claims on" >&2
    exit 2
fi
# shellcheck disable=SC2086
$VLBENCH claims "${dirs[@]}" --out results/claims.md
