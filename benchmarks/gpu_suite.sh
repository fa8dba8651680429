#!/usr/bin/env bash
# Every GPU figure of the README's benchmark section in one prepared run of at most 10 minutes (each part is
# stopped at its own time limit):
#   1. gpu_check.sh        ViLT-B/32 at real size: examples/s, TFLOP/s against the measured bf16 matmul rate, memory
#   2. train_overhead.py   each embedded VQA baseline: vlbench against a bare loop, with the training split
#                          on the device (the default) and collated on the host (--collating), side by side
#   3. flops.py            each baseline's achieved TFLOP/s, trainer and bare loop, against the matmul rate
#   4. hf_trainer.py       vlbench against the Hugging Face Trainer on vilt: speed ratio and loss curves
# Each part's output goes to the terminal and to RESULTS/<part>.txt (RESULTS: $1, else ./gpu-suite).
# A part that fails is reported and the next one runs; the exit status is that of the first failure.
#   bash benchmarks/gpu_suite.sh [RESULTS]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
results="${1:-gpu-suite}"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device visible to torch')" || exit 2
mkdir -p "$results"
export PYTHONUNBUFFERED=1
status=0
part() {  # part NAME SECONDS COMMAND...: run one benchmark under a time limit, keep its output
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$results/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}
small_eval=(--set task.data.val_images=50)  # validation is not what is timed; keep it short
part gpu_check 150 bash "$here/gpu_check.sh"
part train_overhead 300 "$python" "$here/train_overhead.py" --device cuda --steps 100 --repeats 2 --collating \
    --batch-size 64 "${small_eval[@]}"
part flops 75 "$python" "$here/flops.py" --device cuda --steps 30 --batch-size 64 "${small_eval[@]}"
part hf_trainer 60 "$python" "$here/hf_trainer.py" --device cuda --steps 60 --baseline vilt
exit "$status"
