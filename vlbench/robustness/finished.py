"""The suites on finished runs: rebuild each run's trained model from its record and weights, score, record.

A run keeps its trained weights beside its record when it used PEFT or was run with ``--keep-model``
(``seed-N.weights.safetensors``, its SHA-256 in ``weights_sha256``). The model is rebuilt exactly as the
runner built it (:func:`vlbench.peft.checkpoint.load_run_model`: same config, seed and tokenizer) and the
suites run as ``vlbench run --robustness`` runs them, so both give the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch

from vlbench.errors import DataError, VLBenchError

__all__ = ["finished_runs", "score_finished_run"]


def finished_runs(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The finished run records under ``folder`` (a folder of records, or one record file), sorted by path."""
    from vlbench.results.records import read_record, record_files

    folder = Path(folder)
    if not folder.exists():
        raise VLBenchError(f"{str(folder)!r} does not exist.")
    files = [folder] if folder.is_file() else record_files(folder)
    runs = []
    for path in sorted(files):
        record, problem = read_record(path)
        if problem is not None:
            raise VLBenchError(f"{path}: not a valid run record: {problem}; see `vlbench validate`.")
        if record.get("status", "ok") == "ok":
            runs.append((path, record))
    if not runs:
        raise VLBenchError(f"no finished run records under {str(folder)!r}.")
    without = [path for path, record in runs if not record.get("weights_file")]
    if without:
        more = f" (and {len(without) - 1} more)" if len(without) > 1 else ""
        raise VLBenchError(f"{without[0]}{more}: the run kept no trained weights, so its model cannot be rebuilt; "
                           "run it again with `vlbench run ... --keep-model` (PEFT runs always keep theirs).")
    return runs


def _check_weights(path: Path, record: dict[str, Any]) -> None:
    from vlbench.data.integrity import file_sha256

    weights = path.with_name(record["weights_file"])
    if not weights.is_file():
        raise DataError(f"{path}: its weights file {weights.name} is missing.")
    expected = record.get("weights_sha256")
    if expected is not None and file_sha256(weights) != expected:
        raise DataError(f"{weights}: its SHA-256 differs from the one its record holds; the file changed after "
                        "the run, so the rebuilt model would not be the run's.")


def score_finished_run(path: Path, record: dict[str, Any], settings: Any, device: torch.device,
                       tasks: dict[str, Any], cache_dir: Optional[Path] = None,
                       echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The run's ``robustness`` block under ``settings`` (a RobustnessSettings); ``tasks`` reuses built tasks."""
    from vlbench.models.pretrained import load_tokenizer
    from vlbench.peft.checkpoint import load_run_model
    from vlbench.robustness.suite import robustness_block

    _check_weights(path, record)
    key = repr((record["config"].get("dataset"), record["config"].get("task")))
    model, task, record = load_run_model(path, task=tasks.get(key), cache_dir=cache_dir, device=device)
    tasks[key] = task
    modalities = tuple(record.get("modalities") or ())
    tokenizer = load_tokenizer((record.get("tokenizer") or {}).get("source"), task.training_texts())
    metric = record["primary_metric"]
    batch_size = record["config"]["training"]["eval_batch_size"]
    recorded = float(record["test"]["metrics"][metric])
    rebuilt = float(task.evaluate(model, "test", batch_size, modalities, device).metrics[metric])
    if abs(rebuilt - recorded) > 1e-6 * max(1.0, abs(recorded)):
        raise DataError(f"{path}: the rebuilt model scores {metric} {rebuilt:.6g} on the test split, its record "
                        f"{recorded:.6g}; it is not the run's model (was the code or the data changed since?).")
    echo(f"{record['baseline']} seed {record['seed']}: scoring the suites ({', '.join(settings.suites)})")
    return robustness_block(task, model, modalities, tokenizer, device, batch_size, int(record["seed"]), metric,
                            recorded, settings.suites, settings.severities, settings.attack_budgets,
                            settings.attack_steps)
