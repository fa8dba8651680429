#!/usr/bin/env bash
# Produces the published robustness results of the embedded VQA benchmark in results/robustness/: text-bert,
# vilt, film and coattention, each trained plain, with augmentation and with adversarial training (seeds 0, 1, 2,
# the leaderboard's budget), every run scored on the corruption, question-perturbation and PGD suites
# (docs/robustness.md). Every section prints its command and its wall time.
#
#   bash results/robustness.sh                             # every section, in this order
#   SECTIONS="plain" bash results/robustness.sh            # some of them
#   RENDER_ONLY=1 bash results/robustness.sh               # only the tables, from the records in $OUT
#   EXTRA="--device cuda" bash results/robustness.sh       # more `vlbench run` options
#
# Sections (one results folder each, so a table compares the baselines trained the same way):
#   plain        the leaderboard's recipe
#   augment      + flip (left/right rewritten in questions and answers), crop, small rotation, brightness and
#                contrast (hue and saturation are refused: the answers name colours), token masking
#   adversarial  + FreeLB/VILLA adversarial training in embedding space, both modalities, K = 2, L2 ball
# Records with the same config are kept, so an interrupted run goes on where it stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/robustness}"
SECTIONS="${SECTIONS:-plain augment adversarial}"
SEEDS="${SEEDS:-0,1,2}"
VLBENCH="${VLBENCH:-vlbench}"  # a command, words split: "python -m vlbench" works
EXTRA="${EXTRA:-}"
BASELINES="--baseline text-bert --baseline vilt --baseline film --baseline coattention"
BUDGET="--epochs 5 --set training.patience=0"   # results/make.sh's VQA budget
AUGMENT='training.augment={flip: 0.5, crop: {scale: [0.8, 1.0]}, rotation: 10, color_jitter: {brightness: 0.2, contrast: 0.2}, token_mask: 0.1}'
ADVERSARIAL='training.adversarial={steps: 2, epsilon: 1.0, step_size: 0.5}'
status=0

# shellcheck source=results/section.sh
. results/section.sh

for name in $SECTIONS; do
    case "$name" in
        plain) options=() ;;
        augment) options=(--set "$AUGMENT") ;;
        adversarial) options=(--set "$ADVERSARIAL") ;;
        *) echo "unknown section $name" >&2; status=2; continue ;;
    esac
    if [ -z "${RENDER_ONLY:-}" ]; then
        # shellcheck disable=SC2086
        section "$name" $VLBENCH run --task vqa $BASELINES --seeds "$SEEDS" $BUDGET "${options[@]}" \
            --robustness --keep-model --results-dir "$OUT/$name" --quiet $EXTRA
    fi
    $VLBENCH table "$OUT/$name" --task vqa --format md --out "$OUT/$name.md" || status=1
    $VLBENCH table "$OUT/$name" --task vqa --format csv --out "$OUT/$name.csv" || status=1
done
exit $status
