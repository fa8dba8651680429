#!/usr/bin/env bash
# Produces the published research-protocol results of the embedded benchmark in results/protocols/:
# data efficiency, k-shot fine-tuning, zero/few-shot prompting of an offline visual-prefix model, and
# continual learning; three seeds each. Every section prints its own wall time. Then results/claims.md
# is rendered again from these outputs and results/make.sh's records.
#
#   bash results/protocols.sh                                  # every protocol, in this order
#   PROTOCOLS="efficiency k-shot" bash results/protocols.sh    # some of them
#   EXTRA="--device cuda" bash results/protocols.sh            # more `vlbench run` / `continual` options
#   PROTOCOLS=none bash results/protocols.sh                   # nothing run: only results/claims.md rendered
#
# Records with the same config are kept, so an interrupted run goes on where it stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/protocols}"
PROTOCOLS="${PROTOCOLS:-efficiency k-shot prompted continual}"
SEEDS="${SEEDS:-0,1,2}"
VLBENCH="${VLBENCH:-vlbench}"  # a command, words split: "python -m vlbench" works
EXTRA="${EXTRA:-}"
# the published VQA budget (results/make.sh), with a floor on steps so small subsets are trained too
BUDGET="--epochs 5 --set training.patience=0"
status=0

# shellcheck source=results/section.sh
. results/section.sh

for protocol in $PROTOCOLS; do
    case "$protocol" in
        efficiency)
            # shellcheck disable=SC2086
            section efficiency $VLBENCH run --task vqa --baseline vilt --baseline film --baseline text-bert \
                --train-fraction 0.01,0.03,0.1,0.3,1 --seeds "$SEEDS" $BUDGET --min-steps 500 \
                --results-dir "$OUT/efficiency" --quiet $EXTRA
            $VLBENCH efficiency "$OUT/efficiency" --task vqa > "$OUT/efficiency/efficiency-vqa.txt" || status=1
            ;;
        k-shot)
            # shellcheck disable=SC2086
            section k-shot $VLBENCH run --task vqa --baseline vilt --baseline film --baseline text-bert \
                --k-shot 1,4,8 --seeds "$SEEDS" $BUDGET --min-steps 200 --results-dir "$OUT/k-shot" --quiet $EXTRA
            $VLBENCH efficiency "$OUT/k-shot" --task vqa --k-shot > "$OUT/k-shot/k-shot-vqa.txt" || status=1
            ;;
        prompted)
            # one offline image-text-to-text checkpoint (Frozen-style), then k = 0, 1, 4, 8 examples in the prompt
            # (the seeds draw the in-context examples); the records sit beside the k-shot fine-tuning ones
            section visual-prefix $VLBENCH visual-prefix --out "$OUT/visual-prefix-lm"
            mkdir -p "$OUT/k-shot/prompted"
            printf 'model: prompted\npretrained: %s\ntasks: [vqa]\nfamily: prompted\nconfig: {shots: 0, max_new_tokens: 4, batch_size: 32, use_chat_template: false}\n' \
                "$OUT/visual-prefix-lm" > "$OUT/k-shot/prompted/prompted-prefix.yaml"
            for k in 0 1 4 8; do
                # shellcheck disable=SC2086
                section "prompted k=$k" $VLBENCH run --task vqa --baseline "$OUT/k-shot/prompted/prompted-prefix.yaml" \
                    --set "baseline.config.shots=$k" --seeds "$SEEDS" --results-dir "$OUT/k-shot/prompted/shots-$k" \
                    --quiet $EXTRA
            done
            $VLBENCH efficiency "$OUT/k-shot" --task vqa --k-shot > "$OUT/k-shot/k-shot-vqa.txt" || status=1
            ;;
        continual)
            # shellcheck disable=SC2086
            section continual $VLBENCH continual --sequence shapes-families --baseline film --baseline text-bert \
                --seeds "$SEEDS" --epochs 2 --ewc-lambda 100000 --results-dir "$OUT/continual" --quiet $EXTRA
            # one LoRA (and head) per stage over a frozen ViLT, against naive fine-tuning of the same LoRA model
            # shellcheck disable=SC2086
            section continual-lora $VLBENCH continual --sequence shapes-families --baseline vilt-lora \
                --strategy naive --strategy isolated --seeds "$SEEDS" --epochs 2 --results-dir "$OUT/continual" \
                --quiet $EXTRA
            ;;
        none) ;;
        *) echo "unknown protocol $protocol" >&2; status=2 ;;
    esac
done
# the claims page rests on these records, the leaderboard's and the pretrained track's
PROTOCOLS_OUT="$OUT" VLBENCH="$VLBENCH" bash results/claims.sh || status=1
exit $status
