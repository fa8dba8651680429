"""Training throughput of vlbench's trainer against a bare PyTorch loop, for every baseline of the VQA benchmark.

    python benchmarks/train_overhead.py [--baseline vilt ...] [--steps 150] [--repeats 3] [--batch-size 64]

For each baseline, both loops train the same freshly initialised model (same seed, built exactly as the
runner builds it, PEFT included) for the same number of steps at the same batch size. The bare loop
gets every advantage: its batches are collated before the clock starts and already on the device, it
never validates and draws no progress bar. vlbench's time is the wall time of ``fit`` minus its
validation pass (timed separately). Printed per baseline: examples/second of both and the ratio
vlbench / bare (1.0 = no overhead), first over vlbench's training loop (its epochs: data loading, steps,
loss checks), then over all of ``fit`` but validation (adding fixed costs: prepare, release). Counting models (``prior``) have no training loop and are left out.

A CPU throughput measured once over a few seconds moves by several percent from one run to the next
(frequency, caches, the allocator), which is the size of the effect being measured. So each baseline
is measured ``--repeats`` times, the two loops back to back each time and in alternating order (vlbench
first, then bare first, ...), and the printed ratio is the median of the per-repeat ratios, with their
range beside it.

With ``--collating``, each repeat also times vlbench with ``training.data_on_device=false`` (every batch
collated from the dataset on the host, as before the training split could stay on the device), so the
two data paths are compared in the same run: the column ``collating`` is that loop's median ratio to
the bare loop. Which path the default took is printed per baseline (``on device`` / ``collated``).

Because one loop's throughput drifts by several percent between runs, two more columns help read the
ratios: ``best``, the ratio of each loop's fastest repeat (noise only ever slows a loop down, so the
fastest repeats are the least disturbed), and the host time per batch of the two data paths alone
(``ms/batch``: collating DataLoader, then the split on the device), measured without training in the
same run; beside a step's time, that is what the trainer's data loading costs.
"""

from __future__ import annotations

import argparse
import statistics

from _common import (add_common_args, bare_loop, data_path_ms, fixed_batches, fresh_model, make_setup, trainable_baselines,
                     vlbench_loop)


def main() -> None:
    """Measure both loops per baseline and print a table of examples/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--distinct-batches", type=int, default=32,
                        help="distinct pre-collated batches the bare loop cycles through")
    parser.add_argument("--repeats", type=int, default=3, help="paired measurements per baseline (median reported)")
    parser.add_argument("--collating", action="store_true",
                        help="also time vlbench collating every batch on the host (training.data_on_device=false)")
    args = parser.parse_args()
    baselines = args.baseline or trainable_baselines("vqa")
    setup = make_setup(args, baselines)
    print(f"batch={args.batch_size} steps={args.steps} threads={args.threads} precision={setup.precision} "
          f"device={setup.device}")
    header = (f"{'baseline':<20} {'data':<10} {'vlbench ex/s':>13} {'bare ex/s':>10} {'ratio':>7} {'range':>13} "
              f"{'best':>6}  {'with setup':>10} {'ratio':>6}" + (f" {'collating':>10}" if args.collating else "")
              + f"  {'ms/batch collated':>17} {'on device':>9}")
    print(header)
    print("-" * len(header))
    medians = []
    loops = ("vlbench", "bare", "collating") if args.collating else ("vlbench", "bare")
    for name in baselines:
        config = setup.config(name)
        warm, modalities = fresh_model(setup, name)
        batches = fixed_batches(setup, modalities, min(args.distinct_batches, args.steps))
        bare_loop(setup, warm, batches, min(10, args.steps), config.training.lr)  # kernels and allocator warm
        pairs, path = [], ""
        for repeat in range(max(args.repeats, 1)):
            measured = {}
            shift = repeat % len(loops)  # each loop goes first, second, ... in turn
            for which in loops[shift:] + loops[:shift]:
                model, _ = fresh_model(setup, name)
                if which == "vlbench":
                    measured["vlbench"], measured["setup"], result = vlbench_loop(setup, name, model, modalities)
                    path = "on device" if result.data_on_device else "collated"
                elif which == "collating":
                    measured["collating"], _, _ = vlbench_loop(setup, name, model, modalities, data_on_device=False)
                else:
                    measured["bare"] = bare_loop(setup, model, batches, args.steps, config.training.lr,
                                                 config.training.grad_clip)
            pairs.append(measured)
        ratios = [p["vlbench"] / p["bare"] for p in pairs]
        median = statistics.median(ratios)
        medians.append(median)
        best = max(p["vlbench"] for p in pairs) / max(p["bare"] for p in pairs)
        vlbench_eps = statistics.median(p["vlbench"] for p in pairs)
        bare_eps = statistics.median(p["bare"] for p in pairs)
        with_setup = statistics.median(p["setup"] / p["bare"] for p in pairs)
        spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
        collating = (f" {statistics.median(p['collating'] / p['bare'] for p in pairs):10.3f}"
                     if args.collating else "")
        collated_ms = data_path_ms(setup, modalities, on_device=False)
        device_ms = data_path_ms(setup, modalities, on_device=True)
        device_text = f"{device_ms:9.3f}" if device_ms is not None else f"{'-':>9}"
        print(f"{name:<20} {path:<10} {vlbench_eps:13.1f} {bare_eps:10.1f} {median:7.3f} {spread:>13} {best:6.3f}  "
              f"{statistics.median(p['setup'] for p in pairs):10.1f} {with_setup:6.3f}{collating}  "
              f"{collated_ms:17.3f} {device_text}", flush=True)
    print(f"lowest median ratio vlbench/bare = {min(medians):.3f} ({len(medians)} baselines, "
          f"{max(args.repeats, 1)} repeats of {args.steps} steps each)")


if __name__ == "__main__":
    main()
