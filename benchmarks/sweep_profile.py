"""Where the wall time of a whole sweep goes, and whether shared work happens once per sweep.

    python benchmarks/sweep_profile.py [-- vlbench run arguments]
    python benchmarks/sweep_profile.py -- --task vqa --all-baselines --seeds 0,1,2      (the default)

Runs ``vlbench run`` in this process (a fresh results folder and, unless ``--cache-dir`` is given, a
fresh dataset cache, so nothing is skipped) with timers around its stages: interpreter start and
imports, dataset build, tokenization (``TaskType.prepare``), building models, training (``fit`` minus
the validation passes inside it), evaluation (validation, test and any other scoring pass), writing
records and predictions, and the rest. It counts how often the dataset is built and the
task tokenized: both must happen once per sweep, not once per run. It also sums the records' own
``timing`` fields and checks them against the stage timers. Exit status 1 when shared work repeats.
"""

from __future__ import annotations

import time

_IMPORT_START = time.perf_counter()
_IMPORT_START_WALL = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402, F401  (imported here so that its import time is counted as startup)
import transformers  # noqa: E402, F401

import vlbench.runner as runner  # noqa: E402
from vlbench.cli.main import main as vlbench_main  # noqa: E402
from vlbench.registry import TASK_TYPES  # noqa: E402
from vlbench.specs import load_task_spec  # noqa: E402

_IMPORTS_DONE = time.perf_counter()

DEFAULT_ARGS = ["--task", "vqa", "--all-baselines", "--seeds", "0,1,2"]


class Stages:
    """Accumulated seconds and call counts per stage; evaluation nested inside training is moved out of it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._eval_inside_fit = 0.0
        self._in_fit = False

    def wrap(self, name: str, func):
        """``func`` timed under ``name``."""
        stages = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            if name == "training":
                stages._in_fit, stages._eval_inside_fit = True, 0.0
            try:
                return func(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                stages.calls[name] += 1
                if name == "training":
                    stages._in_fit = False
                    spent -= stages._eval_inside_fit
                elif name == "evaluation" and stages._in_fit:
                    stages._eval_inside_fit += spent
                stages.seconds[name] += spent

        return timed


def _instrument(stages: Stages, task_type: str) -> None:
    """Put timers on the runner's data build and training, and on the task type's tokenization and scoring."""
    runner.load_dataset = stages.wrap("data build", runner.load_dataset)
    if hasattr(runner, "fit"):
        runner.fit = stages.wrap("training", runner.fit)
    else:
        print("note: vlbench.runner has no `fit`; training time comes from the records only")
    import vlbench.peft.assemble as assemble

    assemble.assemble = stages.wrap("model build", assemble.assemble)  # the runner imports it at call time
    runner.atomic_write_json = stages.wrap("records and predictions", runner.atomic_write_json)
    cls = TASK_TYPES.get(task_type)
    cls.write_predictions = stages.wrap("records and predictions", cls.write_predictions)
    cls.prepare = stages.wrap("tokenization", cls.prepare)
    cls.evaluate = stages.wrap("evaluation", cls.evaluate)
    cls.fit_and_evaluate = stages.wrap("evaluation", cls.fit_and_evaluate)


def _records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.rglob("seed-*.json")) if ".predictions" not in p.name]


def main() -> int:
    """Run the sweep under the timers and print the breakdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="dataset cache to reuse (default: a fresh one, so the data build is measured)")
    parser.add_argument("vlbench_args", nargs="*", help="arguments of `vlbench run` (after --)")
    args = parser.parse_args()
    run_args = args.vlbench_args or DEFAULT_ARGS
    task_name = run_args[run_args.index("--task") + 1] if "--task" in run_args else "vqa"
    try:  # interpreter start: from the process's creation to the first line of this script
        import psutil

        interpreter = max(_IMPORT_START_WALL - psutil.Process().create_time(), 0.0)
    except ImportError:
        interpreter = 0.0
    imports = _IMPORTS_DONE - _IMPORT_START

    stages = Stages()
    _instrument(stages, load_task_spec(task_name).type)
    with tempfile.TemporaryDirectory() as tmp:
        results = args.results_dir or Path(tmp) / "runs"
        cache = args.cache_dir or Path(tmp) / "cache"
        argv = ["run", *run_args, "--results-dir", str(results), "--cache-dir", str(cache), "--quiet"]
        print("vlbench " + " ".join(argv))
        start = time.perf_counter()
        code = vlbench_main(argv)
        sweep = time.perf_counter() - start
        records = _records(results)
    if code != 0:
        print(f"vlbench run exited with {code}")
    total = interpreter + imports + sweep
    measured = {k: stages.seconds[k] for k in ("data build", "tokenization", "model build", "training", "evaluation",
                                               "records and predictions")}
    rows = [("interpreter start", interpreter, ""), ("imports (torch, transformers, vlbench)", imports, "")]
    for name, seconds in measured.items():
        calls = stages.calls[name]
        rows.append((name, seconds, f"{calls} call(s)"))
    rows.append(("other (config, seeding, memory probe, table)", sweep - sum(measured.values()), ""))
    print(f"\n{len(records)} run record(s); wall time {total:.1f} s")
    print(f"{'stage':<45} {'seconds':>9} {'share':>7}  calls")
    for name, seconds, note in rows:
        print(f"{name:<45} {seconds:9.2f} {seconds / total:7.1%}  {note}")

    timing = [r.get("timing", {}) for r in records]
    sums = {key: sum(t.get(key) or 0.0 for t in timing) for key in ("wall_seconds", "train_seconds", "eval_seconds")}
    print("\nfrom the records' timing fields (summed over runs):")
    for key, value in sums.items():
        present = sum(1 for t in timing if key in t)
        print(f"  {key:<16} {value:9.2f} s  ({present}/{len(records)} records have it)")
    loop = sums["train_seconds"] - sum((r.get("features") or {}).get("seconds", 0.0) for r in records)
    if stages.calls["training"]:
        print(f"  fit outside its training loop (setup, checkpoints, release): "
              f"{stages.seconds['training'] - loop:.2f} s over {stages.calls['training']} run(s)")
    if records:
        created = sorted(r["created"] for r in records)
        print(f"  first record written {created[0]}, last {created[-1]}")

    shared_ok = stages.calls["data build"] <= 1 and stages.calls["tokenization"] <= 1
    runs = len(records)
    print(f"\nshared work: dataset built {stages.calls['data build']}x, task tokenized {stages.calls['tokenization']}x "
          f"for {runs} run(s): {'once per sweep' if shared_ok else 'REPEATED PER RUN'}")
    return 0 if shared_ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
