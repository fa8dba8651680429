#!/usr/bin/env bash
# Produces the published leaderboard of the embedded benchmark in results/: every task, every baseline
# that lists it, seeds 0, 1 and 2, then Markdown, CSV, LaTeX and the static page from the records.
#
#   bash results/make.sh                      # all tasks, one run at a time
#   JOBS=8 bash results/make.sh               # eight (task, baseline, seed) runs at once (a GPU machine)
#   TASKS="vqa vmt" bash results/make.sh      # some tasks; records already there with the same config are kept
#   RENDER_ONLY=1 bash results/make.sh        # only the tables, the page and results/claims.md, from the records
#
# The records (the source of every number) go to $RUNS (default results/runs); results/claims.md is
# rendered from them and from results/protocols.sh's and pretrained.sh's outputs (results/claims.sh). Per-run locks let the
# parallel processes share that folder; a task's dataset is built once, under its cache's build lock.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-results/runs}"
JOBS="${JOBS:-1}"
TASKS="${TASKS:-vqa captioning retrieval vmt vmt-masked}"
SEEDS="${SEEDS:-0 1 2}"
VLBENCH="${VLBENCH:-vlbench}"  # a command, words split: "python -m vlbench" works
PYTHON="${PYTHON:-python3}"
EXTRA="${EXTRA:-}"  # more `vlbench run` options, e.g. --device cuda
PROTOCOLS_OUT="${PROTOCOLS_OUT:-results/protocols}"  # results/protocols.sh's outputs, read for the claims page
PRETRAINED_OUT="${PRETRAINED_OUT:-results/pretrained}"  # results/pretrained.sh's outputs, read for it too

# training budget per task: the one-epoch VQA demo default is too short for the joint models to separate
budget() {
    case "$1" in
        vqa) echo "--epochs 5 --set training.patience=0" ;;
        *) echo "" ;;
    esac
}

status=0
if [ -z "${RENDER_ONLY:-}" ]; then
    pids=()
    # one process per (task, baseline, seed): the baselines --all-baselines picks for the task's own
    # dataset, less those whose optional package is not installed (said on stderr)
    jobs_list="$("$PYTHON" - $TASKS <<'EOF'
import sys
import vlbench.builtins  # noqa: F401
from vlbench.models.pretrained import missing_requirement
from vlbench.runner import select_baselines
from vlbench.specs import load_task_spec

for name in sys.argv[1:]:
    task = load_task_spec(name)
    for spec in select_baselines(task, [], True):
        why = missing_requirement(spec.pretrained)
        if why:
            print(f"skip {spec.name} on {name}: {why}", file=sys.stderr)
        else:
            print(name, spec.name)
EOF
)" || exit 2
    while read -r task baseline; do
        for seed in $SEEDS; do
            # shellcheck disable=SC2046
            $VLBENCH run --task "$task" --baseline "$baseline" --seeds "$seed" $(budget "$task") \
                --results-dir "$RUNS" --quiet --wait $EXTRA &
            pids+=($!)
            while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
        done
    done <<< "$jobs_list"
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
fi

$VLBENCH table "$RUNS" --format md --out results/leaderboard.md || status=1
$VLBENCH table "$RUNS" --format csv --out results/leaderboard.csv || status=1
$VLBENCH table "$RUNS" --format latex --out results/leaderboard.tex || status=1
# the claims read the protocol and pretrained-track outputs too (results/protocols.sh, pretrained.sh) when there
claims_from=()
for folder in "$PROTOCOLS_OUT" "$PRETRAINED_OUT"; do
    [ -d "$folder" ] && claims_from+=(--claims-from "$folder")
done
$VLBENCH leaderboard "$RUNS" "${claims_from[@]}" --out results/site || status=1
RUNS="$RUNS" PROTOCOLS_OUT="$PROTOCOLS_OUT" PRETRAINED_OUT="$PRETRAINED_OUT" VLBENCH="$VLBENCH" \
    bash results/claims.sh || status=1
exit $status
