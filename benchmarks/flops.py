"""Hardware efficiency of training: achieved FLOP/s of vlbench's trainer against the machine's matmul rate.

    python benchmarks/flops.py [--baseline vilt ...] [--steps 150] [--batch-size 64] [--device cpu|cuda]

Per baseline of the VQA benchmark: the FLOPs of one training step (forward + backward, counted with
``torch.utils.flop_counter.FlopCounterMode`` on a real training batch), the trainer's measured
steps/second, their product (achieved FLOP/s), and that divided by the rate of a large square matrix
multiply measured in the same run (fp32 on CPU, bf16 on GPU; ``--gemm-dtype`` to choose). The bare
PyTorch loop's achieved rate is printed beside it, so what vlbench itself costs is visible.
"""

from __future__ import annotations

import argparse

import torch

from _common import (
    add_common_args,
    bare_loop,
    fixed_batches,
    flops_per_step,
    fresh_model,
    make_setup,
    matmul_rate,
    trainable_baselines,
    vlbench_loop,
)


def main() -> None:
    """Count FLOPs per step, time both loops, print achieved FLOP/s and the fraction of the GEMM rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--gemm-size", type=int, default=4096, help="side of the square matrices of the peak GEMM")
    parser.add_argument("--gemm-dtype", choices=["auto", "fp32", "bf16"], default="auto",
                        help="dtype of the peak GEMM (auto: fp32 on CPU, bf16 on GPU)")
    args = parser.parse_args()
    baselines = args.baseline or trainable_baselines("vqa")
    setup = make_setup(args, baselines)
    gemm = args.gemm_dtype if args.gemm_dtype != "auto" else ("bf16" if setup.device.type == "cuda" else "fp32")
    peak = matmul_rate(setup.device, torch.bfloat16 if gemm == "bf16" else torch.float32, args.gemm_size)
    print(f"batch={args.batch_size} steps={args.steps} threads={args.threads} precision={setup.precision} "
          f"device={setup.device}")
    print(f"matmul rate ({gemm}, {args.gemm_size}^3): {peak / 1e9:.1f} GFLOP/s")
    header = (f"{'baseline':<20} {'GFLOP/step':>11} {'vlbench GFLOP/s':>16} {'of peak':>8} "
              f"{'bare GFLOP/s':>13} {'of peak':>8}")
    print(header)
    print("-" * len(header))
    for name in baselines:
        config = setup.config(name)
        model, modalities = fresh_model(setup, name)
        batches = fixed_batches(setup, modalities, min(32, args.steps))
        counted = batches[:4]  # batches are trimmed to their longest question, so FLOPs vary a little
        flops = sum(flops_per_step(setup, model, b) for b in counted) / len(counted)
        per_example = flops / (sum(int(b["index"].shape[0]) for b in counted) / len(counted))
        bare_loop(setup, model, batches, min(10, args.steps), config.training.lr)  # warm up
        model, _ = fresh_model(setup, name)
        vlbench_eps, _, _ = vlbench_loop(setup, name, model, modalities)
        model, _ = fresh_model(setup, name)
        bare_eps = bare_loop(setup, model, batches, args.steps, config.training.lr, config.training.grad_clip)
        ours, bare = vlbench_eps * per_example, bare_eps * per_example
        print(f"{name:<20} {flops / 1e9:11.3f} {ours / 1e9:16.2f} {ours / peak:8.1%} {bare / 1e9:13.2f} "
              f"{bare / peak:8.1%}", flush=True)


if __name__ == "__main__":
    main()
