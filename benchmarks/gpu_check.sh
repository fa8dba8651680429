#!/usr/bin/env bash
# A short prepared run on a CUDA machine: ViLT-B/32 at its real size (384 px, bf16, synthetic data, no
# download) for a few hundred steps; prints examples/s, achieved TFLOP/s against the GPU's bf16 matmul
# rate measured in the same run, and peak memory. Needs only torch and transformers.
#   bash benchmarks/gpu_check.sh                 # eager, 300 steps, batch 32
#   bash benchmarks/gpu_check.sh --compile       # extra arguments go to gpu_check.py
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec "$python" "$here/gpu_check.py" --device cuda --precision bf16 --steps 300 --warmup 20 --batch-size 32 \
    --gemm-size 8192 "$@"
