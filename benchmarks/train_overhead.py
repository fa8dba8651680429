"""Training throughput of vlbench's trainer against a bare PyTorch loop, for every baseline of the VQA benchmark.

    python benchmarks/train_overhead.py [--baseline vilt ...] [--steps 150] [--batch-size 64] [--precision auto]

For each baseline, both loops train the same freshly initialised model (same seed, built exactly as the
runner builds it, PEFT included) for the same number of steps at the same batch size. The bare loop
gets every advantage: its batches are collated before the clock starts and already on the device, it
never validates and draws no progress bar. vlbench's time is the wall time of ``fit`` minus its
validation pass (timed separately). Printed per baseline: examples/second of both and the ratio
vlbench / bare (1.0 = no overhead), first over vlbench's training loop (its epochs: data loading, steps,
loss checks), then over all of ``fit`` but validation (adding fixed costs: prepare, release). Counting models (``prior``) have no training loop and are left out.
"""

from __future__ import annotations

import argparse

from _common import add_common_args, bare_loop, fixed_batches, fresh_model, make_setup, trainable_baselines, vlbench_loop


def main() -> None:
    """Measure both loops per baseline and print a table of examples/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--distinct-batches", type=int, default=32,
                        help="distinct pre-collated batches the bare loop cycles through")
    args = parser.parse_args()
    baselines = args.baseline or trainable_baselines("vqa")
    setup = make_setup(args, baselines)
    print(f"batch={args.batch_size} steps={args.steps} threads={args.threads} precision={setup.precision} "
          f"device={setup.device}")
    header = f"{'baseline':<20} {'vlbench ex/s':>13} {'bare ex/s':>10} {'ratio':>7}   {'with setup':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    ratios = []
    for name in baselines:
        config = setup.config(name)
        warm, modalities = fresh_model(setup, name)
        batches = fixed_batches(setup, modalities, min(args.distinct_batches, args.steps))
        bare_loop(setup, warm, batches, min(10, args.steps), config.training.lr)  # kernels and allocator warm
        model, _ = fresh_model(setup, name)
        vlbench_eps, with_setup, _ = vlbench_loop(setup, name, model, modalities)
        model, _ = fresh_model(setup, name)
        bare_eps = bare_loop(setup, model, batches, args.steps, config.training.lr, config.training.grad_clip)
        ratios.append(vlbench_eps / bare_eps)
        print(f"{name:<20} {vlbench_eps:13.1f} {bare_eps:10.1f} {vlbench_eps / bare_eps:7.3f}   {with_setup:10.1f} "
              f"{with_setup / bare_eps:7.3f}", flush=True)
    print(f"lowest ratio vlbench/bare = {min(ratios):.3f}")


if __name__ == "__main__":
    main()
